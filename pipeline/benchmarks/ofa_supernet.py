"""Benchmark of the OFA MobileNetV3 supernet error oracle on the shipped MNIST sample.

``python -m hilnas.pipeline.benchmarks.ofa_supernet [--standalone N] [--epochs E]
[--sampling sandwich|fair] [--out DIR]``

1. trains :func:`~hilnas.pipeline.spaces.ofa_mbv3.train.train_ofa_supernet` with the DEFAULT
   settings (reduced width and resolution, see that module) on one CPU thread, and records
   the wall time and the machine's load average before and after;
2. evaluates the validation and test error of the largest subnet, the smallest and 20 random
   ones (``space.sample(20, seed=1)``);
3. reports the spread of those errors and their Spearman rank correlation with the MACs of
   the full network (``space.flops``: width 1.2 at the architecture's own resolution; a
   negative value means more MACs, lower error);
4. trains ``N`` (default 5) of those architectures alone with the same settings (no weight
   sharing; :func:`~hilnas.pipeline.spaces.ofa_mbv3.train.train_standalone`) and reports the
   Spearman correlation between their supernet error and their standalone error.

Results: ``pipeline/benchmarks/results/ofa_supernet.{json,md}`` (or ``--out DIR``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

RESULTS_DIR = Path(__file__).with_name("results")


def _spearman(a, b) -> float | None:
    from hilnas.pipeline.benchmarks.profiling import spearman

    rho = spearman(list(a), list(b))
    return None if math.isnan(rho) else float(rho)


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def run(
    standalone: int = 5,
    epochs: int | None = None,
    sampling: str | None = None,
    progress=print,
) -> dict[str, Any]:
    import torch
    from hilnas.pipeline.spaces.ofa_mbv3.space import OFAMobileNetV3
    from hilnas.pipeline.spaces.ofa_mbv3.train import (
        OFATrainSettings,
        largest_code,
        smallest_code,
        train_ofa_supernet,
        train_standalone,
    )

    torch.set_num_threads(1)
    space = OFAMobileNetV3()
    settings = OFATrainSettings()
    if epochs is not None:
        settings = replace(settings, epochs=epochs)
    if sampling is not None:
        settings = replace(settings, sampling=sampling)
    load_before = _load()
    start = time.perf_counter()
    oracle = train_ofa_supernet(
        settings, progress=lambda e, loss: progress(f"epoch {e}: loss {loss:.3f}")
    )
    train_s = time.perf_counter() - start
    names = ["largest", "smallest"] + [f"random_{i}" for i in range(20)]
    codes = [largest_code(space), smallest_code(space), *space.sample(20, seed=1)]
    t0 = time.perf_counter()
    val = oracle.error(codes)
    test = oracle.test_error(codes)
    eval_s = time.perf_counter() - t0
    macs = np.array([space.flops(c) for c in codes])
    rows = [
        {
            "name": n,
            "arch": space.format(c),
            "macs_m": round(float(m), 2),
            "val_error": float(v),
            "test_error": float(t),
        }
        for n, c, m, v, t in zip(names, codes, macs, val, test, strict=True)
    ]
    rnd = val[2:]
    result: dict[str, Any] = {
        "command": "python -m hilnas.pipeline.benchmarks.ofa_supernet",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} ({os.cpu_count()} cores), torch threads 1",
        "load_before": load_before,
        "settings": settings.to_json(),
        "oracle": oracle.describe(),
        "train_s": round(train_s, 1),
        "eval_s_44_errors": round(eval_s, 1),
        "archs": rows,
        "summary": {
            "largest_val_error": float(val[0]),
            "smallest_val_error": float(val[1]),
            "random_val_error_mean": float(rnd.mean()),
            "random_val_error_std": float(rnd.std()),
            "random_val_error_min": float(rnd.min()),
            "random_val_error_max": float(rnd.max()),
            "spearman_val_error_vs_macs_all22": _spearman(val, macs),
            "spearman_val_error_vs_macs_random20": _spearman(rnd, macs[2:]),
            "spearman_val_vs_test_error_all22": _spearman(val, test),
        },
    }
    if standalone:
        # spread over capacity: the largest, the smallest and random ones of low to high MACs
        order = 2 + np.argsort(macs[2:])
        picks = [0, 1] + [
            int(order[i]) for i in np.linspace(0, 19, max(0, standalone - 2)).round().astype(int)
        ]
        picks = list(dict.fromkeys(picks))[:standalone]
        t0 = time.perf_counter()
        alone = []
        for i in picks:
            r = train_standalone(codes[i], settings, data=oracle.data)
            progress(f"standalone {names[i]}: val {r['val_error']:.3f}")
            alone.append({"name": names[i], "supernet_val_error": float(val[i]), **r})
        result["standalone"] = {
            "archs": alone,
            "wall_s": round(time.perf_counter() - t0, 1),
            "spearman_supernet_val_vs_standalone_val": _spearman(
                [a["supernet_val_error"] for a in alone], [a["val_error"] for a in alone]
            ),
            "spearman_supernet_val_vs_standalone_test": _spearman(
                [a["supernet_val_error"] for a in alone], [a["test_error"] for a in alone]
            ),
            "spearman_standalone_val_vs_macs": _spearman(
                [a["val_error"] for a in alone], [macs[names.index(a["name"])] for a in alone]
            ),
        }
    result["load_after"] = _load()
    result["total_s"] = round(time.perf_counter() - start, 1)
    return result


def observations(r: dict[str, Any]) -> dict[str, Any]:
    """Derived from ``r["archs"]``: how many random subnets the smallest beats (the sandwich
    rule trains the largest and the smallest every step) and how much of the MACs correlation
    is the resolution decision's."""
    rows = r["archs"]
    rnd = [a for a in rows if a["name"].startswith("random_")]
    small = next(a for a in rows if a["name"] == "smallest")
    res = [int(a["arch"].split("|")[0][1:]) for a in rnd]
    return {
        "random_worse_than_smallest": sum(a["val_error"] > small["val_error"] for a in rnd),
        "random_count": len(rnd),
        "spearman_val_error_vs_resolution_random": _spearman([a["val_error"] for a in rnd], res),
        "spearman_macs_vs_resolution_random": _spearman([a["macs_m"] for a in rnd], res),
    }


def _sampling(s: dict[str, Any]) -> str:
    if s["sampling"] == "fair":
        return "strict-fairness sampling (3 subnets per step, every option once)"
    return (
        f"sandwich sampling (largest + smallest + {s['random_subnets']} random per step, "
        f"distill {s['distill']})"
    )


def _fmt(v: float | None) -> str:
    return "undefined" if v is None else f"{v:+.3f}"


def to_markdown(r: dict[str, Any]) -> str:
    s, o, sm = r["settings"], r["oracle"], r["summary"]
    lines = [
        "# OFA MobileNetV3 supernet on MNIST (5,000-image sample): the error oracle",
        "",
        f"`{r['command']}` on {r['machine']}, {r['date']}; load average {r['load_before']} "
        f"before, {r['load_after']} after (1/5/15 min; the machine is shared).",
        "",
        f"Default settings: width {s['width_mult']} (the space's network: "
        f"{o['full_width_mult']}), input {o['input_sizes'][0]}..{o['input_sizes'][1]} px "
        f"(resolution 128..224 scaled to {s['resolution']} px at 224), {s['epochs']} epochs, "
        f"batch {s['batch_size']}, {s['optimizer']} lr {s['lr']}, {_sampling(s)}, "
        f"{o['dataset']['train']} train / {o['dataset']['val']} val / "
        f"{o['dataset']['test']} test images. REDUCED width and resolution: the errors rank "
        "architectures on MNIST, they are not ImageNet accuracies.",
        "",
        f"Training: {r['train_s']} s; 44 errors (22 architectures x val/test): "
        f"{r['eval_s_44_errors']} s; whole benchmark {r['total_s']} s.",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| largest subnet val error | {sm['largest_val_error']:.3f} |",
        f"| smallest subnet val error | {sm['smallest_val_error']:.3f} |",
        f"| 20 random: mean (std) val error | {sm['random_val_error_mean']:.3f} "
        f"({sm['random_val_error_std']:.3f}) |",
        f"| 20 random: min..max val error | {sm['random_val_error_min']:.3f}.."
        f"{sm['random_val_error_max']:.3f} |",
        f"| Spearman(val error, MACs), 22 archs | {_fmt(sm['spearman_val_error_vs_macs_all22'])} |",
        f"| Spearman(val error, MACs), 20 random | "
        f"{_fmt(sm['spearman_val_error_vs_macs_random20'])} |",
        f"| Spearman(val error, test error), 22 archs | "
        f"{_fmt(sm['spearman_val_vs_test_error_all22'])} |",
    ]
    if "standalone" in r:
        st = r["standalone"]
        lines += [
            f"| Spearman(supernet val, standalone val), {len(st['archs'])} archs | "
            f"{_fmt(st['spearman_supernet_val_vs_standalone_val'])} |",
            f"| Spearman(supernet val, standalone test), {len(st['archs'])} archs | "
            f"{_fmt(st['spearman_supernet_val_vs_standalone_test'])} |",
            f"| Spearman(standalone val, MACs), {len(st['archs'])} archs | "
            f"{_fmt(st['spearman_standalone_val_vs_macs'])} |",
        ]
    ob = observations(r)
    lines += [
        "",
        "Negative Spearman with MACs = more MACs, lower error (capacity helps).",
        "",
        f"Observations: the smallest subnet's supernet error is below that of "
        f"{ob['random_worse_than_smallest']} of the {ob['random_count']} random subnets "
        f"({s['sampling']} sampling; the sandwich rule would train the largest and the "
        f"smallest every step, a random subnet rarely, and bias their errors down). Among "
        f"the random subnets Spearman(val error, "
        f"resolution) = {_fmt(ob['spearman_val_error_vs_resolution_random'])} and "
        f"Spearman(MACs, resolution) = {_fmt(ob['spearman_macs_vs_resolution_random'])}: "
        "much of the MACs correlation is the resolution decision's.",
        "",
        "| architecture | MACs (M, full net) | val error | test error |",
        "|---|---:|---:|---:|",
    ]
    for a in r["archs"]:
        lines.append(
            f"| {a['name']}: `{a['arch'].replace('|', chr(92) + '|')}` | {a['macs_m']:.1f} | {a['val_error']:.3f} | "
            f"{a['test_error']:.3f} |"
        )
    if "standalone" in r:
        st = r["standalone"]
        lines += [
            "",
            f"Standalone (each trained alone with the same settings, {st['wall_s']} s in all):",
            "",
            "| architecture | supernet val error | standalone val error | standalone test error |",
            "|---|---:|---:|---:|",
        ]
        for a in st["archs"]:
            lines.append(
                f"| {a['name']} | {a['supernet_val_error']:.3f} | {a['val_error']:.3f} | "
                f"{a['test_error']:.3f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--standalone", type=int, default=5, help="archs trained alone (0: none)")
    ap.add_argument("--epochs", type=int, default=None, help="override the default epochs")
    ap.add_argument("--sampling", choices=("sandwich", "fair"), default=None)
    ap.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = ap.parse_args(argv)
    r = run(standalone=args.standalone, epochs=args.epochs, sampling=args.sampling)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ofa_supernet.json").write_text(json.dumps(r, indent=2) + "\n")
    (args.out / "ofa_supernet.md").write_text(to_markdown(r))
    print(to_markdown(r))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
