"""Supernet-mode benchmark on digits: do the fronts follow the preference on real hardware?

``python -m hilnas.pipeline.benchmarks.supernet [--quick] [--seeds N] [--no-standalone]``

What ``hilnas run`` does by default, measured. In a fresh temporary ``HILNAS_HOME``:

1. the local CPU is profiled as the main job profiles it (10 reference + 50 sampled NB201
   subnets, 30 repetitions; the benchmark's standard skeleton) and the predictors are refit;
2. for each seed and each way of getting the error term (``surrogate``: the supernet trained
   alone with strict fairness labels a surrogate; ``direct``: MODNAS's straight-through error),
   ONE supernet-mode search on scikit-learn's 8x8 digits is trained for the 13 MODNAS training
   devices plus the local CPU;
3. for every device (the 27 reference configurations and the local CPU), ``points``
   preferences are swept and the architecture the search returns for each one is looked up in
   MEASURED latencies: the reference table for the 27 (measured by HELP / HW-NAS-Bench), and
   a fresh hilnas profiling of exactly those architectures on the local CPU (in the profiled
   skeleton, and also in the small digits skeleton the supernet was trained in).
   Reported per device: Spearman between the preference's weight on the error and the
   measured latency of the chosen architecture (positive = latency rises with the weight on
   the error, the point of a preference), the number of distinct architectures chosen, and the
   size and error span of the front (``front(points=...)``);
4. (seed 0, ``surrogate`` error) the local CPU's front architectures are trained from scratch
   on digits, and their supernet validation error is compared with the standalone test error.

Results: ``pipeline/benchmarks/results/supernet.{json,md}``. ``--skeleton-study`` measures
instead why the digits skeleton has pooled reductions and why the supernet is trained with
strict fairness (``results/supernet_skeleton.{json,md}``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from hilnas.pipeline.benchmarks.profiling import spearman
from hilnas.pipeline.home import temporary_home
from hilnas.pipeline.refdata import MODNAS_TEST_DEVICES, MODNAS_TRAIN_DEVICES, load_nb201

RESULTS_DIR = Path(__file__).with_name("results")
PATHS: tuple[str, ...] = ("surrogate", "direct")


def _spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman rank correlation, ``None`` (JSON null) where undefined: one side constant,
    e.g. one architecture for every preference."""
    rho = spearman(a, b)
    return None if math.isnan(rho) else rho


def _profile_local(include: Sequence[str], *, archs: int, references: bool, reps: int, config=None):
    """Profile the local CPU; returns (report, {arch: median latency ms})."""
    from hilnas.pipeline.profiling import profile_device

    report = profile_device(
        "cpu",
        archs=archs,
        references=references,
        include=list(include),
        reps=reps,
        model_config=config,
    )
    lat = {r.arch: r.latency_ms_median for r in report.rows if r.latency_ms_median is not None}
    return report, lat


def _sweep_device(trained, device: str, prefs: np.ndarray, points: int) -> dict[str, Any]:
    chosen = [trained.front(device, preference=p)[0] for p in prefs]
    front = trained.front(device, points=points)
    errors = [p.objectives["error"] for p in front]
    return {
        "chosen": [p.arch for p in chosen],
        "chosen_index": [p.index for p in chosen],
        "distinct": len({p.arch for p in chosen}),
        "front_points": len(front),
        "front_error_span": float(max(errors) - min(errors)) if errors else 0.0,
        "front": [
            {"arch": p.arch, **{k: round(v, 4) for k, v in p.objectives.items()}} for p in front
        ],
    }


def _measure_devices(
    trained, devices: Sequence[str], local: str, points: int, reps: int
) -> dict[str, Any]:
    """Per device: the sweep's choices and their measured latencies (see the module docstring)."""
    ref = load_nb201()
    prefs = trained.sweep(points)
    out = {}
    for dev in devices:
        row = _sweep_device(trained, dev, prefs, points)
        if dev == local:
            archs = sorted(set(row["chosen"]))
            _, lat = _profile_local(archs, archs=0, references=False, reps=reps)
            _, lat_small = _profile_local(
                archs, archs=0, references=False, reps=reps, config=trained.model_config()
            )
            row["measured_ms"] = [lat.get(a) for a in row["chosen"]]
            row["measured_ms_digits_skeleton"] = [lat_small.get(a) for a in row["chosen"]]
            row["rho_digits_skeleton"] = _spearman(prefs[:, 0], row["measured_ms_digits_skeleton"])
        else:
            row["measured_ms"] = ref.latency(dev)[row["chosen_index"]].tolist()
        row["rho"] = _spearman(prefs[:, 0], row["measured_ms"])
        row["measured_span_ms"] = [
            float(np.min(row["measured_ms"])),
            float(np.max(row["measured_ms"])),
        ]
        out[dev] = row
    return out


def _standalone_check(trained, local: str, points: int) -> dict[str, Any]:
    """The local CPU's front architectures (at most 10) trained from scratch on the dataset."""
    from hilnas.pipeline.spaces.nb201.supernet import train_standalone

    _, data = trained._supernet_and_data()
    pts = trained.front(local, points=points)[:10]
    t = time.time()
    stand = [
        train_standalone(trained.space.parse(p.arch), data, trained.model_config()) for p in pts
    ]
    return {
        "archs": [p.arch for p in pts],
        "supernet_val_error": [p.objectives["error"] for p in pts],
        "standalone_test_error": [s["test_error"] for s in stand],
        "standalone_val_error": [s["val_error"] for s in stand],
        "spearman": _spearman(
            [p.objectives["error"] for p in pts], [s["test_error"] for s in stand]
        ),
        "train_s": round(time.time() - t, 1),
    }


def run(
    *,
    seeds: int = 3,
    points: int = 15,
    epochs: int | None = None,
    standalone: bool = True,
    reps: int = 30,
    out_dir: Path = RESULTS_DIR,
    quick: bool = False,
) -> dict[str, Any]:
    from hilnas.pipeline.predictors.device import fit_store_targets
    from hilnas.pipeline.search import SearchConfig, TrainedSearch, run_search
    from hilnas.pipeline.store import MeasurementStore

    t0 = time.time()
    ref = load_nb201()
    res: dict[str, Any] = {
        "settings": {
            "command": "python -m hilnas.pipeline.benchmarks.supernet"
            + (" --quick" if quick else ""),
            "seeds": seeds,
            "points": points,
            "epochs": epochs,
            "reps": reps,
            "machine": f"{platform.machine()} ({os.cpu_count()} cores)",
            "load_before": [round(float(x), 2) for x in os.getloadavg()],
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
        "runs": [],
    }
    with temporary_home("hilnas-bench-supernet-"):
        t = time.time()
        report, _ = _profile_local([], archs=50, references=True, reps=reps)
        local = report.config_key
        with MeasurementStore() as st:
            fit_store_targets(st, meta=True, meta_only_with_store_targets=True)
        res["local_cpu"] = {
            "config_key": local,
            "device": report.device_name,
            "setup_s": round(time.time() - t, 1),
        }
        targets = (*MODNAS_TRAIN_DEVICES, local)
        for seed in range(seeds):
            for path in PATHS:
                cfg = SearchConfig(
                    mode="supernet",
                    supernet_error=path,
                    seed=seed,
                    train_targets=targets,
                    epochs=epochs,
                )
                t = time.time()
                trained = TrainedSearch.load(run_search(cfg))
                run: dict[str, Any] = {
                    "seed": seed,
                    "supernet_error": path,
                    "search_s": round(time.time() - t, 1),
                }
                run["devices"] = _measure_devices(
                    trained, (*ref.latency_devices, local), local, points, reps
                )
                if standalone and seed == 0 and path == "surrogate":
                    run["standalone"] = _standalone_check(trained, local, points)
                res["runs"].append(run)
                print(_run_line(run, local), flush=True)
    res["summary"] = _summary(res, local)
    res["runtime_s"] = round(time.time() - t0, 1)
    res["settings"]["load_after"] = [round(float(x), 2) for x in os.getloadavg()]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "supernet.json").write_text(json.dumps(res, indent=2) + "\n")
    (out_dir / "supernet.md").write_text(markdown(res))
    return res


STUDY_ARCHS: dict[str, tuple[int, ...]] = {
    "all-skip": (1,) * 6,
    "all-conv1x1": (2,) * 6,
    "all-conv3x3": (3,) * 6,
    "all-pool": (4,) * 6,
}


def skeleton_study(
    seeds: int = 3, random_archs: int = 8, epochs: int = 30, out_dir: Path = RESULTS_DIR
) -> dict[str, Any]:
    """Why supernet mode on digits uses pooled reductions and strict fairness, measured.

    (1) Standalone test error (mean over ``seeds``) of uniform cells and ``random_archs`` random
    connected cells in the digits skeleton with NB201's residual reductions and with pooled
    ones. (2) A supernet trained ``epochs`` with uniform vs strict-fairness sampling (pooled
    skeleton): Spearman between its validation error and the standalone test error of the
    same architectures.
    """
    import torch
    from hilnas.pipeline.datasets import load_dataset
    from hilnas.pipeline.search import SearchConfig, _train_supernet_fair
    from hilnas.pipeline.spaces import get_space
    from hilnas.pipeline.spaces.nb201.supernet import NB201Supernet, train_standalone

    t0 = time.time()
    torch.set_num_threads(1)
    sp = get_space("nb201")
    data = load_dataset("digits", seed=0)
    archs = dict(STUDY_ARCHS)
    for i, code in enumerate(sp.sample(random_archs, seed=7)):
        archs[f"random-{i}"] = tuple(code)
    res: dict[str, Any] = {
        "seeds": seeds,
        "epochs": epochs,
        "archs": {k: sp.format(v) for k, v in archs.items()},
    }
    for reduction in ("residual", "pool"):
        cfg = data.model_config(8, 1, reduction)
        names = archs if reduction == "pool" else STUDY_ARCHS
        res[reduction] = {
            name: float(
                np.mean(
                    [
                        train_standalone(archs[name], data, cfg, epochs=epochs, seed=s)[
                            "test_error"
                        ]
                        for s in range(seeds)
                    ]
                )
            )
            for name in names
        }
    truth = [res["pool"][n] for n in archs]
    res["supernet_rank"] = {}
    for sampling in ("uniform", "fair"):
        net = NB201Supernet(data.model_config(8, 1, "pool"))
        _train_supernet_fair(
            SearchConfig(mode="supernet", supernet_epochs=epochs, weight_sampling=sampling),
            net,
            data,
            "cpu",
            None,
        )
        errs = [net.error_pct(data.val_x, data.val_y, archs[n]) for n in archs]
        res["supernet_rank"][sampling] = {
            "spearman": _spearman(errs, truth),
            "val_error": dict(zip(archs, errs, strict=False)),
        }
    res["runtime_s"] = round(time.time() - t0, 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "supernet_skeleton.json").write_text(json.dumps(res, indent=2) + "\n")
    lines = [
        "# Digits skeleton and supernet sampling (`python -m hilnas.pipeline.benchmarks.supernet --skeleton-study`)",
        "",
        f"Standalone training: C=8, N=1, 8x8 digits, {epochs} epochs, test error % (mean of {seeds} seeds). "
        f"{res['runtime_s']:.0f} s in all.",
        "",
        "| cell | residual reductions (NB201) | pooled reductions |",
        "|---|---:|---:|",
    ]
    for n in archs:
        r = res["residual"].get(n)
        lines.append(
            f"| {n} `{res['archs'][n]}` | {'-' if r is None else f'{r:.1f}'} | {res['pool'][n]:.1f} |"
        )
    lines += [
        "",
        f"Supernet ({epochs} epochs, pooled skeleton), Spearman of its validation error vs the standalone test "
        f"error of these {len(archs)} cells: uniform sampling {_fmt(res['supernet_rank']['uniform']['spearman'])}, "
        f"strict fairness {_fmt(res['supernet_rank']['fair']['spearman'])}.",
    ]
    (out_dir / "supernet_skeleton.md").write_text("\n".join(lines) + "\n")
    return res


def _groups(local: str) -> dict[str, tuple[str, ...]]:
    return {
        "train (13)": MODNAS_TRAIN_DEVICES,
        "zero-shot (6)": MODNAS_TEST_DEVICES,
        "all 27": tuple(load_nb201().latency_devices),
        "local CPU": (local,),
    }


def _mean(values) -> float | None:
    v = [x for x in values if x is not None and np.isfinite(x)]
    return float(np.mean(v)) if v else None


def _summary(res: dict[str, Any], local: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path in PATHS:
        runs = [r for r in res["runs"] if r["supernet_error"] == path]
        entry: dict[str, Any] = {"search_s": _mean(r["search_s"] for r in runs)}
        for g, devs in _groups(local).items():
            rows = [r["devices"][d] for r in runs for d in devs]
            entry[g] = {
                "rho": _mean(r["rho"] for r in rows),
                "rho_undefined": sum(r["rho"] is None for r in rows),
                "distinct": _mean(r["distinct"] for r in rows),
                "front_points": _mean(r["front_points"] for r in rows),
                "front_error_span": _mean(r["front_error_span"] for r in rows),
            }
        entry["local CPU"]["rho_digits_skeleton"] = _mean(
            r["devices"][local].get("rho_digits_skeleton") for r in runs
        )
        out[path] = entry
    return out


def _run_line(run: dict[str, Any], local: str) -> str:
    d = run["devices"]
    rhos = [r["rho"] for r in d.values()]
    return (
        f"seed {run['seed']} {run['supernet_error']:9s} search {run['search_s']:.0f} s; "
        f"rho mean {_fmt(_mean(rhos))} ({sum(r is None for r in rhos)} undefined), "
        f"local CPU rho {_fmt(d[local]['rho'])}, distinct {d[local]['distinct']}, "
        f"front {d[local]['front_points']} points"
    )


def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "n/a" if x is None else format(x, spec)


def markdown(res: dict[str, Any]) -> str:
    s = res["settings"]
    lines = [
        "# Supernet mode on digits: do fronts follow the preference?",
        "",
        f"`{s['command']}` — {s['seeds']} seed(s), {s['points']} preferences per device, "
        f"{res['runtime_s']:.0f} s in all on {s['machine']}; load average {s['load_before']} before, "
        f"{s['load_after']} after. Local CPU: {res['local_cpu']['device']}.",
        "",
        "rho: Spearman between a preference's weight on the error and the MEASURED latency of the",
        "architecture chosen for it (reference table for the 27 configurations; a fresh hilnas",
        "profiling, median of the repetitions, for the local CPU), mean over devices and seeds;",
        "undefined where one architecture is chosen for every preference (the count of such",
        "device-seed pairs is given; they are left out of the mean).",
        "distinct: architectures chosen over the sweep; front: points of `front(points=...)` and",
        "their span of supernet validation error (percentage points).",
        "",
        "| error term | devices | rho | undefined | distinct | front points | error span | search s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for path, entry in res["summary"].items():
        for g, v in entry.items():
            if not isinstance(v, dict):
                continue
            lines.append(
                f"| {path} | {g} | {_fmt(v['rho'])} | {v['rho_undefined']} | {_fmt(v['distinct'], '.1f')} | "
                f"{_fmt(v['front_points'], '.1f')} | {_fmt(v['front_error_span'], '.1f')} | {_fmt(entry['search_s'], '.0f')} |"
            )
    for path, entry in res["summary"].items():
        lines.append(
            f"\nLocal CPU, {path}: rho in the digits skeleton the supernet was trained in "
            f"(C8, N1, 8x8 input): {_fmt(entry['local CPU'].get('rho_digits_skeleton'))}."
        )
    for r in res["runs"]:
        st = r.get("standalone")
        if st:
            lines += [
                "",
                f"Standalone check (seed {r['seed']}, {r['supernet_error']}): the local CPU's "
                f"{len(st['archs'])} front architectures trained from scratch on digits (30 epochs, "
                f"{st['train_s']:.0f} s). Spearman(supernet val error, standalone test error) = "
                f"{_fmt(st['spearman'])}.",
                "",
                "| architecture | supernet val error % | standalone test error % |",
                "|---|---:|---:|",
            ]
            lines += [
                f"| `{a}` | {e:.1f} | {t:.1f} |"
                for a, e, t in zip(
                    st["archs"], st["supernet_val_error"], st["standalone_test_error"], strict=False
                )
            ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=3, help="search seeds per error term (default 3)")
    ap.add_argument(
        "--points", type=int, default=15, help="preferences swept per device (default 15)"
    )
    ap.add_argument(
        "--epochs", type=int, default=None, help="search epochs (default: the search's)"
    )
    ap.add_argument(
        "--no-standalone", action="store_true", help="skip training front architectures alone"
    )
    ap.add_argument("--quick", action="store_true", help="one seed, 8 epochs, no standalone check")
    ap.add_argument(
        "--skeleton-study",
        action="store_true",
        help="only the skeleton / sampling study (results/supernet_skeleton.{json,md}, ~8 min)",
    )
    ap.add_argument(
        "--out", type=Path, default=RESULTS_DIR, help="directory for supernet.{json,md}"
    )
    args = ap.parse_args(argv)
    if args.skeleton_study:
        skeleton_study(out_dir=args.out)
        print((args.out / "supernet_skeleton.md").read_text())
        return
    seeds, epochs, standalone = args.seeds, args.epochs, not args.no_standalone
    if args.quick:
        seeds, epochs, standalone = 1, epochs or 8, False
    res = run(
        seeds=seeds,
        points=args.points,
        epochs=epochs,
        standalone=standalone,
        out_dir=args.out,
        quick=args.quick,
    )
    print(markdown(res))


if __name__ == "__main__":
    main()
