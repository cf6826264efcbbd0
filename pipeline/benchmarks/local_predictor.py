"""The local CPU's own per-device model for a space beyond NB201, on real measurements.

``python -m hilnas.pipeline.benchmarks.local_predictor [--space ofa_mbv3] [--train 100]
[--test 50]``

1. profile this machine's CPU (ONNX Runtime, the space's default workload, the project's
   profiler and store) on the space's reference architectures, ``--train`` + ``--test`` sampled
   architectures (uniform, seeded), and the test architectures a second time (``force``): the
   second pass is the measurement's own repeatability, the ceiling of any predictor;
2. for K = 0, 10, 20, 50, ... ``--train`` measured architectures beyond the references: the
   per-device learning predictor (:func:`hilnas.pipeline.predictors.learning.learning_predictor`:
   the space's cross-device predictor as the prior, conditioned on this CPU's reference values,
   plus a residual model chosen by cross-validation; what ``hilnas predict --space`` uses), and
   for context a MACs proxy (a line in log MACs fit on the same K + reference measurements);
3. on the test architectures: Spearman, the share within +-10 % and +-25 % of the measured
   latency, and the coverage of the 80 % interval.

Results: ``pipeline/benchmarks/results/local_predictor_<space>.{json,md}`` with the load before
and after (the figures move with it: this is a shared 2-core machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

RESULTS_DIR = Path(__file__).with_name("results")
KS = (0, 10, 20, 50, 100, 200)


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        return []


def _scores(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    from hilnas.pipeline.predictors import spearman

    ratio = pred / true
    return {
        "spearman": float(spearman(pred, true)),
        "within10": float(np.mean(np.abs(ratio - 1) <= 0.10)),
        "within25": float(np.mean(np.abs(ratio - 1) <= 0.25)),
        "median_abs_rel_err": float(np.median(np.abs(ratio - 1))),
    }


def _measured(report: Any) -> dict[str, float]:
    return {
        r.arch: float(r.latency_ms_median)
        for r in report.rows
        if r.latency_ms_median is not None and r.latency_ms_median > 0
    }


def run(
    space: str = "ofa_mbv3",
    *,
    train: int = 100,
    test: int = 50,
    reps: int | None = None,
    warmup: int | None = None,
    seed: int = 0,
    db: str | None = None,
    log: Any = print,
) -> dict[str, Any]:
    """Profile, fit at every K, score on the test architectures; returns the JSON-able result."""
    from hilnas.pipeline.predictors.learning import learning_predictor
    from hilnas.pipeline.predictors.space import default_predictor
    from hilnas.pipeline.profiling import profile_device
    from hilnas.pipeline.spaces import get_space
    from hilnas.pipeline.store import MeasurementStore

    sp = get_space(space)
    load_before = _load()
    t0 = time.perf_counter()
    tmp = None
    if db is None:
        tmp = tempfile.TemporaryDirectory(prefix="hilnas-local-predictor-")
        db = f"sqlite:///{tmp.name}/bench.db"
    store = MeasurementStore(db)
    try:
        sampled = [
            tuple(c)
            for c in sp.sample(train + test, seed=seed, exclude=sp.reference_architectures())
        ]
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(sampled))
        train_codes = [sampled[i] for i in order[:train]]
        test_codes = [sampled[i] for i in order[train:]]
        log(
            f"profiling {len(sampled)} sampled + {len(sp.reference_architectures())} reference {space} subnets on the local CPU"
        )
        t = time.perf_counter()
        first = profile_device(
            "cpu", archs=0, space=space, reps=reps, warmup=warmup, store=store,
            include=[*train_codes, *test_codes], strategy="random",
        )  # fmt: skip
        profile_s = time.perf_counter() - t
        log(f"repeat pass over the {len(test_codes)} test subnets")
        t = time.perf_counter()
        second = profile_device(
            "cpu", archs=0, space=space, reps=reps, warmup=warmup, store=store,
            include=test_codes, references=False, force=True, strategy="random",
        )  # fmt: skip
        repeat_s = time.perf_counter() - t
    finally:
        store.close()
        if tmp is not None:
            tmp.cleanup()
    m1, m2 = _measured(first), _measured(second)
    refs = [tuple(r) for r in sp.reference_architectures()]
    ref_vals = np.array([m1[sp.format(r)] for r in refs])
    tr = [c for c in train_codes if sp.format(c) in m1]
    te = [c for c in test_codes if sp.format(c) in m1 and sp.format(c) in m2]
    y_tr = np.array([m1[sp.format(c)] for c in tr])
    y_te = np.array([m1[sp.format(c)] for c in te])
    y_te2 = np.array([m2[sp.format(c)] for c in te])
    log(f"measured: {len(tr)} train, {len(te)} test (both passes); fitting")

    t = time.perf_counter()
    prior = default_predictor(space, "latency_ms")
    prior_s = time.perf_counter() - t
    macs_all = sp.cost_features_batch([*refs, *tr, *te])[:, 0]
    macs_ref = macs_all[: len(refs)]
    macs_tr = macs_all[len(refs) : len(refs) + len(tr)]
    macs_te = macs_all[len(refs) + len(tr) :]
    curve: dict[str, Any] = {}
    for k in [k for k in KS if k <= len(tr)] + ([len(tr)] if len(tr) not in KS else []):
        lp = learning_predictor(space, ref_vals, meta=prior, metric="latency_ms", seed=seed)
        lp.fit(np.asarray(tr[:k], dtype=np.int64).reshape(-1, len(refs[0])), y_tr[:k])
        pred, lo, hi = lp.predict_interval(np.asarray(te, dtype=np.int64), 0.8)
        x = np.log(np.concatenate([macs_ref, macs_tr[:k]]))
        y = np.log(np.concatenate([ref_vals, y_tr[:k]]))
        slope, icept = np.polyfit(x, y, 1)
        macs_pred = np.exp(icept + slope * np.log(macs_te))
        curve[str(k)] = {
            "learning": {
                **_scores(pred, y_te),
                "coverage80": float(np.mean((lo <= y_te) & (y_te <= hi))),
                "model": str(lp.kind),
            },
            "macs_proxy": _scores(macs_pred, y_te),
        }
        c = curve[str(k)]["learning"]
        log(f"K={k}: Spearman {c['spearman']:.3f}, within10 {c['within10']:.2f} ({lp.kind})")
    return {
        "space": space,
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m hilnas.pipeline.benchmarks.local_predictor "
        f"--space {space} --train {train} --test {test}",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "load_before": load_before,
        "load_after": _load(),
        "settings": {
            "reps": first.repetitions,
            "warmup": first.warmup,
            "threads": first.threads,
            "seed": seed,
            "model_config": first.model_config_key,
        },
        "counts": {"references": len(refs), "train": len(tr), "test": len(te)},
        "repeatability": _scores(y_te2, y_te),
        "curve": curve,
        "wall_s": {
            "profile": profile_s,
            "repeat_pass": repeat_s,
            "prior_fit": prior_s,
            "total": time.perf_counter() - t0,
        },
    }


def markdown(res: dict[str, Any]) -> str:
    rep = res["repeatability"]
    lines = [
        f"# Local CPU per-device latency model: {res['space']}",
        "",
        f"Generated {res['generated']} by `{res['command']}` on {res['machine']}. Load (1, 5, "
        f"15 min) before {res['load_before']}, after {res['load_after']}. Settings: "
        f"{res['settings']}. {res['counts']['train']} training and {res['counts']['test']} "
        "test subnets (uniform sample), plus the space's reference architectures.",
        "",
        "Repeatability (the test subnets measured twice, the second pass scored against the "
        f"first, i.e. the ceiling of any predictor): Spearman {rep['spearman']:.3f}, within "
        f"+-10 % {100 * rep['within10']:.0f} %, median relative difference "
        f"{100 * rep['median_abs_rel_err']:.1f} %.",
        "",
        "| K measured beyond the references | Spearman | within +-10 % | within +-25 % | "
        "80 % interval coverage | residual model | MACs proxy Spearman / within +-10 % |",
        "|---:|---:|---:|---:|---:|---|---:|",
    ]
    for k, c in res["curve"].items():
        lr, mp = c["learning"], c["macs_proxy"]
        lines.append(
            f"| {k} | {lr['spearman']:.3f} | {100 * lr['within10']:.0f} % | "
            f"{100 * lr['within25']:.0f} % | {100 * lr['coverage80']:.0f} % | {lr['model']} | "
            f"{mp['spearman']:.3f} / {100 * mp['within10']:.0f} % |"
        )
    w = res["wall_s"]
    lines += [
        "",
        f"Wall time (s): profiling {w['profile']:.0f}, repeat pass {w['repeat_pass']:.0f}, "
        f"prior fit {w['prior_fit']:.0f}, total {w['total']:.0f}.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--space", default="ofa_mbv3")
    ap.add_argument("--train", type=int, default=100)
    ap.add_argument("--test", type=int, default=50)
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--db", default=None, help="store URL to reuse (default: a temporary one)")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR)
    a = ap.parse_args(argv)
    res = run(
        a.space, train=a.train, test=a.test, reps=a.reps, warmup=a.warmup, seed=a.seed, db=a.db
    )
    a.out.mkdir(parents=True, exist_ok=True)
    stem = a.out / f"local_predictor_{a.space}"
    stem.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    text = markdown(res)
    stem.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
