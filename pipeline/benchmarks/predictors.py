"""Benchmark of the hardware cost predictors on the NB201 reference data (one command).

    python -m hilnas.pipeline.benchmarks.predictors [--seeds 3] [--quick] [--out DIR]

Sections (all figures per device: Spearman, Kendall tau, share of predictions within +-10%):

(a) MODNAS split: meta-predictor trained on the 13 MODNAS training devices, tested on the 6
    zero-shot devices; zero-shot (the 10 reference measurements only) and few-shot (10 + k random
    further measurements, k in 10, 20, 50, mean over seeds), next to HELP's published Spearman
    (10 samples) and two baselines run on the same samples: FLOPs / parameter count as a proxy
    (ranking as is; a least-squares scale a*proxy+b fit on the samples for the +-10% share) and a
    per-device ridge model on the architecture features fit on the samples alone.
(b) Leave-one-device-out over all 27 latency configurations (train on the other 26). The
    meta-predictor is closed form (no epochs), so leave-one-out trains exactly as the split does.
(c) Energy (eyeriss, fpga): trained on latency devices plus the other energy device (the held-out
    device's own latency column excluded in leave-one-out).
(d) Ablation on the MODNAS split, zero-shot: prior and feature variants and a
    device-combination baseline (non-negative least squares of the training devices' latency
    profiles fit on the 10 references).
(e) Local CPU, when ``results/local_cpu_latency.csv`` is present (measured on this machine, see
    ``results/local_cpu_latency.json``): per-device model with 100 measured samples vs the rest.
(f) Own-data ceiling of the 6 test devices: ridge and gradient boosting fit on 5,000 of the
    device's own measurements, Spearman on the rest.
(g) Local CPU profiled by this run (``--measure-local N``, default 200 architectures, 30
    repetitions, in a temporary HILNAS_HOME): as (e), on the store's median latencies.
(h) The floor: for every reference configuration (27 latency, 2 energy) and the local CPU, the
    model a user gets after 10 references + k further measurements (k = 0 and 10: the
    meta-predictor; k >= 20: the per-device model ``hilnas fit`` chooses) predicts all 15,625
    architectures; reported: min(pred) / min(measured values it was given) (the promise: >=
    0.8), the number of architectures below 0.8x that minimum (the promise: 0), and min(pred) /
    the device's true minimum over the space.

Metrics are computed over the architectures not used as samples (all 15,625 minus the support).
Results: ``results/predictors.json`` and ``results/predictors.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from hilnas.pipeline import predictors as P
from hilnas.pipeline import refdata
from hilnas.pipeline.predictors.features import FEATURE_SETS, features_np

RESULTS = Path(__file__).with_name("results")
LOCAL_CPU_CSV = RESULTS / "local_cpu_latency.csv"
LOCAL_CPU_ABOUT = RESULTS / "local_cpu_latency.json"
HELP_SPEARMAN = {
    "titan_rtx_256": 0.987,
    "gold_6226": 0.989,
    "pixel2": 0.802,
    "raspi4": 0.890,
    "eyeriss": 0.940,
    "fpga": 0.985,
}
HELP_MEAN = 0.932
KS = (10, 20, 50)


# ----------------------------------------------------------------------------------------------
# data helpers
# ----------------------------------------------------------------------------------------------
class Data:
    def __init__(self) -> None:
        self.ref = refdata.load_nb201()
        self.codes = self.ref.arch_codes.astype(np.int64)
        self.refs = np.array(self.ref.reference_indices)
        self.pool = np.setdiff1d(np.arange(len(self.codes)), self.refs)
        from hilnas.pipeline.spaces import get_space

        sp = get_space("nb201")
        self.flops = np.array([sp.flops(c) for c in self.codes])
        self.params = np.asarray(self.ref.params_mb, dtype=np.float64)
        self.x_v3 = features_np(self.codes, FEATURE_SETS["v3"])

    def values(self, device: str, metric: str) -> np.ndarray:
        return np.asarray(
            self.ref.latency(device) if metric == "latency_ms" else self.ref.energy(device),
            np.float64,
        )

    def support(self, k: int, seed: int) -> np.ndarray:
        if k == 0:
            return np.zeros(0, dtype=np.int64)
        return np.random.default_rng(seed).choice(self.pool, k, replace=False)


def _q(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    return {k: round(v, 4) for k, v in P.quality(pred, true).items()}


def _mean_q(qs: Sequence[dict[str, float]]) -> dict[str, float]:
    return {k: round(float(np.mean([q[k] for q in qs])), 4) for k in qs[0]}


def _ridge_baseline(d: Data, idx: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-device ridge on the v3 features fit on the samples alone (no other devices)."""
    from hilnas.pipeline.predictors.device import _penalised, _ridge_fit

    scale = float(np.mean(y[d.refs]))
    t = y[idx] / scale
    w, _ = _ridge_fit(
        d.x_v3[idx], t, _penalised("v3"), 1.0 / np.maximum(t, 0.25 * np.median(t)) ** 2
    )
    return np.maximum(d.x_v3 @ w, 0.02) * scale


def _proxy(d: Data, proxy: np.ndarray, idx: np.ndarray, y: np.ndarray) -> np.ndarray:
    a = np.stack([proxy[idx], np.ones(len(idx))], 1)
    coef = np.linalg.lstsq(a, y[idx], rcond=None)[0]
    if coef[0] <= 0:  # keep the proxy's ranking; only its scale is fit
        coef = np.array([np.mean(y[idx]) / max(np.mean(proxy[idx]), 1e-12), 0.0])
    return np.maximum(coef[0] * proxy + coef[1], 1e-6)


def evaluate_device(
    d: Data, model: P.MetaPredictor, device: str, metric: str, *, seeds: int, ks: Sequence[int] = KS
) -> dict[str, Any]:
    """All methods for one device: zero-shot and few-shot, baselines on the same samples.

    The reference tables were measured on unpruned networks (every non-``none`` op runs), as
    :func:`~hilnas.pipeline.predictors.embedding_for` records for them; the ablation also reports
    the test devices treated as of unknown network type."""
    y = d.values(device, metric)
    emb0 = P.TargetEmbedding.from_raw(
        device, metric, y[d.refs], source="refdata", network="unpruned"
    )
    out: dict[str, Any] = {"device": device, "metric": metric}
    for k in (0, *ks):
        rows: dict[str, list[dict[str, float]]] = {
            m: [] for m in ("meta", "ridge", "flops", "params")
        }
        for s in range(seeds if k else 1):
            sup = d.support(k, s)
            idx = np.concatenate([d.refs, sup])
            mask = np.ones(len(y), dtype=bool)
            mask[idx] = False
            emb = emb0.with_support(d.codes[sup], y[sup]) if k else emb0
            rows["meta"].append(_q(model.predict_space(emb)[mask], y[mask]))
            rows["ridge"].append(_q(_ridge_baseline(d, idx, y)[mask], y[mask]))
            rows["flops"].append(_q(_proxy(d, d.flops, idx, y)[mask], y[mask]))
            rows["params"].append(_q(_proxy(d, d.params, idx, y)[mask], y[mask]))
        out[f"k{k}"] = {m: _mean_q(v) for m, v in rows.items()}
    return out


# ----------------------------------------------------------------------------------------------
# sections
# ----------------------------------------------------------------------------------------------
def modnas_split(d: Data, seeds: int, ks: Sequence[int]) -> dict[str, Any]:
    model = P.train_meta_predictor("latency_ms", latency_devices=refdata.MODNAS_TRAIN_DEVICES)
    rows = [
        evaluate_device(d, model, dev, "latency_ms", seeds=seeds, ks=ks)
        for dev in refdata.MODNAS_TEST_DEVICES
    ]
    return {"train": list(refdata.MODNAS_TRAIN_DEVICES), "rows": rows}


def leave_one_out(d: Data, seeds: int, ks: Sequence[int]) -> dict[str, Any]:
    rows = []
    devices = d.ref.latency_devices
    for dev in devices:
        model = P.train_meta_predictor(
            "latency_ms", latency_devices=[x for x in devices if x != dev]
        )
        rows.append(evaluate_device(d, model, dev, "latency_ms", seeds=seeds, ks=ks))
    return {"rows": rows}


def energy(d: Data, seeds: int, ks: Sequence[int]) -> dict[str, Any]:
    out: dict[str, Any] = {"split": [], "loo": []}
    for dev in d.ref.energy_devices:
        other = [e for e in d.ref.energy_devices if e != dev]
        m1 = P.train_meta_predictor(
            "energy_mj",
            latency_devices=[x for x in refdata.MODNAS_TRAIN_DEVICES if x != dev],
            energy_devices=other,
        )
        out["split"].append(evaluate_device(d, m1, dev, "energy_mj", seeds=seeds, ks=ks))
        m2 = P.train_meta_predictor(
            "energy_mj",
            latency_devices=[x for x in d.ref.latency_devices if x != dev],
            energy_devices=other,
        )
        out["loo"].append(evaluate_device(d, m2, dev, "energy_mj", seeds=seeds, ks=ks))
    return out


def ceiling(d: Data, n_train: int = 5000, seed: int = 0) -> dict[str, Any]:
    """How far a device's own data can be predicted: models fit on ``n_train`` of the device's
    OWN measurements (no other device), Spearman on the rest. A zero-shot figure near these
    is limited by the device's measurements (resolution, noise), not by the transfer."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    rows = {}
    perm = np.random.default_rng(seed).permutation(len(d.codes))
    tr, te = perm[:n_train], perm[n_train:]
    for dev in refdata.MODNAS_TEST_DEVICES:
        y = d.values(dev, "latency_ms")
        ridge = _ridge_baseline(d, tr, y)[te]
        gbm = (
            HistGradientBoostingRegressor(max_iter=300, random_state=seed)
            .fit(d.x_v3[tr], y[tr])
            .predict(d.x_v3[te])
        )
        rows[dev] = {
            "distinct_values": len(np.unique(y)),
            "ridge": _q(ridge, y[te]),
            "gbm": _q(gbm, y[te]),
        }
    return {"n_train": n_train, "rows": rows}


def _nnls_combination(d: Data, train: Sequence[str], dev: str) -> np.ndarray:
    from scipy.optimize import nnls

    prof = np.stack([d.values(t, "latency_ms") for t in train], 1)
    y = d.values(dev, "latency_ms")
    w, _ = nnls(prof[d.refs], y[d.refs])
    return prof @ w


def ablation(d: Data) -> dict[str, Any]:
    variants = {
        "default: mixture prior, v3 features": ({}, "unpruned"),
        "default, test devices' network type treated as unknown": ({}, "unknown"),
        "single Gaussian prior": ({"mode": "gauss"}, "unpruned"),
        "v1 features (ops per edge only)": ({"feature_set": "v1"}, "unpruned"),
        "fixed noise grid up to 1e-2 (earlier default)": (
            {"noises": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)},
            "unpruned",
        ),
    }
    out: dict[str, Any] = {}
    mask = np.ones(len(d.codes), dtype=bool)
    mask[d.refs] = False
    for name, (hyper, network) in variants.items():
        m = P.train_meta_predictor(
            "latency_ms", latency_devices=refdata.MODNAS_TRAIN_DEVICES, hyper=hyper
        )
        out[name] = {}
        for dev in refdata.MODNAS_TEST_DEVICES:
            y = d.values(dev, "latency_ms")
            emb = P.TargetEmbedding.from_raw(dev, "latency_ms", y[d.refs], network=network)
            out[name][dev] = _q(m.predict_space(emb)[mask], y[mask])
    out["NNLS combination of training-device profiles"] = {
        dev: _q(
            _nnls_combination(d, refdata.MODNAS_TRAIN_DEVICES, dev)[mask],
            d.values(dev, "latency_ms")[mask],
        )
        for dev in refdata.MODNAS_TEST_DEVICES
    }
    return out


def local_cpu(seeds: int = 10, n_train: int = 100) -> dict[str, Any] | None:
    """Per-device model on this machine's measured CPU latencies (if the CSV is present)."""
    if not LOCAL_CPU_CSV.is_file():
        return None
    from hilnas.pipeline.predictors.io import read_measurements_csv

    table = read_measurements_csv(LOCAL_CPU_CSV)
    header = json.loads(LOCAL_CPU_ABOUT.read_text())["about"] if LOCAL_CPU_ABOUT.is_file() else []
    return {
        "file": LOCAL_CPU_CSV.name,
        "about": header,
        **_local_quality(list(table.archs), np.asarray(table.latency_ms), seeds, n_train),
    }


def local_cpu_profiled(
    n: int = 200, reps: int = 30, seeds: int = 10, n_train: int = 100
) -> dict[str, Any]:
    """Profile the local CPU now (10 references + ``n - 10`` sampled, ``reps`` repetitions, in a
    temporary HILNAS_HOME) and evaluate on the store's own values: the per-architecture median
    latency that ``hilnas fit`` and the search use."""
    import os

    from hilnas.pipeline.home import temporary_home
    from hilnas.pipeline.profiling import profile_device
    from hilnas.pipeline.store import MeasurementStore

    load0 = [round(float(x), 2) for x in os.getloadavg()]
    with temporary_home("hilnas-bench-pred-"):
        t = time.time()
        rep = profile_device("cpu", archs=n - 10, reps=reps)
        wall = time.time() - t
        with MeasurementStore() as st:
            table = st.latency_table(rep.config_key)
    cvs = [r.latency_ms_cv for r in rep.rows if getattr(r, "latency_ms_cv", None) is not None]
    about = [
        f"profiled by this benchmark: `profile_device('cpu', archs={n - 10}, reps={reps})` "
        f"({rep.device_name}, {rep.threads} ORT thread(s)), {wall:.0f} s; load average {load0} before",
        "value per architecture: the store's median over the repetitions (what `hilnas fit` uses)",
    ]
    if cvs:
        about.append(
            f"median per-architecture coefficient of variation of the repetitions: {float(np.median(cvs)):.3f}"
        )
    archs = list(table)
    return {
        "file": None,
        "about": about,
        **_local_quality(archs, np.array([table[a] for a in archs]), seeds, n_train),
    }


def _local_quality(archs: list[str], y: np.ndarray, seeds: int, n_train: int) -> dict[str, Any]:
    from hilnas.pipeline.predictors import device as PD
    from hilnas.pipeline.spaces import get_space

    sp = get_space("nb201")
    refs = P.reference_strings()
    pos = {a: i for i, a in enumerate(archs)}
    ref_idx = np.array([pos[a] for a in refs])
    rest = np.array([i for i in range(len(y)) if i not in set(ref_idx)])
    codes = np.array([sp.parse(a) for a in archs])
    emb0 = P.TargetEmbedding.from_raw("local_cpu", "latency_ms", y[ref_idx], network="pruned")
    meta = P.load_meta_predictor("latency_ms", source="shipped")
    zero = _q(meta.predict_codes(codes[rest], emb0), y[rest])
    zero_unknown = _q(
        meta.predict_codes(
            codes[rest], P.TargetEmbedding.from_raw("local_cpu", "latency_ms", y[ref_idx])
        ),
        y[rest],
    )
    zero_unpruned = _q(
        meta.predict_codes(
            codes[rest],
            P.TargetEmbedding.from_raw("local_cpu", "latency_ms", y[ref_idx], network="unpruned"),
        ),
        y[rest],
    )
    per: dict[str, list[dict[str, float]]] = {"ridge": [], "meta": [], "auto": []}
    chosen = []
    k = n_train - len(refs)
    for s in range(seeds):
        perm = np.random.default_rng(s).permutation(rest)
        tr, te = perm[:k], perm[k:]
        emb = emb0.with_support(codes[tr], y[tr])
        for kind in ("ridge", "meta"):
            fn, _, _ = PD._fit_kind(kind, emb, codes[tr], y[tr], PD.DEFAULT_FEATURE_SET)
            per[kind].append(_q(fn(codes[te]), y[te]))
        model = PD.fit_device_predictor(emb, seed=s)
        chosen.append(model.kind)
        per["auto"].append(_q(model.predict_codes(codes[te]), y[te]))
    return {
        "n": len(y),
        "floor": _local_floor(archs, y),
        "zero_shot_meta": zero,
        "zero_shot_meta_network_unknown": zero_unknown,
        "zero_shot_meta_network_unpruned": zero_unpruned,
        "samples": n_train,
        "splits": seeds,
        "with_samples": {kind: _mean_q(v) for kind, v in per.items()},
        "auto_chosen": chosen,
    }


FLOOR_KS = (0, 10, 20, 50, 100)


def _floor_row(emb: P.TargetEmbedding, codes: np.ndarray, true_min: float | None) -> dict[str, Any]:
    """What a user gets for a target: the per-device model when it has enough measurements
    (fit as ``hilnas fit`` does), else the meta-predictor; its floor figures over ``codes``."""
    from hilnas.pipeline.predictors import device as PD

    if len(emb.support_values) >= PD.MIN_EXTRA:
        model = PD.fit_device_predictor(emb)
        kind, pred = model.kind, model.predict_codes(codes)
    else:
        kind = "meta (zero-shot)" if not len(emb.support_values) else "meta (few-shot)"
        pred = P.load_meta_predictor(emb.metric, source="shipped").predict_codes(codes, emb)
    lo = float(emb.measured.min())
    return {
        "model": kind,
        "measured": int(len(emb.measured)),
        "min_pred_over_min_measured": round(float(pred.min()) / lo, 4),
        "below_floor": int(np.sum(pred < P.FLOOR_SHARE * lo)),
        "min_pred_over_true_min": None
        if true_min is None
        else round(float(pred.min()) / true_min, 4),
    }


def floor_check(d: Data, ks: Sequence[int] = FLOOR_KS, seed: int = 0) -> dict[str, Any]:
    """Section (h) on the reference configurations (see the module docstring)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the batched Cholesky of the CV is ~10x faster on a loaded machine
    try:
        rows = []
        for metric in P.METRICS:
            for dev in P.reference_targets(metric):
                y = d.values(dev, metric)
                emb0 = P.embedding_for(dev, metric)
                for k in ks:
                    idx = d.support(k, seed)
                    emb = emb0.with_support(d.codes[idx], y[idx]) if k else emb0
                    row = _floor_row(emb, d.codes, float(y.min()))
                    rows.append({"device": dev, "metric": metric, "k": k, **row})
    finally:
        torch.set_num_threads(threads)
    return {"ks": list(ks), "seed": seed, "floor_share": P.FLOOR_SHARE, "rows": rows}


def _local_floor(
    archs: list[str], y: np.ndarray, ks: Sequence[int] = FLOOR_KS, seed: int = 0
) -> list[dict[str, Any]]:
    """Section (h) on local CPU measurements: predictions over the whole space (the true minimum
    is the minimum over the measured architectures)."""
    from hilnas.pipeline.spaces import get_space

    sp = get_space("nb201")
    refs = P.reference_strings()
    pos = {a: i for i, a in enumerate(archs)}
    ref_idx = np.array([pos[a] for a in refs])
    rest = np.setdiff1d(np.arange(len(y)), ref_idx)
    codes = np.array([sp.parse(a) for a in archs])
    emb0 = P.TargetEmbedding.from_raw("local_cpu", "latency_ms", y[ref_idx], network="pruned")
    space = refdata.load_nb201().arch_codes.astype(np.int64)
    out = []
    for k in ks:
        if k > len(rest):
            continue
        idx = np.random.default_rng(seed).choice(rest, k, replace=False)
        emb = emb0.with_support(codes[idx], y[idx]) if k else emb0
        out.append({"k": k, **_floor_row(emb, space, float(y.min()))})
    return out


# ----------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------
def _f(x: float | None, pct: bool = False) -> str:
    if x is None:
        return "-"
    return f"{100 * x:.1f}%" if pct else f"{x:.3f}"


def markdown(res: dict[str, Any]) -> str:
    ks = res["settings"]["ks"]
    lines = [
        "# Hardware predictor benchmark (NB201 reference data)",
        "",
        f"Command: `{res['settings']['command']}`; seeds for few-shot samples: {res['settings']['seeds']}; "
        f"runtime {res['runtime_s']:.0f} s wall, {res['cpu_s']:.0f} s CPU on {res['settings']['machine']}. Metrics over all architectures "
        "not used as samples. Zero-shot = the 10 reference measurements only; k = 10 + k random further "
        "measurements. HELP figures are the published ones (10 samples). The meta-predictor is closed form "
        "(no training epochs), so leave-one-out uses the same training as the split.",
        "",
    ]

    def table_rows(rows, metric_key="spearman", show_help=True):
        head = (
            "| device | "
            + ("HELP | " if show_help else "")
            + "ours zero-shot | "
            + " | ".join(f"ours k={k}" for k in ks)
            + " | FLOPs | params | per-device (10) | per-device (10+"
            + str(ks[-1])
            + ") |"
        )
        sep = "|" + "---|" * (head.count("|") - 1)
        out = [head, sep]
        means: dict[str, list[float]] = {}
        for r in rows:
            cells = []
            if show_help:
                cells.append(
                    _f(HELP_SPEARMAN.get(r["device"])) if metric_key == "spearman" else "-"
                )
            vals = [r["k0"]["meta"][metric_key]] + [r[f"k{k}"]["meta"][metric_key] for k in ks]
            vals += [
                r["k0"]["flops"][metric_key],
                r["k0"]["params"][metric_key],
                r["k0"]["ridge"][metric_key],
                r[f"k{ks[-1]}"]["ridge"][metric_key],
            ]
            for i, v in enumerate(vals):
                means.setdefault(str(i), []).append(v)
            pct = metric_key == "within10"
            cells += [_f(v, pct) for v in vals]
            out.append(f"| {r['device']} | " + " | ".join(cells) + " |")
        pct = metric_key == "within10"
        mean_cells = ([_f(HELP_MEAN) if metric_key == "spearman" else "-"] if show_help else []) + [
            _f(float(np.mean(means[str(i)])), pct) for i in range(len(means))
        ]
        out.append("| **mean** | " + " | ".join(mean_cells) + " |")
        mins = ["-"] if show_help else []
        mins += [_f(float(np.min(means[str(i)])), pct) for i in range(len(means))]
        out.append("| min | " + " | ".join(mins) + " |")
        return out

    sections = [
        (
            "(a) MODNAS split: 13 training devices, 6 zero-shot test devices, latency",
            res["modnas_split"]["rows"],
            True,
        ),
        (
            "(b) Leave-one-device-out, all 27 latency configurations",
            res["leave_one_out"]["rows"],
            False,
        ),
        (
            "(c1) Energy, split (trained on the 13 MODNAS latency devices + the other energy device)",
            res["energy"]["split"],
            False,
        ),
        (
            "(c2) Energy, leave-one-out (26 latency columns without the device's own + the other energy device)",
            res["energy"]["loo"],
            False,
        ),
    ]
    for title, rows, show_help in sections:
        for key, name in (
            ("spearman", "Spearman"),
            ("kendall", "Kendall tau"),
            ("within10", "share within +-10%"),
        ):
            lines += [f"## {title}: {name}", ""]
            lines += table_rows(rows, key, show_help=show_help and key == "spearman")
            lines.append("")
    lines += ["## (d) Ablation, MODNAS split, zero-shot Spearman", ""]
    devs = list(refdata.MODNAS_TEST_DEVICES)
    lines.append("| variant | " + " | ".join(devs) + " | mean | min |")
    lines.append("|" + "---|" * (len(devs) + 3))
    for name, per in res["ablation"].items():
        v = [per[x]["spearman"] for x in devs]
        lines.append(
            f"| {name} | "
            + " | ".join(_f(x) for x in v)
            + f" | {_f(float(np.mean(v)))} | {_f(float(np.min(v)))} |"
        )
    lines.append("")
    ceil = res.get("ceiling")
    if ceil:
        lines += [
            f"## (f) Own-data ceiling: models fit on {ceil['n_train']} of the device's OWN measurements, Spearman on the rest",
            "",
            "| device | distinct values | ours zero-shot | ridge (own data) | gradient boosting (own data) |",
            "|---|---|---|---|---|",
        ]
        zs = {r["device"]: r["k0"]["meta"]["spearman"] for r in res["modnas_split"]["rows"]}
        for dev, r in ceil["rows"].items():
            lines.append(
                f"| {dev} | {r['distinct_values']} | {_f(zs.get(dev))} | {_f(r['ridge']['spearman'])} | {_f(r['gbm']['spearman'])} |"
            )
        lines.append("")
    for key, title in (
        ("local_cpu", "(e) Local CPU (measured here, file)"),
        ("local_cpu_profiled", "(g) Local CPU, profiled by this run (store medians)"),
    ):
        lines += _local_markdown(res.get(key), title)
    lines += _floor_markdown(res)
    return "\n".join(lines) + "\n"


def _floor_markdown(res: dict[str, Any]) -> list[str]:
    fl = res.get("floor")
    if not fl:
        return []
    ks = fl["ks"]
    lines = [
        "## (h) The floor: min(pred) / min(measured), over all 15,625 architectures",
        "",
        f"After 10 references + k random further measurements (seed {fl['seed']}); k = 0, 10: the "
        "shipped meta-predictor; k >= 20: the per-device model `hilnas fit` chooses. Each cell: "
        "min(pred) / min(measured values the model was given) (promise: >= "
        f"{fl['floor_share']}), then min(pred) / the device's true minimum over the space. "
        "Architectures predicted below the promise: "
        f"{sum(r['below_floor'] for r in fl['rows'])} in all.",
        "",
        "| device | metric | " + " | ".join(f"k={k}" for k in ks) + " | models (k >= 20) |",
        "|" + "---|" * (len(ks) + 3),
    ]
    by: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for r in fl["rows"]:
        by.setdefault((r["device"], r["metric"]), {})[r["k"]] = r
    for (dev, metric), per in by.items():
        cells = [
            f"{per[k]['min_pred_over_min_measured']:.3f} / {per[k]['min_pred_over_true_min']:.3f}"
            for k in ks
        ]
        kinds = ", ".join(per[k]["model"] for k in ks if k >= 20)
        lines.append(f"| {dev} | {metric} | " + " | ".join(cells) + f" | {kinds} |")
    lines.append("")
    for key, title in (("local_cpu", "file (e)"), ("local_cpu_profiled", "profiled (g)")):
        cpu = res.get(key)
        if cpu and cpu.get("floor"):
            cells = ", ".join(
                f"k={r['k']}: {r['min_pred_over_min_measured']:.3f} / "
                f"{r['min_pred_over_true_min']:.3f} ({r['model']}, {r['below_floor']} below)"
                for r in cpu["floor"]
            )
            lines += [
                f"Local CPU, {title} (true minimum: over its measured architectures): {cells}.",
                "",
            ]
    return lines


def _local_markdown(cpu: dict[str, Any] | None, title: str) -> list[str]:
    lines: list[str] = []
    if cpu:
        lines += [f"## {title}", ""]
        lines += [f"- {ln}" for ln in cpu["about"]] + [""]
        z, zu, zn = (
            cpu["zero_shot_meta"],
            cpu["zero_shot_meta_network_unknown"],
            cpu["zero_shot_meta_network_unpruned"],
        )
        lines.append(
            f"{cpu['n']} architectures measured. Zero-shot meta-predictor (10 references), the target "
            f"marked as measured on hilnas's pruned networks (as `embedding_for` does for profiled devices): "
            f"Spearman {_f(z['spearman'])}, Kendall {_f(z['kendall'])}, within +-10% {_f(z['within10'], True)}; "
            f"network type unknown (as for an imported CSV): Spearman {_f(zu['spearman'])}, within +-10% "
            f"{_f(zu['within10'], True)}; with only the unpruned prior components: Spearman {_f(zn['spearman'])}, "
            f"within +-10% {_f(zn['within10'], True)}."
        )
        lines.append("")
        lines.append(
            f"With {cpu['samples']} measured samples (10 references + {cpu['samples'] - 10} random), "
            f"evaluated on the other {cpu['n'] - cpu['samples']}, mean over {cpu['splits']} random splits:"
        )
        lines.append("")
        lines.append("| model | Spearman | Kendall | within +-10% |")
        lines.append("|---|---|---|---|")
        for kind, q in cpu["with_samples"].items():
            lines.append(
                f"| {kind} | {_f(q['spearman'])} | {_f(q['kendall'])} | {_f(q['within10'], True)} |"
            )
        lines.append("")
        lines.append(
            "`auto` is what `hilnas fit` does: the model with the lowest 5-fold CV mean absolute relative error "
            f"(chosen: {', '.join(sorted(set(cpu['auto_chosen'])))})."
        )
        lines.append("")
    return lines


def run(
    *,
    seeds: int = 3,
    ks: Sequence[int] = KS,
    quick: bool = False,
    out_dir: Path = RESULTS,
    measure_local: int = 200,
) -> dict[str, Any]:
    t0, c0 = time.time(), time.process_time()
    d = Data()
    if quick:
        seeds, ks = 1, (ks[-1],)
    res: dict[str, Any] = {
        "settings": {
            "seeds": seeds,
            "ks": list(ks),
            "quick": quick,
            "command": "python -m hilnas.pipeline.benchmarks.predictors"
            + (" --quick" if quick else ""),
            "machine": f"{platform.machine()} {platform.processor() or ''} ({__import__('os').cpu_count()} cores)".strip(),
            "refdata_sha256": d.ref.sha256,
            "hilnas_version": P.hilnas_version(),
            "default_hyper": {
                k: list(v) if isinstance(v, tuple) else v for k, v in P.DEFAULT_HYPER.items()
            },
        },
        "help_published": {"spearman": HELP_SPEARMAN, "mean": HELP_MEAN},
    }
    res["modnas_split"] = modnas_split(d, seeds, ks)
    res["leave_one_out"] = leave_one_out(d, seeds, ks)
    res["energy"] = energy(d, seeds, ks)
    res["ablation"] = ablation(d)
    res["ceiling"] = ceiling(d)
    res["floor"] = floor_check(d, FLOOR_KS if not quick else (0, ks[-1]))
    res["local_cpu"] = local_cpu()
    res["local_cpu_profiled"] = (
        None if quick or not measure_local else local_cpu_profiled(measure_local)
    )
    res["runtime_s"] = round(time.time() - t0, 1)
    res["cpu_s"] = round(time.process_time() - c0, 1)
    summary = {
        "modnas_zero_shot_spearman_mean": float(
            np.mean([r["k0"]["meta"]["spearman"] for r in res["modnas_split"]["rows"]])
        ),
        "modnas_zero_shot_spearman_min": float(
            np.min([r["k0"]["meta"]["spearman"] for r in res["modnas_split"]["rows"]])
        ),
        "loo_zero_shot_spearman_mean": float(
            np.mean([r["k0"]["meta"]["spearman"] for r in res["leave_one_out"]["rows"]])
        ),
    }
    res["summary"] = {k: round(v, 4) for k, v in summary.items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "predictors.json").write_text(json.dumps(res, indent=2) + "\n")
    (out_dir / "predictors.md").write_text(markdown(res))
    return res


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--seeds", type=int, default=3, help="random few-shot samples per k (default 3)"
    )
    ap.add_argument("--quick", action="store_true", help="one seed, k=50 only")
    ap.add_argument("--out", type=Path, default=RESULTS, help="directory for predictors.{json,md}")
    ap.add_argument(
        "--measure-local",
        type=int,
        default=200,
        metavar="N",
        help="profile N architectures on the local CPU now and evaluate on them (0: skip; default 200)",
    )
    args = ap.parse_args(argv)
    res = run(
        seeds=args.seeds, quick=args.quick, out_dir=args.out, measure_local=args.measure_local
    )
    print(markdown(res))
    print(json.dumps(res["summary"]))


if __name__ == "__main__":
    main()
