"""Benchmark of the predictors that keep learning (:mod:`hilnas.pipeline.predictors.learning`).

    python -m hilnas.pipeline.benchmarks.predictors_learning [--quick] [--seeds N]
        [--space-seeds N] [--devices A,B] [--no-spaces] [--out DIR]

NB201 latency over its 27 reference device configurations (HELP / HW-NAS-Bench tables), each
device left out in turn:

- ``lodo``: the NB201 meta-predictor (:func:`hilnas.pipeline.predictors.train_meta_predictor`,
  closed form, under a second) retrained on the 26 other configurations;
- ``lofo``: retrained without the device's whole family (:data:`FAMILIES`).

For each left-out device, the prior is the retrained meta-predictor's zero-shot prediction from
the device's 10 reference values; K = 0, 10, 20, 50, 100, 200, 1000 further architectures are
then measured (drawn from a pool, nested: the K = 20 set contains the K = 10 set), ``random``
(uniform) or ``active`` (:func:`~hilnas.pipeline.predictors.learning.select_next`), and a
:class:`~hilnas.pipeline.predictors.learning.LearningPredictor` is fit. Reported on a fixed test
set of 5,000 architectures that are never measured (the same for every K and strategy): Spearman,
share within +-10 %, coverage of the 80 % intervals, the residual model chosen; ``--seeds``
(default 3; ``--lofo-seeds``, default 1, for lofo) repeats every curve, seed s drawing the same random pool order for both strategies,
and active minus random is reported paired over (device, seed). The zero-shot interval width of
a device comes from how well the prior fits the device's own 10 reference values
(:func:`~hilnas.pipeline.predictors.learning.zero_shot_width_from_fit`), by a width model fit on
the *other* devices of the split (their reference fit and their held-out 80 % width; no data of
the device itself beyond its references); the pooled width of the other devices (the earlier
rule) is reported beside it.

Interval calibration, before / after (printed and saved side by side): *before*, one log
half-width per device (the rule above at K = 0; from K on, the conformal quantile of the
chosen model's out-of-fold residuals with the zero-shot width as pseudo-residuals); *after*,
normalised intervals (:func:`~hilnas.pipeline.predictors.learning.ensemble_difficulty`: the
prior's distance from the prior conditioned on the device's 3 nearest training devices of the
split, mapped to its scale), their zero-shot scale the 80 % quantile of ``|log error| /
difficulty`` over the other devices of the split (other families for lofo). The figure: the
share of (device, seed, K) cells with coverage within 80 +- 5 % and the mean
``|coverage - 0.8|``, for NB201 lodo and lofo (both strategies), ofa_mbv3 and gpt_s. The ceiling: gradient boosting on the features fit on 5,000 of the
device's own measurements (no prior), tested on the same test set.

Also (when not ``--quick``): partial embeddings (2 of 10 references withheld and imputed from the
training devices, zero-shot quality and coverage with the widened intervals), and the same K
curve (random only) on ``ofa_mbv3`` (HELP's 9 GPU configurations, leave-one-out, the
space-generic :class:`~hilnas.pipeline.predictors.space.SpacePredictor` as the prior, test set
1,000 of the 5,000 subnets) and ``gpt_s`` (HW-GPT-Bench's 10 measured devices, latency); there
the prior is fit on 1,000 rows outside the test set, its penalty chosen by leave-one-device-out
once (with the first device held out) and reused.

Results: ``results/predictors_learning.json`` and ``.md`` with the machine load (``uptime``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from hilnas.pipeline import predictors as P
from hilnas.pipeline import refdata
from hilnas.pipeline.predictors import learning as L

RESULTS = Path(__file__).with_name("results")
KS: tuple[int, ...] = (0, 10, 20, 50, 100, 200, 1000)
N_TEST = 5000
#: Device families of the 27 NB201 latency configurations, labelled from the hardware each
#: column was measured on (HELP and HW-NAS-Bench): NVIDIA GPUs at batch 1/32/256; Intel Xeon
#: server CPUs; Android phones; a Raspberry Pi 4 (ARM edge board); and the two simulated
#: accelerators of HW-NAS-Bench (Eyeriss ASIC, an FPGA), grouped as ``accelerator``.
FAMILIES: dict[str, tuple[str, ...]] = {
    "gpu": tuple(
        f"{g}_{b}"
        for g in ("1080ti", "2080ti", "titan_rtx", "titanx", "titanxp")
        for b in (1, 32, 256)
    ),
    "cpu": ("gold_6226", "gold_6240", "silver_4114", "silver_4210r"),
    "phone": ("essential_ph_1", "pixel2", "pixel3", "samsung_a50", "samsung_s7"),
    "edge_board": ("raspi4",),
    "accelerator": ("eyeriss", "fpga"),
}


def family_of(device: str) -> str:
    for fam, devs in FAMILIES.items():
        if device in devs:
            return fam
    raise KeyError(device)


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _bulk(true: np.ndarray) -> np.ndarray:
    """Test rows outside the near-zero artefacts (values below half the 5 % quantile: NB201's
    Raspberry Pi 4 and Pixel 3 measure some cells at ~0.01 ms): for the diagnosis only."""
    return true >= 0.5 * np.quantile(true, 0.05)


def _quality(pred: np.ndarray, true: np.ndarray, lo=None, hi=None) -> dict[str, float]:
    bulk = _bulk(true)
    out = {
        "spearman": P.spearman(pred, true),
        "within10": P.within(pred, true),
        "spearman_bulk": P.spearman(pred[bulk], true[bulk]),
    }
    if lo is not None:
        out["coverage"] = float(np.mean((true >= lo) & (true <= hi)))
    return {k: round(v, 4) for k, v in out.items()}


# ----------------------------------------------------------------------------------------------
# NB201
# ----------------------------------------------------------------------------------------------
class NB201:
    def __init__(self, seed: int = 0) -> None:
        self.ref = refdata.load_nb201()
        self.codes = self.ref.arch_codes.astype(np.int64)
        self.refs = np.array(self.ref.reference_indices)
        rest = np.setdiff1d(np.arange(len(self.codes)), self.refs)
        perm = np.random.default_rng(seed).permutation(rest)
        self.test, self.pool = np.sort(perm[:N_TEST]), np.sort(perm[N_TEST:])
        self.x = L.nb201_features(self.codes)
        self.devices = self.ref.latency_devices

    def y(self, dev: str) -> np.ndarray:
        return np.asarray(self.ref.latency(dev), np.float64)


def _priors(
    d: NB201, split: str, devices: Sequence[str], used: dict[str, Any] | None = None
) -> dict[str, np.ndarray]:
    """Log zero-shot predictions over the space for each device, meta trained without it
    (``lodo``) or without its family (``lofo``); ``used`` receives each device's meta."""
    out = {}
    models: dict[str, P.MetaPredictor] = {}
    for dev in devices:
        if split == "lodo":
            train = [x for x in d.devices if x != dev]
            key = dev
        else:
            key = family_of(dev)
            train = [x for x in d.devices if family_of(x) != key]
        if key not in models:
            models[key] = P.train_meta_predictor("latency_ms", latency_devices=train)
        emb = P.TargetEmbedding.from_raw(
            dev, "latency_ms", d.y(dev)[d.refs], source="refdata", network="unpruned"
        )
        out[dev] = np.log(models[key].predict_space(emb))
        if used is not None:
            used[dev] = models[key]
    return out


def _widths(d: NB201, split: str, priors: dict[str, np.ndarray]) -> dict[str, float]:
    """Per device: 80 % quantile of |log error| of the other devices' held-out zero-shot
    predictions (other families for lofo) on the test set (the pooled width, for comparison)."""
    res = {dev: np.abs(np.log(d.y(dev)[d.test]) - lp[d.test]) for dev, lp in priors.items()}
    out = {}
    for dev in priors:
        others = [
            x for x in res if x != dev and (split == "lodo" or family_of(x) != family_of(dev))
        ]
        out[dev] = float(np.quantile(np.concatenate([res[x] for x in others]), L.DEFAULT_LEVEL))
    return out


def width_models(
    ys: dict[str, np.ndarray],
    priors: dict[str, np.ndarray],
    refs: np.ndarray,
    test: np.ndarray,
    same_split: Any = None,
) -> dict[str, Any]:
    """The zero-shot width model (:func:`~hilnas.pipeline.predictors.learning.fit_zero_shot_width_model`)
    for each device, fit on the *other* devices (``same_split(dev, other)`` false excludes an
    other device too, e.g. its family for lofo): their reference-fit rms and their held-out 80 %
    width. Also the fit on all devices (``all``) and the per-device inputs."""
    rms = {d: L.reference_fit_rms(np.log(ys[d][refs]) - priors[d][refs]) for d in priors}
    true = {
        d: float(np.quantile(np.abs(np.log(ys[d][test]) - priors[d][test]), L.DEFAULT_LEVEL))
        for d in priors
    }
    models = {}
    for dev in priors:
        others = [o for o in priors if o != dev and (same_split is None or same_split(dev, o))]
        models[dev] = L.fit_zero_shot_width_model(
            [rms[o] for o in others], [true[o] for o in others]
        )
    all_fit = L.fit_zero_shot_width_model(list(rms.values()), list(true.values()))
    return {
        "models": models,
        "all": [round(all_fit[0], 4), round(all_fit[1], 4)],
        "rms": {d: round(v, 4) for d, v in rms.items()},
        "true_width": {d: round(v, 4) for d, v in true.items()},
    }


def fit_learner(
    x: np.ndarray,
    lp: np.ndarray,
    y: np.ndarray,
    codes: np.ndarray,
    refs: np.ndarray,
    rows: np.ndarray,
    *,
    width_model: tuple[float, float],
    group_column: int | None = None,
    seed: int = 0,
    difficulty: np.ndarray | None = None,
    zero_shot_scale: float | None = None,
) -> L.LearningPredictor:
    """A device's learning predictor fit on ``rows`` (references first) from precomputed
    features ``x`` and log prior ``lp`` over the whole table (``difficulty`` likewise, for the
    normalised intervals)."""
    return L.LearningPredictor(
        prior=lambda c: None,  # unused: the arrays are precomputed
        features=lambda c: None,
        reference_codes=codes[refs],
        reference_values=y[refs],
        zero_shot_model=width_model,
        group_column=group_column,
        seed=seed,
        **({} if zero_shot_scale is None else {"zero_shot_scale": zero_shot_scale}),
    ).fit_arrays(
        x[rows], lp[rows], y[rows], difficulty=None if difficulty is None else difficulty[rows]
    )


def k_curve(
    x: np.ndarray,
    lp: np.ndarray,
    y: np.ndarray,
    codes: np.ndarray,
    refs: np.ndarray,
    pool: np.ndarray,
    test: np.ndarray,
    *,
    ks: Sequence[int],
    strategy: str,
    seed: int,
    width_model: tuple[float, float],
    group_column: int | None = None,
    difficulty: np.ndarray | None = None,
    zero_shot_scale: float | None = None,
) -> dict[str, Any]:
    """Quality on ``test`` after measuring K pool architectures (nested sets) per K; the
    zero-shot width comes from ``width_model`` and the device's reference fit. With
    ``difficulty`` (per architecture, over the whole space) the coverage of the normalised
    intervals (zero-shot scale ``zero_shot_scale``) is ``coverage`` and the one-width-per-device
    rule's (before) ``coverage_before``; without it ``coverage`` is the latter."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(pool)
    measured: list[int] = []
    out: dict[str, Any] = {}
    model = None
    for k in ks:
        need = k - len(measured)
        if need > 0:
            if strategy == "random" or model is None:
                # random draws extend a fixed permutation; active needs a fitted model (K=0 first)
                have = set(measured)
                new = [int(i) for i in order if int(i) not in have][:need]
            else:
                cand = np.setdiff1d(pool, measured)
                pick = L.select_next(
                    model,
                    codes[cand],
                    need,
                    "active",
                    seed=seed,
                    candidate_features=x[cand],
                    candidate_log_prior=lp[cand],
                )
                new = [int(i) for i in cand[pick]]
            measured += new
        rows = np.concatenate([refs, np.asarray(measured, dtype=np.int64)])
        model = fit_learner(
            x,
            lp,
            y,
            codes,
            refs,
            rows,
            width_model=width_model,
            group_column=group_column,
            seed=seed,
            difficulty=difficulty,
            zero_shot_scale=zero_shot_scale,
        )
        pred, lo, hi = model.interval_arrays(
            x[test], lp[test], difficulty=None if difficulty is None else difficulty[test]
        )
        out[str(k)] = {**_quality(pred, y[test], lo, hi), "kind": model.kind}
        if difficulty is not None:
            # before: one log half-width per device (the group's own where it has one)
            w = np.full(len(test), model.width_at())
            if model.group_width_at() is not None:
                w = np.where(model._group_mask(x[test]), model.group_width_at(), w)
            out[str(k)]["coverage_before"] = _quality(
                pred, y[test], pred * np.exp(-w), pred * np.exp(w)
            )["coverage"]
    return out


def difficulties(
    ref_values: dict[str, np.ndarray],
    priors: dict[str, np.ndarray],
    log_predict: Any,
    same_split: Any = None,
) -> dict[str, np.ndarray]:
    """Per device: :func:`~hilnas.pipeline.predictors.learning.ensemble_difficulty` of its
    prior against the ensemble of the prior conditioned on its nearest training devices of the
    split (``same_split(dev, other)`` false excludes ``other``, e.g. its family for lofo);
    ``log_predict(dev, values)``: log predictions of ``dev``'s prior model (trained without it)
    for a device with reference ``values``."""
    out = {}
    for dev in priors:
        near = {
            o: v
            for o, v in ref_values.items()
            if o != dev and (same_split is None or same_split(dev, o))
        }
        ens = L.ensemble_log_prediction(
            ref_values[dev], near, lambda v, dev=dev: log_predict(dev, v)
        )
        out[dev] = L.ensemble_difficulty(priors[dev], ens)
    return out


def normalised_scales(
    ys: dict[str, np.ndarray],
    priors: dict[str, np.ndarray],
    diff: dict[str, np.ndarray],
    test: np.ndarray,
    same_split: Any = None,
) -> dict[str, Any]:
    """The zero-shot scale of the normalised intervals for each device: the ``DEFAULT_LEVEL``
    quantile of ``|log error| / difficulty`` of the *other* devices' zero-shot predictions on
    the test set (``same_split`` as in :func:`width_models`), and over all devices (``all``,
    what :data:`~hilnas.pipeline.predictors.learning.ZS_NORM_Q` ships)."""
    e = {d: np.abs(np.log(ys[d][test]) - priors[d][test]) / diff[d][test] for d in priors}
    per = {}
    for dev in priors:
        others = [o for o in priors if o != dev and (same_split is None or same_split(dev, o))]
        per[dev] = float(np.quantile(np.concatenate([e[o] for o in others]), L.DEFAULT_LEVEL))
    return {
        "per_device": per,
        "all": round(float(np.quantile(np.concatenate(list(e.values())), L.DEFAULT_LEVEL)), 4),
    }


def cell_figures(curves: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Over the (device, seed, K) cells of ``curves`` (:func:`k_curve` results): the share
    whose coverage is within 80 +- 5 % and the mean |coverage - 0.8|, for the normalised
    intervals (``after``) and the one-width-per-device rule (``before``)."""
    out = {}
    for name, q in (("after", "coverage"), ("before", "coverage_before")):
        cov = np.array([c[k][q] for c in curves for k in c])
        out[name] = {
            "cells": int(len(cov)),
            "within_5pt": round(float(np.mean(np.abs(cov - L.DEFAULT_LEVEL) <= 0.05)), 4),
            "mean_abs_error": round(float(np.mean(np.abs(cov - L.DEFAULT_LEVEL))), 4),
        }
    return out


def ceiling(x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, seed: int = 0):
    """Gradient boosting on the device's own measurements only (log target)."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    m = HistGradientBoostingRegressor(max_iter=300, learning_rate=0.1, random_state=seed)
    m.fit(x[train], np.log(y[train]))
    return _quality(np.exp(m.predict(x[test])), y[test])


def bench_nb201(
    d: NB201, split: str, devices: Sequence[str], *, ks, strategies, seeds: int
) -> dict[str, Any]:
    t0 = time.time()
    metas: dict[str, Any] = {}
    all_priors = _priors(d, split, d.devices, metas)
    pooled = _widths(d, split, all_priors)
    same = None if split == "lodo" else (lambda a, b: family_of(a) != family_of(b))
    ys = {x: d.y(x) for x in d.devices}
    wm = width_models(ys, all_priors, d.refs, d.test, same)

    def log_predict(dev: str, values: np.ndarray) -> np.ndarray:
        emb = P.TargetEmbedding.from_raw("near", "latency_ms", values, network="unpruned")
        return np.log(metas[dev].predict_space(emb))

    diff = difficulties({x: ys[x][d.refs] for x in d.devices}, all_priors, log_predict, same)
    ns = normalised_scales(ys, all_priors, diff, d.test, same)
    widths = {
        dev: L.zero_shot_width_from_fit(
            np.log(d.y(dev)[d.refs]) - all_priors[dev][d.refs], wm["models"][dev]
        )
        for dev in d.devices
    }
    rows = {}
    for dev in devices:
        y = d.y(dev)
        lp = all_priors[dev]
        row: dict[str, Any] = {"family": family_of(dev), "zero_shot_width": round(widths[dev], 4)}
        for strat in strategies:
            curves = [
                k_curve(
                    d.x,
                    lp,
                    y,
                    d.codes,
                    d.refs,
                    d.pool,
                    d.test,
                    ks=ks,
                    strategy=strat,
                    seed=s,
                    width_model=wm["models"][dev],
                    group_column=L.nb201_group_column(),
                    difficulty=diff[dev],
                    zero_shot_scale=ns["per_device"][dev],
                )
                for s in range(seeds)
            ]
            row[strat] = _mean_curves(curves)
            row[strat + "_seeds"] = curves
        rows[dev] = row
    return {
        "split": split,
        "devices": rows,
        "mean": _mean_rows(rows, strategies, ks),
        "cells": {
            s: cell_figures([c for r in rows.values() for c in r[s + "_seeds"]]) for s in strategies
        },
        "active_vs_random": _paired(rows, ks) if "active" in strategies else None,
        "zero_shot_all": _zero_shot_all(d, all_priors, widths, pooled, diff, ns["per_device"]),
        "zero_shot_width_model": {k: v for k, v in wm.items() if k != "models"},
        "normalised_scale": {
            "all": ns["all"],
            "per_device": {k: round(v, 4) for k, v in ns["per_device"].items()},
        },
        "seconds": round(time.time() - t0, 1),
    }


def _zero_shot_all(d: NB201, priors, widths, pooled, diff, scales) -> dict[str, Any]:
    """Zero-shot (K = 0) quality of every device of the split (cheap: no fitting); coverage
    of the normalised intervals (``coverage``: scale ``scales`` x difficulty ``diff``), with
    the device's one width (``coverage_before``, ``widths``) and with the pooled width of the
    other devices (``coverage_pooled``)."""
    out = {}
    for dev, lp in priors.items():
        y = d.y(dev)
        pred = np.maximum(np.exp(lp[d.test]), P.cost_floor(y[d.refs]))
        w, wp = widths[dev], pooled[dev]
        wn = scales[dev] * diff[dev][d.test]
        out[dev] = {
            **_quality(pred, y[d.test], pred * np.exp(-wn), pred * np.exp(wn)),
            "coverage_before": _quality(pred, y[d.test], pred * np.exp(-w), pred * np.exp(w))[
                "coverage"
            ],
            "width": round(w, 4),
            "median_width": round(float(np.median(wn)), 4),
            "coverage_pooled": _quality(pred, y[d.test], pred * np.exp(-wp), pred * np.exp(wp))[
                "coverage"
            ],
        }
    fam_means = {
        fam: round(float(np.mean([out[x]["spearman"] for x in devs if x in out])), 4)
        for fam, devs in FAMILIES.items()
    }
    return {
        "devices": out,
        "mean_spearman": round(float(np.mean([q["spearman"] for q in out.values()])), 4),
        "mean_within10": round(float(np.mean([q["within10"] for q in out.values()])), 4),
        "mean_coverage": round(float(np.mean([q["coverage"] for q in out.values()])), 4),
        "mean_coverage_pooled": round(
            float(np.mean([q["coverage_pooled"] for q in out.values()])), 4
        ),
        "coverage_range": [
            round(min(q["coverage"] for q in out.values()), 4),
            round(max(q["coverage"] for q in out.values()), 4),
        ],
        "coverage_within_5pt": int(sum(abs(q["coverage"] - 0.8) <= 0.05 for q in out.values())),
        "mean_coverage_before": round(
            float(np.mean([q["coverage_before"] for q in out.values()])), 4
        ),
        "coverage_range_before": [
            round(min(q["coverage_before"] for q in out.values()), 4),
            round(max(q["coverage_before"] for q in out.values()), 4),
        ],
        "coverage_within_5pt_before": int(
            sum(abs(q["coverage_before"] - 0.8) <= 0.05 for q in out.values())
        ),
        "mean_abs_coverage_error_before": round(
            float(np.mean([abs(q["coverage_before"] - 0.8) for q in out.values()])), 4
        ),
        "coverage_within_5pt_pooled": int(
            sum(abs(q["coverage_pooled"] - 0.8) <= 0.05 for q in out.values())
        ),
        "mean_abs_coverage_error": round(
            float(np.mean([abs(q["coverage"] - 0.8) for q in out.values()])), 4
        ),
        "mean_abs_coverage_error_pooled": round(
            float(np.mean([abs(q["coverage_pooled"] - 0.8) for q in out.values()])), 4
        ),
        "family_mean_spearman": fam_means,
    }


def _mean_curves(curves: list[dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for k in curves[0]:
        out[k] = {
            q: round(float(np.mean([c[k][q] for c in curves])), 4)
            for q in ("spearman", "within10", "coverage", "spearman_bulk", "coverage_before")
            if q in curves[0][k]
        }
        out[k]["kind"] = "/".join(sorted({c[k]["kind"] for c in curves}))
    return out


def _paired(rows: dict[str, Any], ks) -> dict[str, Any]:
    """Active minus random per K, paired over (device, seed): mean, standard error, and the
    number of pairs where active is better / worse, for Spearman and within10."""
    out: dict[str, Any] = {}
    for k in ks:
        k = str(k)
        out[k] = {}
        for q in ("spearman", "within10"):
            diff = np.array(
                [
                    a[k][q] - r[k][q]
                    for row in rows.values()
                    for a, r in zip(row["active_seeds"], row["random_seeds"], strict=True)
                ]
            )
            se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
            out[k][q] = {
                "mean": round(float(diff.mean()), 5),
                "se": round(se, 5),
                "better": int((diff > 0).sum()),
                "worse": int((diff < 0).sum()),
            }
    return out


def _mean_rows(rows, strategies, ks) -> dict[str, Any]:
    return {
        s: {
            str(k): {
                q: round(float(np.mean([r[s][str(k)][q] for r in rows.values()])), 4)
                for q in ("spearman", "within10", "coverage")
            }
            for k in ks
        }
        for s in strategies
    }


def ceilings(d: NB201, devices: Sequence[str]) -> dict[str, Any]:
    train = np.random.default_rng(1).choice(d.pool, 5000, replace=False)
    return {dev: ceiling(d.x, d.y(dev), train, d.test) for dev in devices}


def partial(d: NB201, devices: Sequence[str], missing: int = 2, seed: int = 0) -> dict[str, Any]:
    """Zero-shot with ``missing`` of the 10 references withheld and imputed (LODO meta)."""
    rng = np.random.default_rng(seed)
    priors = _priors(d, "lodo", d.devices)
    wm = width_models({x: d.y(x) for x in d.devices}, priors, d.refs, d.test)["models"]
    out = {}
    for dev in devices:
        y = d.y(dev)
        drop = sorted(int(i) for i in rng.choice(len(d.refs), missing, replace=False))
        others = [x for x in d.devices if x != dev]
        table = np.stack([d.y(x)[d.refs] for x in others])
        known = {i: float(y[d.refs[i]]) for i in range(len(d.refs)) if i not in drop}
        imp = L.impute_references(known, table)
        model = P.train_meta_predictor("latency_ms", latency_devices=others)
        emb = P.TargetEmbedding.from_raw(dev, "latency_ms", imp.values, network="unpruned")
        lp = np.log(model.predict_space(emb))
        pred = np.maximum(np.exp(lp[d.test]), P.cost_floor(list(known.values())))
        have = [i for i in range(len(d.refs)) if i not in drop]
        w0 = L.zero_shot_width_from_fit(
            np.log(y[d.refs[have]]) - lp[d.refs[have]], wm[dev]
        )  # the width from the references that ran
        w = w0 + np.log(imp.widening)
        full = np.exp(priors[dev][d.test])
        out[dev] = {
            "dropped": drop,
            "imputation_rel_error": [
                round(float(imp.values[i] / y[d.refs[i]] - 1), 4) for i in drop
            ],
            "widening": round(imp.widening, 4),
            "imputed": _quality(pred, y[d.test], pred * np.exp(-w), pred * np.exp(w)),
            "imputed_unwidened_coverage": _quality(
                pred, y[d.test], pred * np.exp(-w0), pred * np.exp(w0)
            )["coverage"],
            "full": _quality(full, y[d.test]),
        }
    return out


# ----------------------------------------------------------------------------------------------
# other spaces
# ----------------------------------------------------------------------------------------------
def space_split(space: str, n_test: int, n_train: int = 1000) -> dict[str, Any]:
    """A space's shipped latency table split for leave-one-device-out: ``table``, features
    ``x``, reference rows ``refs``, ``test`` (``n_test`` rows valid on every device, never a
    reference), the measurement ``pool`` (the other valid rows) and the prior's ``train_rows``
    (``n_train`` rows outside the test set: the 9-10 refits stay at minutes)."""
    from hilnas.pipeline.predictors import space as S
    from hilnas.pipeline.spaces import get_space

    table = S.shipped_table(space, "latency_ms")
    codes = table.codes
    x = S.arch_features(get_space(space), [tuple(c) for c in codes])
    refs = np.asarray(table.reference_rows)
    ok_all = np.all(np.isfinite(table.values), axis=1)
    rest = np.setdiff1d(np.flatnonzero(ok_all), refs)
    perm = np.random.default_rng(0).permutation(rest)
    test, pool = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    train_rows = np.sort(
        np.random.default_rng(2).choice(np.setdiff1d(np.arange(len(codes)), test), n_train, False)
    )
    return {
        "table": table,
        "x": x,
        "refs": refs,
        "test": test,
        "pool": pool,
        "train_rows": train_rows,
    }


def bench_space(space: str, *, ks, seeds: int, n_test: int, devices=None) -> dict[str, Any]:
    """LOO over a space's shipped table; the prior is the SpacePredictor trained without the
    device (penalty chosen once, on all devices but the first, as the spaces benchmark does)."""
    from hilnas.pipeline.predictors import space as S

    t0 = time.time()
    sp_rows = space_split(space, n_test)
    table, x, refs = sp_rows["table"], sp_rows["x"], sp_rows["refs"]
    test, pool, train_rows = sp_rows["test"], sp_rows["pool"], sp_rows["train_rows"]
    codes = table.codes
    first = fit_alpha = None
    priors = {}
    metas: dict[str, Any] = {}
    for dev in table.devices:
        others = [x_ for x_ in table.devices if x_ != dev]
        if first is None:
            first = S.fit_predictor(table, others, train_rows)
            fit_alpha = first.alpha
            m = first
        else:
            m = S.fit_predictor(table, others, train_rows, alpha=fit_alpha)
        priors[dev] = np.log(m.predict_features(x, table.reference_values(dev)))
        metas[dev] = m
    ys = {dev: np.asarray(table.column(dev), np.float64) for dev in table.devices}
    wm = width_models(ys, priors, refs, test)
    diff = difficulties(
        {dev: np.asarray(table.reference_values(dev), np.float64) for dev in table.devices},
        priors,
        lambda dev, v: np.log(metas[dev].predict_features(x, v)),
    )
    ns = normalised_scales(ys, priors, diff, test)
    rows = {}
    ceil_train = np.random.default_rng(1).choice(pool, min(5000, len(pool)), replace=False)
    for dev in devices or table.devices:
        y = ys[dev]
        width = L.zero_shot_width_from_fit(np.log(y[refs]) - priors[dev][refs], wm["models"][dev])
        curves = [
            k_curve(
                x,
                priors[dev],
                y,
                codes,
                refs,
                pool,
                test,
                ks=[k for k in ks if k <= len(pool)],
                strategy="random",
                seed=s,
                width_model=wm["models"][dev],
                difficulty=diff[dev],
                zero_shot_scale=ns["per_device"][dev],
            )
            for s in range(seeds)
        ]
        rows[dev] = {
            "zero_shot_width": round(width, 4),
            "random": _mean_curves(curves),
            "random_seeds": curves,
            "ceiling": {**ceiling(x, y, ceil_train, test), "n_train": int(len(ceil_train))},
        }
    kk = [str(k) for k in ks if k <= len(pool)]
    return {
        "space": space,
        "devices": rows,
        "alpha": fit_alpha,
        "n_test": int(len(test)),
        "mean": {
            k: {
                q: round(float(np.mean([r["random"][k][q] for r in rows.values()])), 4)
                for q in ("spearman", "within10", "coverage", "coverage_before")
            }
            for k in kk
        },
        "cells": {"random": cell_figures([c for r in rows.values() for c in r["random_seeds"]])},
        "normalised_scale": {
            "all": ns["all"],
            "per_device": {k: round(v, 4) for k, v in ns["per_device"].items()},
        },
        "mean_ceiling_spearman": round(
            float(np.mean([r["ceiling"]["spearman"] for r in rows.values()])), 4
        ),
        "seconds": round(time.time() - t0, 1),
    }


# ----------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------
def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _fmt2(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def markdown(res: dict[str, Any]) -> str:
    lines = [
        "# Predictors that keep learning (NB201 latency; other spaces)",
        "",
        f"Command: `{res['command']}`  ",
        f"Machine: {res['machine']}  ",
        f"Load before: `{res['uptime_before']}`  ",
        f"Load after: `{res['uptime_after']}`  ",
        f"Wall time: {res['seconds']} s. {res['note']}",
        "",
        "Spearman / share within +-10 % / coverage of the 80 % interval on a fixed test set of "
        f"{N_TEST} never-measured NB201 architectures, after K measured architectures beyond "
        "the 10 references; the prior is the meta-predictor retrained without the device "
        "(lodo) or its family (lofo).",
        "",
        "## 80 % intervals per device and K: before / after",
        "",
        "*Before*: one log half-width per device (split-conformal on the chosen model's "
        "out-of-fold residuals, the zero-shot width from the prior's fit to the reference "
        "values as pseudo-residuals). *After*: normalised intervals, half-width "
        "``q u(a)`` with ``u(a)`` the distance of the prior's log prediction from the ensemble "
        f"of the prior conditioned on the {L.ENSEMBLE_SIZE} training devices nearest to the device "
        "(``ensemble_difficulty``), ``q`` the conformal quantile of ``|residual| / u`` with the "
        "zero-shot scale (fit on the other devices of the split) as pseudo-residuals. Cells: "
        "(device, seed, K) of the K curves below; target: coverage within 80 +- 5 %. "
        "*Before* is the library's default (``learning_predictor(ensemble=False)``); *after* "
        "is the option ``ensemble=True``: it did not help leave-one-family-out on the training "
        "devices.",
        "",
        "| benchmark | strategy | cells | within 80 +- 5 % (before) | (after) | "
        "mean abs(coverage - 0.8) (before) | (after) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ("lodo", "lofo", "ofa_mbv3", "gpt_s"):
        for strat, f in res.get(name, {}).get("cells", {}).items():
            lines.append(
                f"| {name} | {strat} | {f['after']['cells']} | {f['before']['within_5pt']:.3f} | "
                f"{f['after']['within_5pt']:.3f} | {f['before']['mean_abs_error']:.3f} | "
                f"{f['after']['mean_abs_error']:.3f} |"
            )
    lines.append("")
    for split in ("lodo", "lofo"):
        if split not in res:
            continue
        b = res[split]
        z = b["zero_shot_all"]
        wmod = b.get("zero_shot_width_model", {})
        lines += [
            f"## {split}: zero-shot over all 27 configurations",
            "",
            f"Mean Spearman {z['mean_spearman']:.3f}, within10 {z['mean_within10']:.3f}. "
            "Per family (mean Spearman): "
            + ", ".join(f"{f} {v:.3f}" for f, v in z["family_mean_spearman"].items()),
            "",
            "80 % intervals at K = 0. With the pooled width of the other devices (the first "
            f"rule): mean coverage {z['mean_coverage_pooled']:.3f}, "
            f"{z['coverage_within_5pt_pooled']} of 27 within 80 +- 5 %, mean |coverage - 0.8| "
            f"{z['mean_abs_coverage_error_pooled']:.3f}.",
            "",
            "Before (the device's one width from how well the prior fits its own reference "
            "values, width model fit on the other devices of the split"
            + ("" if split == "lodo" else ", other families only")
            + f"; on all 27: log w = {wmod.get('all', ['?', '?'])[0]} + "
            f"{wmod.get('all', ['?', '?'])[1]} log(rms + {L.ZS_WIDTH_EPS})): mean coverage "
            f"{z['mean_coverage_before']:.3f}, range {z['coverage_range_before'][0]:.2f}-"
            f"{z['coverage_range_before'][1]:.2f}, {z['coverage_within_5pt_before']} of 27 within "
            f"80 +- 5 %, mean |coverage - 0.8| {z['mean_abs_coverage_error_before']:.3f}. After "
            "(normalised, zero-shot scale fit on the other devices of the split; on all 27: "
            f"{b.get('normalised_scale', {}).get('all', '?')}): mean coverage "
            f"{z['mean_coverage']:.3f}, range {z['coverage_range'][0]:.2f}-"
            f"{z['coverage_range'][1]:.2f}, {z['coverage_within_5pt']} of 27 within 80 +- 5 %, "
            f"mean |coverage - 0.8| {z['mean_abs_coverage_error']:.3f}.",
            "",
            "| device | family | Spearman | within10 | width (before) | coverage (before) | "
            "median width (after) | coverage (after) | coverage (pooled width) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for dev, q in z["devices"].items():
            lines.append(
                f"| {dev} | {family_of(dev)} | {q['spearman']:.3f} | {q['within10']:.3f} | "
                f"{q['width']:.3f} | {q['coverage_before']:.3f} | {q['median_width']:.3f} | "
                f"{q['coverage']:.3f} | {q['coverage_pooled']:.3f} |"
            )
        strategies = [s for s in ("random", "active") if s in b["mean"]]
        ks = list(next(iter(b["mean"].values())))
        lines += [
            "",
            f"## {split}: K curve ({len(b['devices'])} devices: {', '.join(b['devices'])})",
            "",
            "Spearman / within10 / coverage after [before] (residual model):",
            "",
            "| device | strategy | " + " | ".join(f"K={k}" for k in ks) + " | ceiling |",
            "|---|---|" + "---|" * (len(ks) + 1),
        ]
        for dev, row in b["devices"].items():
            c = res.get("ceiling", {}).get(dev, {}).get("spearman")
            for s in strategies:
                cells = [
                    f"{row[s][k]['spearman']:.3f} / {row[s][k]['within10']:.2f} / "
                    f"{row[s][k]['coverage']:.2f} [{_fmt2(row[s][k].get('coverage_before'))}] "
                    f"({row[s][k]['kind']})"
                    for k in ks
                ]
                lines.append(f"| {dev} | {s} | " + " | ".join(cells) + f" | {_fmt(c)} |")
        for s in strategies:
            cells = [
                f"{b['mean'][s][k]['spearman']:.3f} / {b['mean'][s][k]['within10']:.2f} / "
                f"{b['mean'][s][k]['coverage']:.2f}"
                for k in ks
            ]
            lines.append(f"| **mean** | {s} | " + " | ".join(cells) + " | |")
        lines.append("")
        pv = b.get("active_vs_random")
        if pv:
            lines += [
                f"Active minus random, paired over devices x seeds (mean +- standard error; "
                f"pairs better / worse; {len(b['devices'])} devices):",
                "",
                "| metric | " + " | ".join(f"K={k}" for k in ks) + " |",
                "|---|" + "---|" * len(ks),
            ]
            for q in ("spearman", "within10"):
                lines.append(
                    f"| {q} | "
                    + " | ".join(
                        f"{pv[k][q]['mean']:+.4f} +- {pv[k][q]['se']:.4f} "
                        f"({pv[k][q]['better']}/{pv[k][q]['worse']})"
                        for k in ks
                    )
                    + " |"
                )
            lines.append("")
        if "100" in ks and res.get("ceiling"):
            lines += [
                "Gap to the own-data ceiling at K = 100 (ceiling Spearman minus the curve's; "
                "*bulk*: the same without the near-zero artefacts, test values below half the "
                "5 % quantile):",
                "",
                "| device | ceiling | ceiling (bulk) | "
                + " | ".join(f"{s} K=100 | gap | gap (bulk)" for s in strategies)
                + (" | random K=1000: gap (bulk) |" if "1000" in ks else " |"),
                "|---|---|---|"
                + "---|---|---|" * len(strategies)
                + ("---|" if "1000" in ks else ""),
            ]
            for dev, row in b["devices"].items():
                cq = res["ceiling"].get(dev)
                if cq is None:
                    continue
                c, cb = cq["spearman"], cq["spearman_bulk"]
                cells = [
                    f"{row[s]['100']['spearman']:.3f} | {c - row[s]['100']['spearman']:+.3f} | "
                    f"{cb - row[s]['100']['spearman_bulk']:+.3f}"
                    for s in strategies
                ]
                tail = (
                    f" | {c - row['random']['1000']['spearman']:+.3f} "
                    f"({cb - row['random']['1000']['spearman_bulk']:+.3f})"
                    if "1000" in ks
                    else ""
                )
                lines.append(f"| {dev} | {c:.3f} | {cb:.3f} | " + " | ".join(cells) + tail + " |")
            lines.append("")
    if "partial" in res:
        lines += [
            "## Partial embeddings (2 of 10 references withheld and imputed, lodo, zero-shot)",
            "",
            "| device | dropped | imputation rel. error | widening | Spearman (full refs) | "
            "Spearman (imputed) | within10 | coverage (widened) | coverage (not widened) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for dev, p in res["partial"].items():
            lines.append(
                f"| {dev} | {p['dropped']} | {p['imputation_rel_error']} | {p['widening']:.3f} |"
                f" {p['full']['spearman']:.3f} | {p['imputed']['spearman']:.3f} | "
                f"{p['imputed']['within10']:.3f} | {p['imputed']['coverage']:.3f} | "
                f"{p['imputed_unwidened_coverage']:.3f} |"
            )
        lines.append("")
    for space in ("ofa_mbv3", "gpt_s"):
        if space not in res:
            continue
        b = res[space]
        ks = list(b["mean"])
        lines += [
            f"## {space}: leave-one-device-out, random measurements ({b['n_test']} test archs)",
            "",
            "Spearman / within10 / coverage after [before] (residual model); zero-shot scale "
            f"of the normalised intervals on all devices: {b.get('normalised_scale', {}).get('all', '?')}.",
            "",
            "| device | " + " | ".join(f"K={k}" for k in ks) + " | ceiling |",
            "|---|" + "---|" * (len(ks) + 1),
        ]
        for dev, row in b["devices"].items():
            cells = [
                f"{row['random'][k]['spearman']:.3f} / {row['random'][k]['within10']:.2f} / "
                f"{row['random'][k]['coverage']:.2f} "
                f"[{_fmt2(row['random'][k].get('coverage_before'))}] ({row['random'][k]['kind']})"
                for k in ks
            ]
            lines.append(
                f"| {dev} | " + " | ".join(cells) + f" | {row['ceiling']['spearman']:.3f} |"
            )
        cells = [
            f"{b['mean'][k]['spearman']:.3f} / {b['mean'][k]['within10']:.2f} / "
            f"{b['mean'][k]['coverage']:.2f}"
            for k in ks
        ]
        lines.append("| **mean** | " + " | ".join(cells) + f" | {b['mean_ceiling_spearman']:.3f} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def run(
    *,
    quick: bool = False,
    seeds: int = 3,
    space_seeds: int = 1,
    lofo_seeds: int = 1,
    lodo_devices: Sequence[str] | None = None,
    lofo_devices: Sequence[str] | None = None,
    spaces: bool = True,
) -> dict[str, Any]:
    t0 = time.time()
    before = uptime()
    d = NB201()
    test6 = list(refdata.MODNAS_TEST_DEVICES)
    ks = (0, 10, 50, 100) if quick else KS
    lodo_devices = list(lodo_devices or (test6[:2] if quick else test6))
    # lofo K curves on the four test devices outside the GPU family (for a GPU, lofo and lodo
    # differ least); zero-shot lofo is reported for all 27
    lofo_devices = list(
        lofo_devices or (test6[:2] if quick else [x for x in test6 if family_of(x) != "gpu"])
    )
    strategies = ("random",) if quick else ("random", "active")
    res: dict[str, Any] = {"ks": list(ks), "strategies": list(strategies), "seeds": seeds}
    res["lodo"] = bench_nb201(d, "lodo", lodo_devices, ks=ks, strategies=strategies, seeds=seeds)
    res["lofo"] = bench_nb201(
        d, "lofo", lofo_devices, ks=ks, strategies=strategies, seeds=lofo_seeds
    )
    res["ceiling"] = ceilings(d, sorted(set(lodo_devices) | set(lofo_devices)))
    if not quick:
        res["partial"] = partial(d, test6)
        if spaces:
            res["ofa_mbv3"] = bench_space("ofa_mbv3", ks=KS, seeds=space_seeds, n_test=1000)
            res["gpt_s"] = bench_space("gpt_s", ks=KS, seeds=space_seeds, n_test=N_TEST)
    res["seconds"] = round(time.time() - t0, 1)
    res["uptime_before"], res["uptime_after"] = before, uptime()
    res["machine"] = (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    return res


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 devices, K up to 100, random only")
    ap.add_argument(
        "--seeds", type=int, default=3, help="random seeds per NB201 curve (default 3, paired)"
    )
    ap.add_argument(
        "--lofo-seeds", type=int, default=1, help="seeds per NB201 lofo curve (default 1)"
    )
    ap.add_argument(
        "--space-seeds", type=int, default=1, help="seeds per ofa_mbv3 / gpt_s curve (default 1)"
    )
    ap.add_argument(
        "--devices",
        default=None,
        help="comma-separated NB201 devices for the K curves (default: the six MODNAS test "
        "devices for lodo, those outside the GPU family for lofo)",
    )
    ap.add_argument("--no-spaces", action="store_true", help="skip ofa_mbv3 and gpt_s")
    ap.add_argument("--out", type=Path, default=RESULTS, help="output folder")
    a = ap.parse_args(argv)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass
    devices = None
    if a.devices:
        devices = [x.strip() for x in a.devices.split(",") if x.strip()]
        known = set(refdata.load_nb201().latency_devices)
        bad = [x for x in devices if x not in known]
        if bad:
            ap.error(f"unknown NB201 device(s) {', '.join(bad)}; use: {', '.join(sorted(known))}")
    for name in ("seeds", "lofo_seeds", "space_seeds"):
        if getattr(a, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")
    res = run(
        quick=a.quick,
        seeds=a.seeds,
        space_seeds=a.space_seeds,
        lofo_seeds=a.lofo_seeds,
        lodo_devices=devices,
        lofo_devices=devices,
        spaces=not a.no_spaces,
    )
    res["command"] = (
        "python -m hilnas.pipeline.benchmarks.predictors_learning"
        + (" --quick" if a.quick else "")
        + (f" --seeds {a.seeds}" if a.seeds != 3 else "")
        + (f" --lofo-seeds {a.lofo_seeds}" if a.lofo_seeds != 1 else "")
        + (f" --space-seeds {a.space_seeds}" if a.space_seeds != 1 else "")
        + (f" --devices {a.devices}" if a.devices else "")
        + (" --no-spaces" if a.no_spaces else "")
    )
    res["note"] = (
        "NB201 K curves on the six MODNAS test devices (lodo) and the five of them outside the "
        "GPU family (lofo); zero-shot on all 27; "
        f"{a.seeds} seed(s) per NB201 lodo curve (paired: seed s draws the same random pool "
        f"order for both strategies), {a.lofo_seeds} per lofo curve, {a.space_seeds} per "
        "ofa_mbv3 / gpt_s curve."
    )
    a.out.mkdir(parents=True, exist_ok=True)
    stem = "predictors_learning_quick" if a.quick else "predictors_learning"
    (a.out / f"{stem}.json").write_text(json.dumps(res, indent=1) + "\n")
    (a.out / f"{stem}.md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
