"""Search-quality benchmark on NB201: one MetaHypernetwork search vs per-device baselines.

``python -m hilnas.pipeline.benchmarks.search [--quick]``

CIFAR-10 error vs latency on all 27 device configurations of the reference data. For every
device: HV(found) / HV(exact Pareto front) and IGD to the exact front, with each objective
normalised over the whole space (architectures with error >= 90 % dropped) and reference point
(1, 1), as in ``docs/method.md``. Found architectures are always scored with their TRUE table
values, whatever a method predicted for them.

Methods, side by side:
- ``mhn``: the MetaHypernetwork, surrogate mode, ONE search run per seed trained on the 13
  MODNAS training devices; its front for each of the 27 devices comes from that same run (a
  zero-shot device contributes only its 10 reference latencies, through its embedding).
- ``random@B`` and ``nsga2@B``: per-device random search and NSGA-II (pymoo) with B distinct
  true evaluations per device, B in {100, the surrogate's accuracy-query budget, 1000}.
- ``linear-oracle``: the best front a linear scalarisation of the TRUE objectives can reach
  (context: an upper bound for weighted-sum methods, not a search).
Means over the training devices, the 6 MODNAS zero-shot test devices, the 8 other unseen
configurations, and all 27. Also three objectives (error, latency, energy) on eyeriss and fpga.
Three seeds (``--quick``: one). Results: ``pipeline/benchmarks/results/search.{json,md}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from hilnas.pipeline import baselines, fronts
from hilnas.pipeline.home import temporary_home
from hilnas.pipeline.refdata import MODNAS_TEST_DEVICES, MODNAS_TRAIN_DEVICES, load_nb201

log = logging.getLogger(__name__)

RESULTS_DIR = Path(__file__).with_name("results")
OBJ2: tuple[str, ...] = ("error", "latency_ms")
OBJ3: tuple[str, ...] = ("error", "latency_ms", "energy_mj")
ENERGY_DEVICES: tuple[str, ...] = ("eyeriss", "fpga")
DEFAULT_SURROGATE_BUDGET = 200


def device_groups(
    train_targets: Sequence[str] = MODNAS_TRAIN_DEVICES,
) -> dict[str, tuple[str, ...]]:
    """train (searched on), zero-shot (the MODNAS test devices not trained on), other unseen
    (the remaining configurations), all."""
    devices = load_nb201().latency_devices
    return {
        "train": tuple(d for d in devices if d in train_targets),
        "zero-shot": tuple(d for d in MODNAS_TEST_DEVICES if d not in train_targets),
        "other unseen": tuple(
            d for d in devices if d not in tuple(train_targets) + MODNAS_TEST_DEVICES
        ),
        "all": tuple(devices),
    }


def group_of(device: str, train_targets: Sequence[str] = MODNAS_TRAIN_DEVICES) -> str:
    for group, devs in device_groups(train_targets).items():
        if device in devs:
            return group
    return "all"


def _finite_mean(values: Sequence[float]) -> float:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else float("nan")


# ----------------------------------------------------------------------------- baselines
def run_baselines(
    devices: Sequence[str],
    objectives: tuple[str, ...],
    budgets: Sequence[int],
    seeds: Sequence[int],
    methods: Sequence[str] = ("random", "nsga2"),
) -> list[dict[str, Any]]:
    """One record per (method, budget, device, seed)."""
    runs = []
    for method in methods:
        for budget in budgets:
            for device in devices:
                for seed in seeds:
                    r = baselines.run_baseline(
                        method, device, budget=budget, seed=seed, objectives=objectives
                    )
                    runs.append(
                        {
                            "method": f"{method}@{budget}",
                            "device": device,
                            "seed": seed,
                            "hv_ratio": r.hv_ratio,
                            "igd": r.igd,
                            "evaluations": r.evaluations,
                            "front_size": int(r.front.size),
                            "wall_s": r.wall_s,
                        }
                    )
    return runs


def linear_oracle(devices: Sequence[str], objectives: tuple[str, ...]) -> list[dict[str, Any]]:
    runs = []
    for device in devices:
        idx = fronts.linear_scalarisation_front(device, objectives)
        p = fronts.nb201_problem(device, objectives)
        runs.append(
            {
                "method": "linear-oracle",
                "device": device,
                "seed": None,
                "hv_ratio": p.hv_ratio(idx),
                "igd": p.igd(idx),
                "front_size": int(idx.size),
            }
        )
    return runs


# ----------------------------------------------------------------------------- MetaHypernetwork
def _arch_indices(archs: Sequence[str]) -> np.ndarray:
    from hilnas.pipeline.spaces.nb201 import NB201

    space = NB201()
    return np.array([space.index(space.parse(a)) for a in archs], dtype=np.int64)


def _point_arch(point: Any) -> str:
    for key in ("arch", "architecture", "arch_str"):
        if isinstance(point, dict) and key in point:
            return str(point[key])
        if hasattr(point, key):
            return str(getattr(point, key))
    raise TypeError(f"cannot find the architecture string of a front point {point!r}")


def run_metahypernetwork(
    seeds: Sequence[int],
    objectives: tuple[str, ...],
    devices: Sequence[str],
    *,
    points: int,
    train_targets: Sequence[str] = MODNAS_TRAIN_DEVICES,
    config_overrides: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One surrogate-mode search per seed; fronts for every device from that run.

    Returns (per-device records, per-seed search records with wall time and settings).
    Raises ImportError when the search module is not there.
    """
    from hilnas.pipeline import search as search_mod

    runs, searches = [], []
    for seed in seeds:
        kwargs: dict[str, Any] = {
            "mode": "surrogate",
            "objectives": tuple(objectives),
            "train_targets": tuple(train_targets),
            "seed": int(seed),
        }
        kwargs.update(config_overrides or {})
        cfg = search_mod.SearchConfig(**kwargs)

        def report(ev: Any, seed: int = seed) -> None:
            if progress:
                progress(f"  search seed {seed}: {ev.stage} {ev.done}/{ev.total} {ev.message}")

        t0 = time.perf_counter()
        path = search_mod.run_search(cfg, progress=report)
        wall = time.perf_counter() - t0
        trained = search_mod.TrainedSearch.load(path)
        budget = None
        for attr in ("accuracy_queries", "surrogate_budget", "budget", "queries"):
            if hasattr(cfg, attr):
                budget = getattr(cfg, attr)
                break
        searches.append(
            {
                "seed": int(seed),
                "objectives": list(objectives),
                "wall_s": wall,
                "path": str(path),
                "accuracy_queries": budget,
                "config": fronts._plain(_dataclass_dict(cfg) or getattr(cfg, "__dict__", {})),
            }
        )
        if progress:
            progress(f"search seed {seed} ({'+'.join(objectives)}): {wall:.1f} s")
        for device in devices:
            t1 = time.perf_counter()
            pts = trained.front(device, points=points)
            idx = _arch_indices([_point_arch(pt) for pt in pts])
            p = fronts.nb201_problem(device, objectives)
            runs.append(
                {
                    "method": "mhn",
                    "device": device,
                    "seed": int(seed),
                    "hv_ratio": p.hv_ratio(idx),
                    "igd": p.igd(idx),
                    "distinct_archs": int(np.unique(idx).size),
                    "front_size": int(p.front_of(idx).size),
                    "wall_s": time.perf_counter() - t1,
                }
            )
    return runs, searches


def _dataclass_dict(obj: Any) -> dict[str, Any]:
    import dataclasses

    if dataclasses.is_dataclass(obj):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    return {}


# ----------------------------------------------------------------------------- summaries
def per_device_table(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """method -> device -> {hv_ratio, hv_std, igd, n} (means over seeds)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for r in runs:
        out.setdefault(r["method"], {}).setdefault(r["device"], {"hv": [], "igd": []})
        out[r["method"]][r["device"]]["hv"].append(r["hv_ratio"])
        out[r["method"]][r["device"]]["igd"].append(r["igd"])
    table: dict[str, dict[str, dict[str, float]]] = {}
    for method, by_dev in out.items():
        table[method] = {}
        for device, v in by_dev.items():
            table[method][device] = {
                "hv_ratio": _finite_mean(v["hv"]),
                "hv_ratio_std": float(np.std(v["hv"])) if len(v["hv"]) > 1 else 0.0,
                "igd": _finite_mean(v["igd"]),
                "n": len(v["hv"]),
            }
    return table


def group_means(
    table: dict[str, dict[str, dict[str, float]]], groups: dict[str, Sequence[str]]
) -> dict[str, dict[str, dict[str, float]]]:
    """method -> group -> {hv_ratio, igd} (means over the group's devices)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for method, by_dev in table.items():
        out[method] = {}
        for group, devs in groups.items():
            present = [d for d in devs if d in by_dev]
            if not present:
                continue
            out[method][group] = {
                "hv_ratio": _finite_mean([by_dev[d]["hv_ratio"] for d in present]),
                "igd": _finite_mean([by_dev[d]["igd"] for d in present]),
                "devices": len(present),
            }
    return out


def _method_order(methods: Sequence[str]) -> list[str]:
    def key(m: str) -> tuple[int, int, str]:
        if m == "mhn":
            return (0, 0, m)
        if m == "linear-oracle":
            return (9, 0, m)
        name, _, b = m.partition("@")
        return ({"random": 1, "nsga2": 2}.get(name, 5), int(b) if b.isdigit() else 0, m)

    return sorted(methods, key=key)


def _fmt(v: float, digits: int = 4) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def render_markdown(result: dict[str, Any]) -> str:
    lines: list[str] = []
    s = result["settings"]
    lines.append("# Search benchmark: NB201, CIFAR-10 error vs hardware cost")
    lines.append("")
    lines.append(
        f"Command: `{s['command']}` · {s['created']} · host: {s['host']} ({s['cpus']} CPUs) · "
        f"seeds: {s['seeds']} · total wall time {s['wall_s']:.0f} s"
    )
    lines.append("")
    lines.append(
        "HV ratio = HV(found) / HV(exact Pareto front), IGD to the exact front; objectives "
        "normalised to [0, 1] over the whole space after dropping architectures with error >= "
        "90 %, reference point (1, ..., 1). Found architectures are scored with their true table "
        "values. Means over seeds per device, then over devices. `mhn` = MetaHypernetwork, one "
        "surrogate-mode search per seed trained on the 13 MODNAS training devices, fronts for all "
        f"devices from that run ({s['points']} preference points). `random@B` / `nsga2@B` = "
        "per-device search with B distinct true evaluations on each device. `linear-oracle` = "
        "best front a linear scalarisation of the true objectives reaches (context, not a search)."
    )
    lines.append("")
    for block in result["experiments"]:
        objs = block["objectives"]
        lines.append(f"## {' vs '.join(objs)} ({len(block['devices'])} devices)")
        lines.append("")
        if block.get("searches"):
            walls = [x["wall_s"] for x in block["searches"]]
            q = block["searches"][0].get("accuracy_queries")
            lines.append(
                f"MetaHypernetwork search wall time: {', '.join(f'{w:.1f} s' for w in walls)} "
                f"(mean {np.mean(walls):.1f} s; accuracy queries per run: {q})."
            )
            lines.append("")
        elif block.get("search_note"):
            lines.append(f"MetaHypernetwork: {block['search_note']}")
            lines.append("")
        if block.get("note"):
            lines.append(block["note"])
            lines.append("")
        methods = _method_order(list(block["per_device"]))
        gm = block["group_means"]
        groups = [
            g
            for g in ("train", "zero-shot", "other unseen", "all")
            if any(g in gm[m] for m in methods)
        ]
        lines.append("Mean HV ratio (IGD) by device group:")
        lines.append("")
        lines.append(
            "| method | "
            + " | ".join(f"{g} ({gm[methods[0]].get(g, {}).get('devices', '')})" for g in groups)
            + " |"
        )
        lines.append("|---|" + "---|" * len(groups))
        for m in methods:
            cells = []
            for g in groups:
                v = gm[m].get(g)
                cells.append("" if v is None else f"{_fmt(v['hv_ratio'])} ({_fmt(v['igd'])})")
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")
        for metric, title in (("hv_ratio", "HV ratio"), ("igd", "IGD")):
            lines.append(f"Per device, {title}:")
            lines.append("")
            lines.append("| device | group | " + " | ".join(methods) + " |")
            lines.append("|---|---|" + "---|" * len(methods))
            for d in block["devices"]:
                cells = [
                    _fmt(block["per_device"][m].get(d, {}).get(metric, float("nan")))
                    for m in methods
                ]
                g = group_of(d, block.get("train_targets", MODNAS_TRAIN_DEVICES))
                lines.append(f"| {d} | {g} | " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- main
def run_experiment(
    *,
    objectives: tuple[str, ...],
    devices: Sequence[str],
    budgets: Sequence[int],
    seeds: Sequence[int],
    search: bool,
    points: int,
    config_overrides: dict[str, Any] | None,
    progress: Callable[[str], None],
    train_targets: Sequence[str] = MODNAS_TRAIN_DEVICES,
) -> dict[str, Any]:
    t0 = time.perf_counter()
    runs: list[dict[str, Any]] = []
    searches: list[dict[str, Any]] = []
    note = None
    if search:
        try:
            mhn_runs, searches = run_metahypernetwork(
                seeds,
                objectives,
                devices,
                points=points,
                train_targets=train_targets,
                config_overrides=config_overrides,
                progress=progress,
            )
            runs += mhn_runs
        except ImportError as exc:
            note = f"not run (search module unavailable: {exc})"
            progress(f"MetaHypernetwork skipped: {exc}")
    else:
        note = "not run (--no-search)"
    progress(f"baselines {'+'.join(objectives)}: {len(devices)} devices, budgets {list(budgets)}")
    runs += run_baselines(devices, objectives, budgets, seeds)
    runs += linear_oracle(devices, objectives)
    groups = {
        g: [d for d in devs if d in devices] for g, devs in device_groups(train_targets).items()
    }
    groups = {g: devs for g, devs in groups.items() if devs}
    table = per_device_table(runs)
    return {
        "objectives": list(objectives),
        "devices": list(devices),
        "train_targets": list(train_targets),
        "budgets": list(budgets),
        "searches": searches,
        "search_note": note,
        "per_device": table,
        "group_means": group_means(table, groups),
        "runs": runs,
        "wall_s": time.perf_counter() - t0,
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m hilnas.pipeline.benchmarks.search", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--quick", action="store_true", help="one seed instead of three")
    ap.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3)")
    ap.add_argument("--points", type=int, default=100, help="preference points per front")
    ap.add_argument(
        "--surrogate-budget",
        type=int,
        default=DEFAULT_SURROGATE_BUDGET,
        help="the surrogate's accuracy queries; baselines also run at this budget",
    )
    ap.add_argument("--epochs", type=int, default=None, help="search epochs (default: its own)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads for the search")
    ap.add_argument("--no-search", action="store_true", help="baselines only")
    ap.add_argument("--no-energy", action="store_true", help="skip the 3-objective experiment")
    ap.add_argument(
        "--keep-runs",
        action="store_true",
        help="save the search runs under HILNAS_HOME (default: a temporary directory)",
    )
    ap.add_argument("--out", type=Path, default=RESULTS_DIR, help="output directory")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    def progress(msg: str) -> None:
        log.info("[%6.0f s] %s", time.perf_counter() - t0, msg)

    n_seeds = args.seeds if args.seeds is not None else (1 if args.quick else 3)
    seeds = list(range(n_seeds))
    budgets = sorted({100, int(args.surrogate_budget), 1000})
    wanted: dict[str, Any] = {
        "accuracy_queries": int(args.surrogate_budget),
        # the shipped predictors, never a user's retrained ones: the figures must reproduce
        "predictor_source": "shipped",
        "torch_device": "cpu",
    }
    if args.epochs is not None:
        wanted["epochs"] = int(args.epochs)
    if args.threads is not None:
        wanted["threads"] = int(args.threads)
    overrides = _supported_overrides(wanted)
    t0 = time.perf_counter()
    all_devices = load_nb201().latency_devices
    experiments = []
    fresh = not args.keep_runs and not args.no_search
    with temporary_home("hilnas-bench-") if fresh else contextlib.nullcontext():
        experiments.append(
            run_experiment(
                objectives=OBJ2,
                devices=all_devices,
                budgets=budgets,
                seeds=seeds,
                search=not args.no_search,
                points=args.points,
                config_overrides=overrides,
                progress=progress,
            )
        )
        if not args.no_energy:
            block = run_experiment(
                objectives=OBJ3,
                devices=ENERGY_DEVICES,
                budgets=budgets,
                seeds=seeds,
                search=not args.no_search,
                points=args.points,
                config_overrides=overrides,
                progress=progress,
                train_targets=ENERGY_DEVICES,
            )
            block["note"] = (
                "Three objectives: energy is known for eyeriss and fpga only, so the search "
                "trains on these two (an energy embedding is needed for every training target) "
                "and the shipped energy meta-predictor was fitted on their full energy tables: "
                "this experiment is NOT zero-shot. The baselines search each device separately."
            )
            experiments.append(block)
    result = {
        "benchmark": "search",
        "settings": {
            "command": "python -m hilnas.pipeline.benchmarks.search"
            + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "host": platform.node() or "unknown",
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_1m_at_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "seeds": seeds,
            "points": args.points,
            "budgets": budgets,
            "surrogate_budget": args.surrogate_budget,
            "search_overrides": overrides,
            "refdata_sha256": load_nb201().sha256,
            "normalisation": "min/max over all archs with error < 90 %, ref point (1,...,1)",
            "wall_s": time.perf_counter() - t0,
        },
        "experiments": experiments,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "search.json").write_text(json.dumps(fronts._plain(result), indent=1) + "\n")
    md = render_markdown(result)
    (args.out / "search.md").write_text(md)
    print(md)
    return 0


def _supported_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """Keep only the overrides that the SearchConfig in this checkout accepts."""
    try:
        from hilnas.pipeline.search import SearchConfig
    except ImportError:
        return {}
    import dataclasses
    import inspect

    if dataclasses.is_dataclass(SearchConfig):
        names = {f.name for f in dataclasses.fields(SearchConfig)}
    else:
        names = set(inspect.signature(SearchConfig).parameters)
    return {k: v for k, v in overrides.items() if k in names}


if __name__ == "__main__":
    raise SystemExit(main())
