"""Benchmark: how much must a front's intervals widen to cover as they claim? (training devices)

    python -m hilnas.pipeline.benchmarks.front_intervals [--quick] [--out DIR]

A front is made of architectures chosen for being *predicted* cheap at their quality, so the
prediction errors of its points are not those of random architectures: an interval calibrated
on random held-out architectures (the learning predictor's split-conformal interval,
:mod:`hilnas.pipeline.predictors.learning`) covers a front's points less often than its level
says (``fronts_learning`` measured 66 % for 80 % intervals on the NB201 test devices). This
benchmark measures that selection effect on the TRAINING devices only and derives the factor by
which :func:`hilnas.pipeline.fronts.front_with_intervals` widens the log half-width of a front's
intervals (:data:`hilnas.pipeline.fronts.FRONT_WIDENING`).

Per space and split, for every training device left out (``lodo``: the prior retrained without
the device; ``lofo`` for NB201: without its whole family) and K in :data:`KS` further random
measurements beyond the references: the device's learning predictor (the same construction as
``predictors_learning``: zero-shot width model fit on the other devices of the split), a
*front proxy*: the first non-dominated layers of (quality, predicted cost) over every
architecture not measured, until :data:`FRONT_POINTS` are taken, and each front point's
normalised residual ``z = log(true / pred) / w`` (``w`` the interval's log half-width). The
factor is the 80 % quantile of ``|z|`` pooled over devices and K (1.0 would mean no selection
effect; below 1, front points are no harder than random ones and the library does not widen). Quality: NB201's CIFAR-10 test error; GPT-S's measured perplexity; for OFA MobileNetV3,
whose tables carry no accuracy, the negative log MACs (a bigger subnet counts as better).
Training devices: NB201's 21 configurations outside MODNAS's six test devices; the 9 OFA and
the 10 GPT-S devices of the shipped tables (these spaces have no named test devices).

Reported per space and split: front coverage of the 80 % intervals before and after widening
and the cells (device x K) within 80 +- 5 %, both in-sample (the factor fit on all devices) and
cross-validated (each device widened by the factor fit on the OTHER devices), and the coverage
of random held-out architectures for comparison.

Results: ``results/front_intervals.json`` and ``.md`` with the machine load (``uptime``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from hilnas.pipeline import refdata
from hilnas.pipeline.benchmarks import predictors_learning as PL
from hilnas.pipeline.predictors import learning as L

RESULTS = Path(__file__).with_name("results")
KS: tuple[int, ...] = (0, 20, 100)
FRONT_POINTS = 100
LEVEL = L.DEFAULT_LEVEL


def front_proxy(
    quality_err: np.ndarray, pred: np.ndarray, candidates: np.ndarray, n: int = FRONT_POINTS
) -> np.ndarray:
    """Indices of the first non-dominated layers of (``quality_err``, ``pred``), both
    minimised, among ``candidates``, layer by layer until at least ``n`` are taken."""
    taken: list[int] = []
    rest = np.asarray(candidates, dtype=np.int64)
    while len(taken) < n and len(rest):
        order = rest[np.lexsort((pred[rest], quality_err[rest]))]
        best = np.minimum.accumulate(pred[order])
        keep = np.r_[True, pred[order][1:] < best[:-1]]
        taken += [int(i) for i in order[keep]]
        rest = np.setdiff1d(rest, order[keep])
    return np.asarray(taken, dtype=np.int64)


def device_cells(
    x: np.ndarray,
    lp: np.ndarray,
    y: np.ndarray,
    quality_err: np.ndarray,
    codes: np.ndarray,
    refs: np.ndarray,
    pool: np.ndarray,
    test: np.ndarray,
    *,
    width_model: tuple[float, float],
    group_column: int | None = None,
    ks: Sequence[int] = KS,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Per K: the normalised residuals ``z`` of the front proxy's points, and the coverage of
    random held-out architectures (``test``)."""
    order = np.random.default_rng(seed).permutation(pool)
    valid = np.isfinite(y) & (y > 0)
    out: dict[str, dict[str, Any]] = {}
    for k in ks:
        rows = np.concatenate([refs, order[:k]])
        model = PL.fit_learner(
            x,
            lp,
            y,
            codes,
            refs,
            rows,
            width_model=width_model,
            group_column=group_column,
            seed=seed,
        )
        pred, lo, hi = model.interval_arrays(x, lp)
        cand = np.setdiff1d(np.flatnonzero(valid), rows)
        front = front_proxy(quality_err, pred, cand)
        w = np.maximum(np.log(hi / pred), 1e-9)
        z = np.log(y[front] / pred[front]) / w[front]
        t = test[valid[test]]
        cov_random = float(np.mean((y[t] >= lo[t]) & (y[t] <= hi[t])))
        out[str(k)] = {"z": np.abs(z), "coverage_random": cov_random, "kind": model.kind}
    return out


def _nb201(split: str) -> dict[str, dict[str, Any]]:
    d = PL.NB201()
    metas: dict[str, Any] = {}
    priors = PL._priors(d, split, d.devices, metas)
    same = None if split == "lodo" else (lambda a, b: PL.family_of(a) != PL.family_of(b))
    ys = {dev: d.y(dev) for dev in d.devices}
    wm = PL.width_models(ys, priors, d.refs, d.test, same)
    err = 100.0 - np.asarray(d.ref.accuracy_of(), np.float64)
    test6 = set(refdata.MODNAS_TEST_DEVICES)
    return {
        dev: device_cells(
            d.x,
            priors[dev],
            ys[dev],
            err,
            d.codes,
            d.refs,
            d.pool,
            d.test,
            width_model=wm["models"][dev],
            group_column=L.nb201_group_column(),
        )
        for dev in d.devices
        if dev not in test6
    }


def _space(space: str, n_test: int = 1000, train_rows_n: int = 1000) -> dict[str, dict[str, Any]]:
    """LOO over a space's shipped latency table, the prior a SpacePredictor trained without
    the device on ``train_rows_n`` rows (penalty chosen once, as ``predictors_learning``)."""
    from hilnas.pipeline.predictors import space as S
    from hilnas.pipeline.spaces import get_space

    rows = PL.space_split(space, n_test, train_rows_n)
    table, x, refs = rows["table"], rows["x"], rows["refs"]
    test, pool, train_rows = rows["test"], rows["pool"], rows["train_rows"]
    codes = table.codes
    sp = get_space(space)
    if space == "gpt_s":
        from hilnas.pipeline.spaces.gpt_s.measured import load_measured

        quality_err = np.asarray(load_measured().perplexity, np.float64)
    else:  # no accuracy in the table: a bigger subnet counts as better
        quality_err = -np.log([sp.flops(tuple(int(v) for v in c)) for c in codes])
    priors: dict[str, np.ndarray] = {}
    alpha = None
    for dev in table.devices:
        others = [o for o in table.devices if o != dev]
        m = S.fit_predictor(
            table, others, train_rows, **({} if alpha is None else {"alpha": alpha})
        )
        alpha = m.alpha
        priors[dev] = np.log(m.predict_features(x, table.reference_values(dev)))
    ys = {dev: np.asarray(table.column(dev), np.float64) for dev in table.devices}
    wm = PL.width_models(ys, priors, refs, test)
    return {
        dev: device_cells(
            x,
            priors[dev],
            ys[dev],
            quality_err,
            codes,
            refs,
            pool,
            test,
            width_model=wm["models"][dev],
        )
        for dev in table.devices
    }


def _coverage(z: np.ndarray, factor: float) -> float:
    return float(np.mean(z <= factor))


def summarise(cells: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Factor (80 % quantile of pooled |z|), in-sample and cross-validated coverage."""
    devices = list(cells)
    pooled = np.concatenate([c["z"] for dev in devices for c in cells[dev].values()])
    factor = float(np.quantile(pooled, LEVEL))
    per: dict[str, Any] = {}
    within = {"before": 0, "after": 0, "cv": 0, "random": 0}
    n_cells = 0
    for dev in devices:
        others = np.concatenate([c["z"] for o in devices if o != dev for c in cells[o].values()])
        f_cv = float(np.quantile(others, LEVEL))
        per[dev] = {"factor_cv": round(f_cv, 4)}
        for k, c in cells[dev].items():
            row = {
                "before": _coverage(c["z"], 1.0),
                "after": _coverage(c["z"], factor),
                "cv": _coverage(c["z"], f_cv),
                "random": c["coverage_random"],
                "kind": c["kind"],
            }
            for key in within:
                within[key] += abs(row[key] - LEVEL) <= 0.05
            n_cells += 1
            per[dev][k] = {q: round(v, 4) if isinstance(v, float) else v for q, v in row.items()}
    ks = list(next(iter(cells.values())))
    return {
        "factor": round(factor, 4),
        "devices": per,
        "cells": n_cells,
        "within_80_5": within,
        "mean_coverage": {
            key: round(float(np.mean([per[d][k][key] for d in devices for k in ks])), 4)
            for key in ("before", "after", "cv", "random")
        },
        "mean_coverage_by_k": {
            k: {
                key: round(float(np.mean([per[d][k][key] for d in devices])), 4)
                for key in ("before", "after", "cv", "random")
            }
            for k in ks
        },
    }


def run(quick: bool = False, progress=print) -> dict[str, Any]:
    t0 = time.time()
    load_before = PL.uptime()
    res: dict[str, Any] = {"splits": {}}
    jobs = [("nb201", "lodo"), ("nb201", "lofo")]
    if not quick:
        jobs += [("ofa_mbv3", "lodo"), ("gpt_s", "lodo")]
    for space, split in jobs:
        t1 = time.time()
        cells = _nb201(split) if space == "nb201" else _space(space)
        s = summarise(cells)
        s["seconds"] = round(time.time() - t1, 1)
        res["splits"][f"{space}/{split}"] = s
        progress(
            f"{space} {split}: factor {s['factor']}, front coverage {s['mean_coverage']['before']}"
            f" -> {s['mean_coverage']['cv']} (cross-validated), {s['seconds']} s"
        )
    nb = [res["splits"][f"nb201/{sp}"] for sp in ("lodo", "lofo")]
    # a factor below 1 (front points no harder than random ones) means no widening
    res["chosen"] = {"nb201": max(1.0, round(max(s["factor"] for s in nb), 2))}
    for space in ("ofa_mbv3", "gpt_s"):
        if f"{space}/lodo" in res["splits"]:
            res["chosen"][space] = max(1.0, round(res["splits"][f"{space}/lodo"]["factor"], 2))
    res |= {
        "benchmark": "front_intervals",
        "command": "python -m hilnas.pipeline.benchmarks.front_intervals"
        + (" --quick" if quick else ""),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_before": load_before,
        "load_after": PL.uptime(),
        "ks": list(KS),
        "front_points": FRONT_POINTS,
        "level": LEVEL,
        "wall_s": round(time.time() - t0, 1),
    }
    return res


def markdown(res: dict[str, Any]) -> str:
    lines = [
        "# Front intervals: the selection widening, measured on training devices",
        "",
        f"`{res['command']}`; {res['machine']}; {res['wall_s']} s.",
        f"Load before: {res['load_before']}; after: {res['load_after']}.",
        "",
        f"Front proxy: the first non-dominated layers of (quality, predicted latency) until "
        f"{res['front_points']} points, among architectures not measured; K = "
        f"{', '.join(map(str, res['ks']))} random measurements beyond the references; "
        f"{int(res['level'] * 100)} % intervals. Factor: the 80 % quantile of |log(true / pred)| "
        "/ w over the front points of every device and K. *cv*: each device widened by the "
        "factor fit on the other devices. *random*: coverage of random held-out architectures "
        "(no widening).",
        "",
        "| space / split | devices x K | factor | front coverage before | after (in-sample) "
        "| after (cv) | random archs | cells within 80 +- 5 %: before / after / cv / random |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in res["splits"].items():
        m, w = s["mean_coverage"], s["within_80_5"]
        lines.append(
            f"| {name} | {s['cells']} | {s['factor']:.3f} | {m['before']:.3f} | {m['after']:.3f} "
            f"| {m['cv']:.3f} | {m['random']:.3f} | {w['before']} / {w['after']} / {w['cv']} / "
            f"{w['random']} |"
        )
    lines += ["", "Mean front coverage by K (before / cv):", ""]
    for name, s in res["splits"].items():
        parts = [
            f"K={k}: {v['before']:.3f} / {v['cv']:.3f}" for k, v in s["mean_coverage_by_k"].items()
        ]
        lines.append(f"- {name}: " + "; ".join(parts))
    lines += [
        "",
        "Chosen widening per space (`hilnas.pipeline.fronts.FRONT_WIDENING`; NB201: the larger "
        "of the lodo and lofo factors; a factor below 1 gives 1, no widening): "
        + ", ".join(f"{k} {v}" for k, v in res["chosen"].items())
        + ".",
        "",
    ]
    for name, s in res["splits"].items():
        lines += [f"## {name}", "", "| device | factor (cv) | K | before | cv | random | model |"]
        lines.append("|---|---|---|---|---|---|---|")
        for dev, row in s["devices"].items():
            for k in res["ks"]:
                c = row.get(str(k))
                if c is None:
                    continue
                lines.append(
                    f"| {dev} | {row['factor_cv']:.3f} | {k} | {c['before']:.3f} | {c['cv']:.3f} "
                    f"| {c['random']:.3f} | {c['kind']} |"
                )
        lines.append("")
    return "\n".join(lines)


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="NB201 only")
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args(argv)
    res = run(quick=a.quick)
    a.out.mkdir(parents=True, exist_ok=True)
    stem = "front_intervals_quick" if a.quick else "front_intervals"
    (a.out / f"{stem}.json").write_text(json.dumps(_plain(res), indent=1) + "\n")
    md = markdown(res)
    (a.out / f"{stem}.md").write_text(md)
    print(md)


if __name__ == "__main__":  # pragma: no cover
    main()
