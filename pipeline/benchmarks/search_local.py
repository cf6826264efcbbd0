"""Hardware in the loop on this machine: does a front's MEASURED latency follow the preference?

``python -m hilnas.pipeline.benchmarks.search_local --space gpt_s|ofa_mbv3``

1. profile the local CPU: the space's reference architectures and ``--archs`` sampled ones
   (ONNX Runtime, the space's default workload; GPT-S: prefill, and decode with ``--decode``);
2. one space search whose targets are the space's reference devices and this CPU (joined from
   its measured reference latencies);
3. the CPU's front (``--points`` architectures), then each chosen architecture is MEASURED
   (never seen by the search before);
4. figures: Spearman between the preference's weight on the quality objective and the measured
   latency (it should be positive: more weight on quality, slower networks), Spearman between
   predicted and measured latency, share of the chosen architectures within +-10 % and +-25 %
   of their prediction, the quality of the chosen ones (OFA: the supernet's validation error;
   GPT-S: the perplexity oracle), wall time of every stage.

Results: ``pipeline/benchmarks/results/search_local_<space>.{json,md}``, with the load.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS_DIR = Path(__file__).with_name("results")


def _uptime() -> str:
    try:
        return " ".join(str(round(x, 2)) for x in os.getloadavg())
    except OSError:  # pragma: no cover
        return "unknown"


def run(
    space: str,
    *,
    archs: int,
    reps: int,
    warmup: int,
    points: int,
    queries: int,
    steps: int,
    decode: bool,
    db: str,
) -> dict[str, Any]:
    from hilnas.pipeline.front_check import measure_front
    from hilnas.pipeline.predictors import spearman
    from hilnas.pipeline.profiling import profile_device, workload_configs
    from hilnas.pipeline.spaces import get_space
    from hilnas.pipeline.spacesearch.search import (
        SpaceSearchConfig,
        SpaceSearchModel,
        run_space_search,
    )
    from hilnas.pipeline.spacesearch.targets import QUALITY, reference_targets
    from hilnas.pipeline.store import MeasurementStore

    sp = get_space(space)
    times: dict[str, float] = {}
    t = time.perf_counter()
    configs = workload_configs(sp, {}) if decode else [sp.default_model_config()]
    reports = [
        profile_device(
            "cpu", space=space, archs=archs, reps=reps, warmup=warmup, store=db, model_config=c
        )
        for c in configs
    ]
    key = reports[0].config_key
    times["profile_s"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    cfg = SpaceSearchConfig(
        space=space,
        targets=(*reference_targets(space, ("latency_ms",)), key),
        queries=queries,
        steps=steps,
    )
    with MeasurementStore(db) as store:
        path = run_space_search(cfg, store=store)
    times["search_s"] = round(time.perf_counter() - t, 1)
    model = SpaceSearchModel.load(path)
    pts = model.front(key, points=points)
    chosen = [p.arch for p in pts]
    t = time.perf_counter()
    # the front's architectures measured on this CPU (stored like any profiling run) through
    # the one path of `hilnas front --measure`; every measurement counts here, flagged ones too
    # (a short run of a fast subnet on a busy machine is often flagged noisy), and which ones
    # were flagged is recorded beside the figures
    checks = {
        c.key(): measure_front(
            pts, space=space, device=key, store=db, reps=reps, warmup=warmup, model_config=c
        )
        for c in configs
    }
    times["measure_front_s"] = round(time.perf_counter() - t, 1)
    q = QUALITY[space]
    quality = np.array([p.objectives[q] for p in pts])
    out: dict[str, Any] = {
        "space": space,
        "device": key,
        "search": str(path),
        "points": [
            {
                "arch": p.arch,
                "preference": p.preference,
                "predicted": p.objectives,
                "quality_source": p.quality_source,
            }
            for p in pts
        ],
        "workloads": {},
        "times": times,
        "settings": {
            "archs": archs,
            "reps": reps,
            "warmup": warmup,
            "points": points,
            "queries": queries,
            "steps": steps,
        },
    }
    if (Path(path) / "supernet").is_dir() and space == "ofa_mbv3":
        from hilnas.pipeline.spaces.ofa_mbv3.train import OFASupernetOracle

        oracle = OFASupernetOracle.load(Path(path) / "supernet")
        codes = [sp.parse(a) for a in chosen]
        out["supernet_val_error_pct"] = (100 * oracle.error(codes)).round(2).tolist()
        out["supernet_test_error_pct"] = (100 * oracle.test_error(codes)).round(2).tolist()
    for mck, check in checks.items():
        lat = np.array([np.nan if c.measured_ms is None else c.measured_ms for c in check.points])
        ok = np.isfinite(lat)
        s = check.summary
        out["workloads"][mck] = {
            "measured_latency_ms": lat.round(4).tolist(),
            "flagged": [i for i, c in enumerate(check.points) if c.flagged],
            "spearman_quality_weight_vs_measured_latency": s["spearman_quality_weight_vs_measured"],
            "spearman_predicted_vs_measured": s["spearman_predicted_vs_measured"],
            "spearman_quality_vs_measured_latency": round(float(spearman(quality[ok], lat[ok])), 3),
            "within10": s["within10"],
            "within25": s["within25"],
        }
    return out


def markdown(res: dict[str, Any]) -> str:
    lines = [
        f"# Hardware in the loop: the {res['space']} front of this CPU, measured",
        "",
        f"`python -m hilnas.pipeline.benchmarks.search_local --space {res['space']}"
        f"{' --decode' if len(res['workloads']) > 1 else ''}`; "
        f"load {res['load_before']} before, {res['load_after']} after; settings "
        f"{json.dumps(res['settings'])}; wall times {json.dumps(res['times'])}.",
        "",
        "Predicted latency is the space predictor's, zero-shot from the CPU's measured reference "
        "latencies (the search never saw the chosen architectures measured).",
        "",
        "| workload | Spearman(weight on quality, measured latency) | Spearman(predicted, "
        "measured) | Spearman(predicted quality, measured latency) | within 10 % | within 25 % |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for mck, w in res["workloads"].items():
        lines.append(
            f"| {mck} | {w['spearman_quality_weight_vs_measured_latency']} | "
            f"{w['spearman_predicted_vs_measured']} | {w['spearman_quality_vs_measured_latency']}"
            f" | {w['within10']} | {w['within25']} |"
        )
    lines += [
        "",
        "Measurements the quality check flagged (noisy or interfered: a short run of a fast "
        "subnet on a busy machine) are kept in these figures and marked.",
        "",
        "| # | preference | predicted | measured latency (ms) per workload |",
        "|---|---|---|---|",
    ]
    for i, p in enumerate(res["points"]):
        lat = ", ".join(
            f"{w['measured_latency_ms'][i]:.2f}" + (" (flagged)" if i in w["flagged"] else "")
            for w in res["workloads"].values()
        )
        pref = "-" if not p["preference"] else ",".join(f"{v:.2f}" for v in p["preference"])
        pv = ", ".join(f"{k} {v:.3g}" for k, v in p["predicted"].items())
        lines.append(f"| {i} | {pref} | {pv} | {lat} |")
    if "supernet_val_error_pct" in res:
        lines += [
            "",
            f"Supernet validation error of the chosen (%): {res['supernet_val_error_pct']}",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", choices=("gpt_s", "ofa_mbv3"), default="gpt_s")
    ap.add_argument("--archs", type=int, default=10)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--points", type=int, default=8)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--decode", action="store_true", help="gpt_s: also the decode workload")
    ap.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    before = _uptime()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("HILNAS_HOME", tmp)
        db = f"sqlite:///{Path(os.environ['HILNAS_HOME']) / 'hilnas.db'}"
        res = run(
            args.space,
            archs=args.archs,
            reps=args.reps,
            warmup=args.warmup,
            points=args.points,
            queries=args.queries,
            steps=args.steps,
            decode=args.decode,
            db=db,
        )
    res["load_before"], res["load_after"] = before, _uptime()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"search_local_{args.space}"
    (args.out_dir / f"{stem}.json").write_text(json.dumps(res, indent=1) + "\n")
    (args.out_dir / f"{stem}.md").write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
