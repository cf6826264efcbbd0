"""Benchmark: do a new device's fronts improve as it is measured more? (NB201, surrogate mode)

    python -m hilnas.pipeline.benchmarks.fronts_learning [--quick] [--draws N] [--epochs E]
        [--devices A,B] [--out DIR]

ONE surrogate-mode MetaHypernetwork search (:func:`hilnas.pipeline.search.run_search`) is
trained on the 13 MODNAS training devices, with small settings (stated in the results:
``epochs`` of 100 steps, default 10, the library default being 20; 200 accuracy queries; the
shipped meta-predictor; one torch thread). Then, for each of the six MODNAS test devices
(:data:`hilnas.pipeline.refdata.MODNAS_TEST_DEVICES`) and each K in :data:`KS`, the device
joins from its 10 reference latencies plus K further latencies of architectures drawn at random
(never a reference; nested: the K = 20 set holds the K = 10 one) from the shipped NB201 table
(:mod:`hilnas.pipeline.refdata`), as a :class:`~hilnas.pipeline.predictors.TargetEmbedding`
with that support set, and its front is read with ``points=100``
(:meth:`~hilnas.pipeline.search.TrainedSearch.front`). Each front is scored with the TRUE error
and latency of its architectures (:func:`hilnas.pipeline.fronts.nb201_problem` ``.hv_ratio``).

Two cost models per K > 0, from the same search:

- ``learning`` (the default front): the device's learning predictor on top of the
  meta-predictor conditioned on the whole embedding (see
  :mod:`hilnas.pipeline.search.trained`);
- ``meta``: the meta-predictor conditioned on the whole embedding alone
  (``TrainedSearch.learn_costs = False``: the costs fronts had before the learning predictor).

At K = 0 both are the zero-shot front. Also reported: the Spearman between the front
architectures' predicted and true latencies, their mean absolute log error, and the cost
model's Spearman on 5,000 never-measured architectures (the same for every K and device).
``--draws`` (default 3) repeats the random measurement draws; figures are means over draws.

Results: ``results/fronts_learning.json`` and ``.md`` with the machine load (``uptime``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).with_name("results")
KS: tuple[int, ...] = (0, 10, 20, 50, 100)
POINTS = 100
N_TEST = 5000
TARGET_K, TARGET_HV = 50, 0.99
#: The search's settings: small (10 epochs instead of 20), everything else the defaults.
SEARCH_SETTINGS: dict[str, Any] = {
    "mode": "surrogate",
    "objectives": ("error", "latency_ms"),
    "seed": 0,
    "epochs": 10,
    "accuracy_queries": 200,
    "predictor_source": "shipped",
    "threads": 1,
    "torch_device": "cpu",
}


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    from hilnas.pipeline.predictors import spearman

    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return round(spearman(a, b), 4)


def score_front(points: Sequence[Any], problem: Any, true_latency: np.ndarray) -> dict[str, Any]:
    """HV ratio (true error and latency, ``problem``), and how well the front's predicted
    latencies match the true ones (Spearman, mean |log error|)."""
    idx = np.array([p.index for p in points], dtype=np.int64)
    pred = np.array([p.objectives["latency_ms"] for p in points], dtype=np.float64)
    true = true_latency[idx]
    return {
        "hv_ratio": round(float(problem.hv_ratio(idx)), 5),
        "front_spearman": _spearman(pred, true),
        "front_abs_log_err": round(float(np.mean(np.abs(np.log(pred / true)))), 4),
        "points": int(len(points)),
        "costs": points[0].costs.get("latency_ms") if points and points[0].costs else None,
    }


def front_interval_coverage(
    store: Any,
    name: str,
    space: Any,
    codes: np.ndarray,
    measured: np.ndarray,
    true_latency: np.ndarray,
    points: Sequence[Any],
    objectives: Sequence[str],
    ensemble: bool = False,
) -> dict[str, Any]:
    """The front's 80 % latency intervals as ``hilnas front`` writes them: the device is
    imported into ``store`` (a real SQLite store) with the TRUE latencies of ``measured``
    (references + the K measured architectures), and
    :func:`hilnas.pipeline.fronts.front_with_intervals` gives each point's interval. Returns the
    share of the front's architectures whose TRUE latency lies inside (a front is chosen for
    being predicted cheap, so this is the selection-biased coverage a user sees) and the median
    half-width in log space."""
    from hilnas.pipeline.fronts import front_with_intervals

    rows = [(space.format(codes[i]), float(true_latency[i]), None) for i in measured]
    store.import_external_device(name, rows, space="nb201", source="fronts_learning", replace=True)
    records, note = front_with_intervals(
        name, list(points), tuple(objectives), space=space, store=store, ensemble=ensemble
    )
    if not note or "latency_ms" not in note:
        return {"interval_coverage": None, "interval_half_width": None}
    lo = np.array([r["intervals"]["latency_ms"][0] for r in records], dtype=np.float64)
    hi = np.array([r["intervals"]["latency_ms"][1] for r in records], dtype=np.float64)
    true = true_latency[np.array([p.index for p in points], dtype=np.int64)]
    inside = (true >= lo) & (true <= hi)
    return {
        "interval_coverage": round(float(inside.mean()), 4),
        "interval_half_width": round(float(np.median(np.log(hi / lo) / 2)), 4),
        "interval_level": note["latency_ms"]["level"],
        "interval_widening": note["latency_ms"].get("selection_widening", 1.0),
    }


#: The synthetic device: a shipped device's latencies times a pattern no prior conditioned on 10
#: reference values can know (x2 when edges 0 and 5 are both 3x3 convolutions, x1.5 with three
#: or more of them), as the tests use.
PATTERN_BASE = "gold_6226"
PATTERN_NAME = "gold_6226_patterned"


def patterned_latency(codes: np.ndarray, base: np.ndarray) -> np.ndarray:
    """``base`` latencies with :data:`PATTERN_BASE`'s pattern (see above)."""
    from hilnas.pipeline.spaces import get_space

    c3 = get_space("nb201").options[0].index("nor_conv_3x3")
    both = (codes[:, 0] == c3) & (codes[:, 5] == c3)
    many = (codes == c3).sum(1) >= 3
    return base * np.where(both, 2.0, 1.0) * np.where(many, 1.5, 1.0)


def problem_for(name: str, latency: np.ndarray):
    """An :class:`~hilnas.pipeline.fronts.NB201Problem` (error, latency) for a latency table of
    our own, normalised and scored exactly as :func:`~hilnas.pipeline.fronts.nb201_problem`
    does for a shipped device."""
    from hilnas.pipeline import fronts, mo, refdata

    error = 100.0 - refdata.load_nb201().accuracy_of("cifar10_test").astype(np.float64)
    values = np.stack([error, np.asarray(latency, np.float64)], axis=1)
    valid = error < fronts.ERROR_CUTOFF
    lo, hi = values[valid].min(axis=0), values[valid].max(axis=0)
    normalized = mo.normalize(values, lo, hi)
    vidx = np.flatnonzero(valid)
    front = np.sort(vidx[mo.pareto_mask(normalized[vidx])])
    exact = mo.hypervolume(normalized[front], np.ones(2))
    return fronts.NB201Problem(
        name, ("error", "latency_ms"), values, normalized, valid, lo, hi, front, exact
    )


def _oracle(codes: np.ndarray, y: np.ndarray):
    """A cost model that returns a device's TRUE latencies (the table): the front this search
    reads with perfect latency costs, an upper bound for better predictions."""
    from hilnas.pipeline.search.trained import CostModel
    from hilnas.pipeline.spaces import get_space

    sp = get_space("nb201")

    def predict(c: np.ndarray) -> np.ndarray:
        return y[[sp.index(tuple(int(v) for v in r)) for r in np.asarray(c)]]

    return CostModel("latency_ms", "true latencies", 0, predict, kind="oracle")


def run(
    *,
    devices: Sequence[str] | None = None,
    ks: Sequence[int] = KS,
    draws: int = 3,
    epochs: int = 10,
    patterned: bool = True,
    ensemble_intervals: bool = False,
    progress=print,
) -> dict[str, Any]:
    """Train the search, read every device's fronts along K; returns the results (plain data)."""
    import torch
    from hilnas.pipeline import refdata
    from hilnas.pipeline.home import temporary_home
    from hilnas.pipeline.predictors import TargetEmbedding
    from hilnas.pipeline.search import SearchConfig, TrainedSearch, run_search

    torch.set_num_threads(1)
    ref = refdata.load_nb201()
    devices = tuple(devices or refdata.MODNAS_TEST_DEVICES)
    codes = ref.arch_codes.astype(np.int64)
    refs = np.array(ref.reference_indices)
    rest = np.setdiff1d(np.arange(len(codes)), refs)
    test = np.sort(np.random.default_rng(12345).permutation(rest)[:N_TEST])
    pool = np.setdiff1d(rest, test)
    settings = {**SEARCH_SETTINGS, "epochs": int(epochs)}
    load_before = uptime()
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    with temporary_home("hilnas-fronts-learning-"):
        cfg = SearchConfig(train_targets=refdata.MODNAS_TRAIN_DEVICES, **settings)
        path = run_search(cfg)
        search_s = time.perf_counter() - t0
        progress(f"search trained in {search_s:.1f} s")
        trained = TrainedSearch.load(path)
        from hilnas.pipeline import fronts
        from hilnas.pipeline.spaces import get_space
        from hilnas.pipeline.store import MeasurementStore

        space = get_space("nb201")
        store = MeasurementStore()  # SQLite in the temporary home

        tables = {d: np.asarray(ref.latency(d), dtype=np.float64) for d in devices}
        problems = {d: fronts.nb201_problem(d) for d in devices}
        if patterned:
            base = np.asarray(ref.latency(PATTERN_BASE), dtype=np.float64)
            tables[PATTERN_NAME] = patterned_latency(codes, base)
            problems[PATTERN_NAME] = problem_for(PATTERN_NAME, tables[PATTERN_NAME])
        for n_dev, device in enumerate(tables):
            y, problem = tables[device], problems[device]
            for draw in range(draws):
                order = np.random.default_rng([draw, n_dev]).permutation(pool)
                for k in ks:
                    sel = order[:k]
                    emb = TargetEmbedding.from_raw(
                        device,
                        "latency_ms",
                        y[refs],
                        support_codes=codes[sel],
                        support_values=y[sel],
                        source="given",
                        network="unpruned",
                    )
                    variants = ("learning", "meta") if k else ("learning", "oracle")
                    for variant in variants if draw == 0 or k else ():
                        trained.learn_costs = variant != "meta"
                        if variant == "oracle":  # the true latencies as the costs
                            trained.pin_cost_model(emb, _oracle(codes, y))
                        t1 = time.perf_counter()
                        pts = trained.front(emb, points=POINTS)
                        wall = time.perf_counter() - t1
                        model = trained.cost_model("latency_ms", emb)
                        space_rho = _spearman(model.predict(codes[test]), y[test])
                        rec = {
                            "device": device,
                            "draw": draw,
                            "k": int(k),
                            "variant": variant,
                            **score_front(pts, problem, y),
                            "kind": model.kind,
                            "space_spearman": space_rho,
                            "wall_s": round(wall, 2),
                        }
                        if variant == "learning" and draw == 0:
                            rec |= front_interval_coverage(
                                store,
                                f"{device}-bench-k{k}",
                                space,
                                codes,
                                np.concatenate([refs, sel]),
                                y,
                                pts,
                                trained.objectives,
                                ensemble=ensemble_intervals,
                            )
                        rows.append(rec)
                        if k == 0 and variant == "learning":
                            rows.append({**rec, "variant": "meta"})
                        progress(
                            f"{device} draw {draw} K={k} {variant}: HV {rec['hv_ratio']:.4f}, "
                            f"front rho {rec['front_spearman']}, {rec['costs']} ({wall:.1f} s)"
                        )
        trained.learn_costs = True
        store.close()
    return {
        "benchmark": "fronts_learning",
        "command": "python -m hilnas.pipeline.benchmarks.fronts_learning",  # main adds its args
        "ensemble_intervals": bool(ensemble_intervals),
        "interval_widening": next(
            (r["interval_widening"] for r in rows if r.get("interval_widening") is not None), None
        ),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_before": load_before,
        "load_after": uptime(),
        "wall_s": round(time.perf_counter() - t0, 1),
        "search": {
            "train_targets": list(refdata.MODNAS_TRAIN_DEVICES),
            "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()},
            "wall_s": round(search_s, 1),
        },
        "devices": list(devices),
        "patterned": PATTERN_NAME if patterned else None,
        "ks": [int(k) for k in ks],
        "draws": int(draws),
        "points": POINTS,
        "n_test": N_TEST,
        "rows": rows,
        "summary": summarise(rows, devices, ks),
        "summary_patterned": summarise(rows, [PATTERN_NAME], ks) if patterned else None,
    }


def _mean(vals: list[float | None]) -> float | None:
    v = [x for x in vals if x is not None]
    return round(float(np.mean(v)), 4) if v else None


def summarise(rows: list[dict[str, Any]], devices: Sequence[str], ks: Sequence[int]):
    """Means over draws per (device, variant, K), means over devices, and the target check."""
    rows = [r for r in rows if r["device"] in devices]
    per: dict[str, Any] = {}
    for variant in ("learning", "meta"):
        for dev in list(devices) + ["mean"]:
            for k in ks:
                sel = [
                    r
                    for r in rows
                    if r["variant"] == variant
                    and r["k"] == k
                    and (dev == "mean" or r["device"] == dev)
                ]
                per.setdefault(variant, {}).setdefault(dev, {})[str(k)] = {
                    m: _mean([r[m] for r in sel])
                    for m in ("hv_ratio", "front_spearman", "front_abs_log_err", "space_spearman")
                } | {"kinds": sorted({str(r["kind"]) for r in sel})}
    per["oracle"] = {
        d: _mean([r["hv_ratio"] for r in rows if r["variant"] == "oracle" and r["device"] == d])
        for d in list(devices)
    }
    per["oracle"]["mean"] = _mean([per["oracle"][d] for d in devices])
    se = {
        d: max(
            _se(
                [
                    r["hv_ratio"]
                    for r in rows
                    if r["variant"] == "learning" and r["device"] == d and r["k"] == k
                ]
            )
            for k in ks
        )
        for d in devices
    }
    learn = per["learning"]
    at_target = {
        d: learn[d][str(TARGET_K)]["hv_ratio"] for d in devices if str(TARGET_K) in learn[d]
    }
    improves = {
        d: all(
            (learn[d][str(b)]["hv_ratio"] or 0) >= (learn[d][str(a)]["hv_ratio"] or 0) - 1e-4
            for a, b in zip(ks, ks[1:], strict=False)
        )
        for d in devices
    }
    noise = {
        d: all(
            (learn[d][str(b)]["hv_ratio"] or 0) >= (learn[d][str(a)]["hv_ratio"] or 0) - 2 * se[d]
            for a, b in zip(ks, ks[1:], strict=False)
        )
        for d in devices
    }
    cover = {
        d: {
            str(k): next(
                (
                    (r.get("interval_coverage"), r.get("interval_half_width"))
                    for r in rows
                    if r["variant"] == "learning"
                    and r["device"] == d
                    and r["k"] == k
                    and r["draw"] == 0
                    and r.get("interval_coverage") is not None
                ),
                (None, None),
            )
            for k in ks
        }
        for d in devices
    }
    vals = [c for dev in cover.values() for c, _ in dev.values() if c is not None]
    return {
        "per": per,
        "front_interval_coverage": cover,
        "front_interval_cells_within": (
            f"{sum(abs(c - 0.8) <= 0.05 for c in vals)}/{len(vals)}" if vals else None
        ),
        "front_interval_mean_coverage": round(float(np.mean(vals)), 4) if vals else None,
        "hv_se_max": se,
        "monotone_hv_within_2se": noise,
        "target": {
            "k": TARGET_K,
            "hv_ratio": TARGET_HV,
            "per_device": at_target,
            "met": bool(at_target) and all(v >= TARGET_HV for v in at_target.values()),
            "shortfall": {
                d: round(TARGET_HV - v, 4) for d, v in at_target.items() if v < TARGET_HV
            },
        },
        "monotone_hv": improves,
    }


def _se(vals: list[float]) -> float:
    """Standard error of a mean over draws (0 for one draw)."""
    v = np.asarray([x for x in vals if x is not None], dtype=np.float64)
    return round(float(v.std(ddof=1) / np.sqrt(len(v))), 5) if len(v) > 1 else 0.0


def _f(v: float | None, d: int = 4) -> str:
    return "-" if v is None else f"{v:.{d}f}"


def markdown(res: dict[str, Any]) -> str:
    s = res["summary"]
    per = s["per"]
    ks = res["ks"]
    st = res["search"]["settings"]
    out = [
        "# Fronts along K: a new device measured more (NB201, error vs latency)",
        "",
        f"Command: `{res['command']}`  ",
        f"Machine: {res['machine']}  ",
        f"Load before: `{res['load_before']}`  ",
        f"Load after: `{res['load_after']}`  ",
        f"Wall time: {res['wall_s']} s (search {res['search']['wall_s']} s).",
        "",
        "ONE surrogate-mode search trained on the 13 MODNAS training devices "
        f"(epochs {st['epochs']} x 100 steps, {st['accuracy_queries']} accuracy queries, "
        f"seed {st['seed']}, shipped meta-predictor, other settings the defaults). Each test "
        "device joins from its 10 reference latencies plus K further true latencies of random "
        f"architectures (nested, {res['draws']} draw(s), means over draws); its front is read "
        f"with points={res['points']} and scored with the TRUE error and latency (HV ratio = "
        "HV(front) / HV(exact front), objectives normalised over the space without the "
        "architectures of error >= 90 %). `learning`: the default front, costs from the "
        "device's learning predictor (prior: the search's meta-predictor conditioned on the "
        "references and the K measurements); `meta`: the meta-predictor conditioned on the same "
        "data alone (the costs before the learning predictor). K = 0 is the zero-shot front for "
        "both.",
        "",
        "## HV ratio (learning / meta)",
        "",
        "`true costs`: the same search's front with the device's TRUE latencies as its costs "
        "(what perfect latency predictions could give; the error is still the surrogate's). "
        "`SE`: the largest standard error over draws of a `learning` cell of the row.",
        "",
        "| device | " + " | ".join(f"K={k}" for k in ks) + " | true costs | SE |",
        "|---|" + "---|" * (len(ks) + 2),
    ]
    for dev in res["devices"] + ["mean"]:
        cells = [
            f"{_f(per['learning'][dev][str(k)]['hv_ratio'])} / {_f(per['meta'][dev][str(k)]['hv_ratio'])}"
            for k in ks
        ]
        cells.append(_f(per["oracle"].get(dev)))
        cells.append(_f(s["hv_se_max"].get(dev)) if dev != "mean" else "")
        out.append(f"| {'**mean**' if dev == 'mean' else dev} | " + " | ".join(cells) + " |")
    t = s["target"]
    out += [
        "",
        f"Target (issue 11): HV ratio >= {t['hv_ratio']} at K = {t['k']} on every test device: "
        + (
            "**met**."
            if t["met"]
            else "**missed** ("
            + ", ".join(f"{d} short by {v}" for d, v in t["shortfall"].items())
            + ")."
        ),
        "HV ratio of the `learning` front non-decreasing along K (within 1e-4): "
        + ", ".join(f"{d} {'yes' if ok else 'no'}" for d, ok in s["monotone_hv"].items())
        + "; within two standard errors over draws: "
        + ", ".join(f"{d} {'yes' if ok else 'no'}" for d, ok in s["monotone_hv_within_2se"].items())
        + ".",
        "",
        "## Predicted vs true latency of the front's architectures: Spearman (learning / meta)",
        "",
        "| device | " + " | ".join(f"K={k}" for k in ks) + " |",
        "|---|" + "---|" * len(ks),
    ]
    for dev in res["devices"] + ["mean"]:
        cells = [
            f"{_f(per['learning'][dev][str(k)]['front_spearman'], 3)} / "
            f"{_f(per['meta'][dev][str(k)]['front_spearman'], 3)}"
            for k in ks
        ]
        out.append(f"| {'**mean**' if dev == 'mean' else dev} | " + " | ".join(cells) + " |")
    out += [
        "",
        "## Mean |log error| of the front's predicted latencies (learning / meta), and the "
        "residual model the learning predictor chose",
        "",
        "| device | " + " | ".join(f"K={k}" for k in ks) + " |",
        "|---|" + "---|" * len(ks),
    ]
    for dev in res["devices"]:
        cells = [
            f"{_f(per['learning'][dev][str(k)]['front_abs_log_err'], 3)} / "
            f"{_f(per['meta'][dev][str(k)]['front_abs_log_err'], 3)} "
            f"({'/'.join(per['learning'][dev][str(k)]['kinds'])})"
            for k in ks
        ]
        out.append(f"| {dev} | " + " | ".join(cells) + " |")
    out += [
        "",
        f"## Cost model Spearman on {res['n_test']} never-measured architectures (learning / meta)",
        "",
        "| device | " + " | ".join(f"K={k}" for k in ks) + " |",
        "|---|" + "---|" * len(ks),
    ]
    for dev in res["devices"] + ["mean"]:
        cells = [
            f"{_f(per['learning'][dev][str(k)]['space_spearman'])} / "
            f"{_f(per['meta'][dev][str(k)]['space_spearman'])}"
            for k in ks
        ]
        out.append(f"| {'**mean**' if dev == 'mean' else dev} | " + " | ".join(cells) + " |")
    if s.get("front_interval_coverage"):
        out += [
            "",
            "## Coverage of the front's 80 % latency intervals (draw 0)",
            "",
            "Each front point's interval as `hilnas front` writes it (the device imported into a "
            "SQLite store with its references and K true latencies, "
            "`pipeline.fronts.front_with_intervals`): the share of the front's architectures "
            "whose TRUE latency lies inside, and in brackets the median half-width in log space. "
            "A front is chosen for being predicted cheap, so its points are where a model's "
            "errors lean optimistic: this is the coverage a user reading a front sees, not the "
            "coverage over random architectures (predictors_learning). The intervals' log "
            f"half-width is widened x{res.get('interval_widening') or 1.0} for that selection "
            "(`pipeline.fronts.FRONT_WIDENING`, measured on the training devices by "
            "`python -m hilnas.pipeline.benchmarks.front_intervals`; x1 means none).",
            "",
            "| device | " + " | ".join(f"K={k}" for k in ks) + " |",
            "|---|" + "---|" * len(ks),
        ]
        for dev in res["devices"]:
            cells = []
            for k in ks:
                c, w = s["front_interval_coverage"][dev][str(k)]
                cells.append("-" if c is None else f"{c:.2f} ({w:.3f})")
            out.append(f"| {dev} | " + " | ".join(cells) + " |")
        out += [
            "",
            f"Cells within 80 +- 5 %: {s['front_interval_cells_within']}; mean coverage "
            f"{_f(s['front_interval_mean_coverage'], 3)}.",
        ]
    sp = res.get("summary_patterned")
    if sp:
        name = res["patterned"]
        pp = sp["per"]
        out += [
            "",
            f"## A device the prior cannot know: `{name}`",
            "",
            f"{PATTERN_BASE}'s latencies x2 when edges 0 and 5 are both 3x3 convolutions and "
            "x1.5 with three or more of them (synthetic: no shipped device behaves so; the "
            "meta-predictor, linear in its features, cannot express it from 10 reference "
            "values). Same search, draws and scoring (its exact front from this table). Cells: "
            "learning / meta.",
            "",
            "| metric | " + " | ".join(f"K={k}" for k in ks) + " | true costs |",
            "|---|" + "---|" * (len(ks) + 1),
        ]
        for metric, label, d in (
            ("hv_ratio", "HV ratio", 4),
            ("front_spearman", "front Spearman (pred vs true latency)", 3),
            ("front_abs_log_err", "front mean abs log error", 3),
            ("space_spearman", f"Spearman on {res['n_test']} unmeasured", 4),
        ):
            cells = [
                f"{_f(pp['learning'][name][str(k)][metric], d)} / "
                f"{_f(pp['meta'][name][str(k)][metric], d)}"
                for k in ks
            ]
            cells.append(_f(pp["oracle"][name]) if metric == "hv_ratio" else "")
            out.append(f"| {label} | " + " | ".join(cells) + " |")
        out.append(
            "| residual model | "
            + " | ".join("/".join(pp["learning"][name][str(k)]["kinds"]) for k in ks)
            + " | |"
        )
        out += [
            "",
            f"HV ratio of the `learning` front non-decreasing along K: within 1e-4 "
            f"{'yes' if sp['monotone_hv'][name] else 'no'}, within two standard errors over "
            f"draws {'yes' if sp['monotone_hv_within_2se'][name] else 'no'} (largest SE "
            f"{_f(sp['hv_se_max'][name])}); K = {TARGET_K}: {_f(sp['target']['per_device'][name])}.",
        ]
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 devices, 1 draw, 3 epochs")
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=SEARCH_SETTINGS["epochs"])
    ap.add_argument("--devices", default=None, help="comma-separated (default: the six)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--no-patterned", action="store_true", help="skip the synthetic device")
    ap.add_argument(
        "--ensemble-intervals",
        action="store_true",
        help="the fronts' intervals with learning_predictor(ensemble=True) (an option); results "
        "go to fronts_learning_ensemble.*",
    )
    extra = list(sys.argv[1:] if argv is None else argv)
    args = ap.parse_args(extra)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    devices = args.devices.split(",") if args.devices else None
    draws, epochs = args.draws, args.epochs
    if args.quick:
        devices = devices or ["raspi4", "pixel2"]
        draws, epochs = 1, 3
    res = run(
        devices=devices,
        draws=draws,
        epochs=epochs,
        patterned=not args.no_patterned,
        ensemble_intervals=args.ensemble_intervals,
    )
    shown, skip = [], False
    for a in extra:  # the command as run, without where it wrote
        if skip or a.startswith("--out"):
            skip = a == "--out"
            continue
        shown.append(a)
    if shown:
        res["command"] += " " + " ".join(shown)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "fronts_learning_quick" if args.quick else "fronts_learning"
    if args.ensemble_intervals:
        name += "_ensemble"
    (args.out / f"{name}.json").write_text(json.dumps(res, indent=1) + "\n")
    (args.out / f"{name}.md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
