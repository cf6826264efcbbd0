"""GPT-S search benchmark (issue 10's baselines): HV ratios per device against a reference front.

``python -m hilnas.pipeline.benchmarks.search_gpt [--devices a100,P100] [--seeds 3] [--quick]``

For each of HW-GPT-Bench's 10 devices and each objective set (perplexity + latency,
perplexity + energy, all three), every method runs per device on the MLP-surrogate oracles
(:func:`~hilnas.pipeline.spacesearch.problem.gpt_problem`) and is scored by the hypervolume
ratio of its front against the device's reference front:

- each objective normalised per device over 20,000 uniformly sampled architectures
  (``space.sample``), reference point 1 in every objective;
- the reference front is the non-dominated union of everything every method found plus an
  NSGA-II run of 20,000 oracle evaluations on that device; it is computed after all methods
  ran, so a method can never score above 1;
- invalid points (an energy surrogate predicting <= 0, NaN) are dropped before any front.

Methods: ``random@100``, ``nsga2@100``, ``random@1000``, ``nsga2@1000`` (budget = oracle
evaluations), three seeds, mean and min over seeds. Another method joins in two ways (see
:class:`SearchBenchmark`): a callable ``(problem, seed) -> (raw F, evaluations)`` given to
:meth:`SearchBenchmark.run_method`, or fronts already found, given to
:meth:`SearchBenchmark.add_method` (raw oracle values) or :meth:`SearchBenchmark.add_found`
(architecture codes, evaluated here with the oracle so that predicted values never score).

For the objective sets with energy the HV ratios are also given with every front, the
reference's too, restricted to points whose surrogate energy lies in the range the device's
surrogate spans over the 10,000 measured architectures (``in_range``: the score without the
energy MLP's extrapolation beyond its training architectures). ``--cost-model`` picks the
hypernetwork's zero-shot cost model (:data:`~hilnas.pipeline.spacesearch.targets.COST_MODELS`).

Results: ``pipeline/benchmarks/results/search_gpt.{json,md}`` (``--quick``:
``search_gpt_quick.*``: one seed, three devices, a 2,000-evaluation reference run).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from hilnas.devices.errors import InvalidInputError, NotFoundError, PreconditionError
from hilnas.pipeline.spacesearch import baselines
from hilnas.pipeline.spacesearch.problem import (
    OracleProblem,
    gpt_problem,
    reference_front,
    valid_front_mask,
)

log = logging.getLogger(__name__)

RESULTS_DIR = Path(__file__).with_name("results")
#: Objective sets of issue 10, by short name.
OBJECTIVE_SETS: dict[str, tuple[str, ...]] = {
    "ppl-lat": ("perplexity", "latency_ms"),
    "ppl-energy": ("perplexity", "energy_mj"),
    "ppl-lat-energy": ("perplexity", "latency_ms", "energy_mj"),
}
BUDGETS: tuple[int, ...] = (100, 1000)
REFERENCE_EVALUATIONS = 20_000
#: Seed of the reference NSGA-II run (apart from the compared runs' seeds 0, 1, 2).
REFERENCE_SEED = 1000

#: A method: ``(problem, seed) -> (raw oracle F (n, M), oracle evaluations spent)``.
MethodFn = Callable[[OracleProblem, int], tuple[np.ndarray, int]]
Key = tuple[str, str]  # (device, objective set name)


def baseline_method(kind: str, budget: int) -> MethodFn:
    """``random`` or ``nsga2`` from :mod:`hilnas.pipeline.spacesearch.baselines` as a method."""

    def run(problem: OracleProblem, seed: int) -> tuple[np.ndarray, int]:
        res = baselines.run_baseline(kind, problem, budget, seed)
        return res.F, res.evaluations

    return run


def default_methods(budgets: Sequence[int] = BUDGETS) -> dict[str, MethodFn]:
    """``random@B`` and ``nsga2@B`` for each budget, in table order."""
    out: dict[str, MethodFn] = {}
    for b in budgets:
        out[f"random@{b}"] = baseline_method("random", b)
        out[f"nsga2@{b}"] = baseline_method("nsga2", b)
    return out


@dataclass
class _Run:
    seed: int | None
    F: np.ndarray
    evaluations: int | None
    wall_s: float | None


@dataclass
class SearchBenchmark:
    """Problems for ``devices x objective_sets``, the runs of every method, and the scoring.

    Use: ``b = SearchBenchmark(); b.run_methods(default_methods()); b.add_method(...);
    res = b.finish()``. ``finish`` builds the reference fronts (from every method's points,
    so call it last) and returns the plain-data results :func:`write_results` writes.
    """

    devices: Sequence[str] = ()
    seeds: Sequence[int] = (0, 1, 2)
    objective_sets: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: dict(OBJECTIVE_SETS)
    )
    reference_evaluations: int = REFERENCE_EVALUATIONS
    bounds_samples: int = 20_000
    cache_dir: Path | None = None
    problems: dict[Key, OracleProblem] = field(init=False, default_factory=dict)
    runs: dict[str, dict[Key, list[_Run]]] = field(init=False, default_factory=dict)
    method_wall_s: dict[str, float] = field(init=False, default_factory=dict)
    bounds_wall_s: float = field(init=False, default=0.0)
    _energy_ranges: dict[str, tuple[float, float]] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        from hilnas.pipeline.spaces.gpt_s.surrogates import DEVICES, load_surrogates

        self.devices = tuple(self.devices) or DEVICES
        unknown = [d for d in self.devices if d not in DEVICES]
        if unknown:
            raise NotFoundError(
                f"unknown GPT-S device(s) {', '.join(unknown)}; choose from {', '.join(DEVICES)}"
            )
        if not self.seeds:
            raise InvalidInputError("need at least one seed; pass e.g. --seeds 3")
        s = load_surrogates()
        for dev in self.devices:
            for name, objs in self.objective_sets.items():
                self.problems[(dev, name)] = gpt_problem(
                    dev, objs, s, bounds_samples=self.bounds_samples
                )
        t0 = time.perf_counter()
        for problem in self.problems.values():
            problem.bounds  # noqa: B018 - sample and evaluate now, outside the methods' wall time
        self.bounds_wall_s = time.perf_counter() - t0

    # ----- adding methods ---------------------------------------------------------------
    def run_method(self, name: str, fn: MethodFn) -> None:
        """Run ``fn(problem, seed)`` for every problem and seed; ``fn`` returns the raw ORACLE
        values of everything it evaluated (NaN rows allowed, they are dropped) and the number
        of oracle evaluations it spent."""
        self._new(name)
        t0 = time.perf_counter()
        for key, problem in self.problems.items():
            for seed in self.seeds:
                t = time.perf_counter()
                F, evaluations = fn(problem, int(seed))
                self.runs[name][key].append(
                    _Run(
                        int(seed),
                        problem.check_values(F),
                        int(evaluations),
                        time.perf_counter() - t,
                    )
                )
        self.method_wall_s[name] = time.perf_counter() - t0
        log.info("%s: %.1f s", name, self.method_wall_s[name])

    def run_methods(self, methods: Mapping[str, MethodFn]) -> None:
        for name, fn in methods.items():
            self.run_method(name, fn)

    def add_method(
        self,
        name: str,
        fronts: Mapping[Key, np.ndarray | Sequence[np.ndarray]],
        *,
        evaluations: int | Mapping[Key, int] | None = None,
        wall_s: float | None = None,
    ) -> None:
        """Add a method run elsewhere: ``fronts[(device, objective_set)]`` is one raw F
        ``(n, M)`` of TRUE oracle values, or a list of them (one per seed). Every problem of the
        benchmark needs an entry (:class:`PreconditionError` names the missing ones)."""
        missing = [k for k in self.problems if k not in fronts]
        if missing:
            raise PreconditionError(
                f"{name}: no front for {', '.join(f'{d}/{o}' for d, o in missing)}; give one "
                "per (device, objective set)"
            )
        self._new(name)
        for key, problem in self.problems.items():
            value = fronts[key]
            items = list(value) if isinstance(value, (list, tuple)) else [value]
            ev = evaluations.get(key) if isinstance(evaluations, Mapping) else evaluations
            for i, F in enumerate(items):
                seed = int(self.seeds[i]) if i < len(self.seeds) else None
                self.runs[name][key].append(
                    _Run(seed, problem.check_values(F), None if ev is None else int(ev), None)
                )
        if wall_s is not None:
            self.method_wall_s[name] = float(wall_s)

    def add_found(
        self,
        name: str,
        codes: Mapping[Key, Any],
        *,
        evaluations: int | Mapping[Key, int] | None = None,
        wall_s: float | None = None,
    ) -> None:
        """Like :meth:`add_method` with architecture codes (``(n, 27)`` or a list per seed):
        they are scored with the oracle's values, never with what a method predicted."""
        fronts: dict[Key, list[np.ndarray]] = {}
        for key, value in codes.items():
            if key not in self.problems:
                continue
            items = (
                value if isinstance(value, (list, tuple)) and _is_list_of_arrays(value) else [value]
            )
            fronts[key] = [self.problems[key].evaluate(c) for c in items]
        self.add_method(name, fronts, evaluations=evaluations, wall_s=wall_s)

    def _new(self, name: str) -> None:
        if name in self.runs:
            raise InvalidInputError(f"method {name!r} is already in the benchmark; rename it")
        self.runs[name] = {k: [] for k in self.problems}

    # ----- scoring ----------------------------------------------------------------------
    def finish(self) -> dict[str, Any]:
        """Reference fronts (every method's points + the NSGA-II reference run), HV ratios."""
        t0 = time.perf_counter()
        table: dict[str, dict[str, dict[str, Any]]] = {}
        for (dev, oname), problem in self.problems.items():
            extra = [r.F for runs in self.runs.values() for r in runs[(dev, oname)]]
            t = time.perf_counter()
            ref_run = reference_front(
                problem,
                self.reference_evaluations,
                REFERENCE_SEED,
                cache_dir=self.cache_dir,
            )
            allF = np.concatenate([ref_run, *extra], axis=0)
            ref = np.unique(allF[valid_front_mask(allF)], axis=0)
            ref_s = time.perf_counter() - t
            ref_hv = problem.hv(ref)
            cell: dict[str, Any] = {
                "reference": {
                    "points": int(len(ref)),
                    "hv": ref_hv,
                    "run_points": int(len(ref_run)),
                    "run_hv_ratio": problem.hv(ref_run) / ref_hv,
                    "wall_s": round(ref_s, 3),
                },
                "bounds": {
                    "lo": problem.bounds[0].tolist(),
                    "hi": problem.bounds[1].tolist(),
                },
            }
            for method, runs in self.runs.items():
                rs = runs[(dev, oname)]
                ratios = [problem.hv(r.F) / ref_hv for r in rs]
                cell[method] = {
                    "hv_ratio": ratios,
                    "mean": float(np.mean(ratios)),
                    "min": float(np.min(ratios)),
                    "evaluations": [r.evaluations for r in rs],
                    "invalid": [int((~np.all(np.isfinite(r.F), axis=1)).sum()) for r in rs],
                    "seeds": [r.seed for r in rs],
                }
            objs = self.objective_sets[oname]
            if "energy_mj" in objs:
                cell["in_range"] = self._in_range(dev, oname, problem, allF)
            table.setdefault(oname, {})[dev] = cell
        methods = list(self.runs)
        means: dict[str, dict[str, dict[str, float]]] = {}
        for oname in self.objective_sets:
            cells = [table[oname][d] for d in self.devices]
            means[oname] = {
                m: {
                    "mean": float(np.mean([c[m]["mean"] for c in cells])),
                    "min": float(np.min([c[m]["min"] for c in cells])),
                }
                for m in methods
            }
            means[oname]["reference-run"] = {
                "mean": float(np.mean([c["reference"]["run_hv_ratio"] for c in cells]))
            }
        return {
            "methods": methods,
            "devices": list(self.devices),
            "objective_sets": {k: list(v) for k, v in self.objective_sets.items()},
            "seeds": [int(s) for s in self.seeds],
            "reference_evaluations": self.reference_evaluations,
            "reference_seed": REFERENCE_SEED,
            "bounds_samples": self.bounds_samples,
            "table": table,
            "means": means,
            "wall_s": {m: round(w, 2) for m, w in self.method_wall_s.items()},
            "bounds_wall_s": round(self.bounds_wall_s, 2),
            "scoring_wall_s": round(time.perf_counter() - t0, 2),
        }

    def _in_range(
        self, dev: str, oname: str, problem: OracleProblem, allF: np.ndarray
    ) -> dict[str, Any]:
        """HV ratios with every front (the reference's too) restricted to points whose
        surrogate energy lies in the range the surrogate spans over the 10,000 MEASURED
        architectures (``measured.csv``, the energy surrogate's training inputs; as in
        ``search_gpt_energy.md``): the score without its extrapolation beyond them."""
        if self._energy_ranges is None:
            from hilnas.pipeline.predictors.space import gpt_measured_table
            from hilnas.pipeline.spaces.gpt_s.surrogates import load_surrogates

            codes, sur = gpt_measured_table("energy_mj").codes, load_surrogates()
            self._energy_ranges = {}
            for d in self.devices:
                e = sur.energy_mj(codes, d)
                self._energy_ranges[d] = (float(np.nanmin(e)), float(np.nanmax(e)))
        lo, hi = self._energy_ranges[dev]
        j = list(self.objective_sets[oname]).index("energy_mj")

        def keep(F: np.ndarray) -> np.ndarray:
            F = np.asarray(F, dtype=np.float64)
            with np.errstate(invalid="ignore"):
                ok = np.all(np.isfinite(F), axis=1) & (F[:, j] >= lo) & (F[:, j] <= hi)
            return F[ok]

        ref = keep(allF)
        ref_hv = problem.hv(ref) if len(ref) else 0.0
        out: dict[str, Any] = {
            "energy_range_mj": [round(lo, 3), round(hi, 3)],
            "reference_points_in_range": int(len(ref)),
        }
        for method, runs in self.runs.items():
            ratios = [
                problem.hv(f) / ref_hv if ref_hv > 0 and len(f) else 0.0
                for f in (keep(r.F) for r in runs[(dev, oname)])
            ]
            out[method] = {"mean": float(np.mean(ratios)), "min": float(np.min(ratios))}
        return out


def _is_list_of_arrays(value: Sequence[Any]) -> bool:
    """A list of per-seed code arrays (2-D each), not one list of codes."""
    return len(value) > 0 and all(np.asarray(v).ndim == 2 for v in value)


# ----------------------------------------------------------------------------- output
def _load() -> dict[str, Any]:
    out: dict[str, Any] = {"loadavg": [round(x, 2) for x in os.getloadavg()]}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out["uptime"] = subprocess.run(
            ["uptime"], capture_output=True, text=True, timeout=5, check=False
        ).stdout.strip()
    return out


def _fmt(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.3f}"


def _flags(res: dict[str, Any]) -> str:
    """The hypernetwork's command-line settings that differ from the defaults."""
    h = res.get("hypernet")
    devs = "" if len(res["devices"]) == 10 else f" --devices {','.join(res['devices'])}"
    if not h:
        return devs + " --no-hypernet"
    out = devs + f" --queries {h['queries']}" if h["queries"] != 300 else ""
    out += f" --steps {h['steps']}" if h["steps"] != 600 else ""
    out += f" --costs {h['costs']}" if h["costs"] != "surrogate" else ""
    cm = h.get("cost_model", "space")
    out += f" --cost-model {cm}" if cm != "space" else ""
    jobs = res["settings"].get("jobs", 1)
    return out + (f" --jobs {jobs}" if jobs != 1 else "")


def markdown(res: dict[str, Any]) -> str:
    """The results as Markdown: one table per objective set, devices x methods."""
    methods = res["methods"]
    s = res["settings"]
    lines = [
        "# GPT-S search benchmark: HV ratio per device",
        "",
        f"Generated {s['finished']} by `python -m hilnas.pipeline.benchmarks.search_gpt"
        f"{' --quick' if s['quick'] else ''}{_flags(res)}` on {s['machine']}.",
        "",
        "HW-GPT-Bench's MLP surrogates are the oracles (perplexity; latency in ms and energy in "
        "mJ per forward pass of 8 x 1,024 tokens). Per device, each objective is normalised "
        f"over {res['bounds_samples']:,} uniformly sampled architectures, reference point 1; "
        "the reference front is the non-dominated union of every method's points and an "
        f"NSGA-II run of {res['reference_evaluations']:,} oracle evaluations (seed "
        f"{res['reference_seed']}). Invalid energies (surrogate <= 0) never enter a front. "
        f"Cells: mean (min) over seeds {', '.join(map(str, res['seeds']))}; `@B` = B oracle "
        "evaluations; `ref-run`: the reference NSGA-II run alone.",
        "",
    ]
    for oname, objs in res["objective_sets"].items():
        lines += [f"## {oname}: {' + '.join(objs)}", ""]
        head = ["device", *methods, "ref-run", "ref points"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for dev in res["devices"]:
            c = res["table"][oname][dev]
            row = [dev]
            row += [f"{_fmt(c[m]['mean'])} ({_fmt(c[m]['min'])})" for m in methods]
            row += [_fmt(c["reference"]["run_hv_ratio"]), str(c["reference"]["points"])]
            lines.append("| " + " | ".join(row) + " |")
        mm = res["means"][oname]
        row = ["**mean**"]
        row += [f"**{_fmt(mm[m]['mean'])}** ({_fmt(mm[m]['min'])})" for m in methods]
        row += [_fmt(mm["reference-run"]["mean"]), ""]
        lines += ["| " + " | ".join(row) + " |", ""]
    invalid = {
        m: sum(
            sum(res["table"][o][d][m]["invalid"])
            for o in res["objective_sets"]
            for d in res["devices"]
        )
        for m in methods
    }
    lines += [
        "Invalid (NaN) evaluations dropped, summed over devices, sets and seeds: "
        + ", ".join(f"{m} {n}" for m, n in invalid.items())
        + ".",
        "",
        "Wall times (s): "
        + ", ".join(f"{m} {w}" for m, w in res["wall_s"].items())
        + f"; normalisation bounds {res.get('bounds_wall_s', '-')}; reference fronts and "
        f"scoring {res['scoring_wall_s']}; total {s['total_wall_s']}.",
        f"Load before: {s['load_before'].get('uptime', s['load_before']['loadavg'])}; "
        f"after: {s['load_after'].get('uptime', s['load_after']['loadavg'])}.",
        "",
    ]
    lines += _in_range_markdown(res)
    hyper = res.get("hypernet")
    if hyper:
        lines += [
            f"## MetaHypernetwork, leave-one-device-out (B = {hyper['queries']} perplexity "
            f"queries per run, {hyper['steps']} steps, predictors trained on {hyper['costs']} "
            "costs of the 9 other devices)",
            "",
            "| left-out device | zero-shot Spearman latency | energy | predictor fit s | "
            "search s | fronts s |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for dev, d in hyper["per_device"].items():
            z = d["zero_shot_spearman"]
            lines.append(
                f"| {dev} | {z['latency_ms']:.3f} | {z['energy_mj']:.3f} | {d['fit_s']} | "
                f"{d['search_s']} | {d['front_s']} |"
            )
        lines.append("")
    return "\n".join(lines)


def _in_range_markdown(res: dict[str, Any]) -> list[str]:
    methods = res["methods"]
    lines: list[str] = []
    for oname, objs in res["objective_sets"].items():
        cells = [res["table"][oname][d].get("in_range") for d in res["devices"]]
        if "energy_mj" not in objs or not all(cells):
            continue
        lines += [
            f"## {oname} in the measured energy range",
            "",
            "Every front, the reference's too, restricted to points whose surrogate energy lies "
            "in the range the device's surrogate spans over the 10,000 measured architectures "
            "(`measured.csv`, min..max mJ, as in `search_gpt_energy.md`): the HV ratio without "
            "the energy surrogate's extrapolation beyond its training architectures.",
            "",
        ]
        head = ["device", "range mJ", *methods, "ref points in range"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for dev, c in zip(res["devices"], cells, strict=True):
            lo, hi = c["energy_range_mj"]
            row = [dev, f"{lo:.0f}..{hi:.0f}"]
            row += [f"{_fmt(c[m]['mean'])} ({_fmt(c[m]['min'])})" for m in methods]
            lines.append("| " + " | ".join(row + [str(c["reference_points_in_range"])]) + " |")
        row = ["**mean**", ""]
        row += [f"**{_fmt(float(np.mean([c[m]['mean'] for c in cells])))}**" for m in methods]
        lines += ["| " + " | ".join(row + [""]) + " |", ""]
    return lines


def write_results(res: dict[str, Any], out_dir: Path, stem: str) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    jp, mp = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    jp.write_text(json.dumps(res, indent=1) + "\n")
    mp.write_text(markdown(res))
    return jp, mp


# ----------------------------------------------------------------------------- CLI
def _single_thread_blas() -> contextlib.AbstractContextManager[Any]:
    """The oracles multiply batches of a population's size: BLAS threads only contend."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(1)


def _loo_job(devices: Sequence[str], sets: dict[str, tuple[str, ...]], kw: dict[str, Any]) -> Any:
    from hilnas.pipeline.benchmarks.search_gpt_hypernet import loo_fronts

    with _single_thread_blas():
        import torch

        torch.set_num_threads(1)
        return loo_fronts(devices, sets, log=print, **kw)


def _loo_parallel(
    devices: Sequence[str], sets: dict[str, tuple[str, ...]], jobs: int, **kw: Any
) -> tuple[dict[Key, np.ndarray], dict[str, Any]]:
    """:func:`~hilnas.pipeline.benchmarks.search_gpt_hypernet.loo_fronts` over ``devices``,
    split round-robin over ``jobs`` processes (each device's run is seeded alike either way)."""
    if jobs <= 1 or len(devices) <= 1:
        return _loo_job(devices, sets, kw)
    import multiprocessing as mp

    parts = [list(devices[i::jobs]) for i in range(min(jobs, len(devices)))]
    with mp.get_context("fork").Pool(len(parts)) as pool:
        outs = pool.starmap(_loo_job, [(p, sets, kw) for p in parts])
    found: dict[Key, np.ndarray] = {}
    details: dict[str, Any] = {}
    for f, d in outs:
        found.update(f)
        details.update(d)
    return found, {dev: details[dev] for dev in devices}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", default="", help="comma-separated GPT-S devices (default all)")
    ap.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3)")
    ap.add_argument(
        "--quick", action="store_true", help="smoke test: 1 seed, 3 devices, small reference"
    )
    ap.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    ap.add_argument(
        "--stem", default="", help="results file name stem (default search_gpt / _quick)"
    )
    ap.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="cache the reference NSGA-II runs here (default: none, computed afresh)",
    )
    ap.add_argument(
        "--no-hypernet",
        action="store_true",
        help="leave out the MetaHypernetwork (leave-one-device-out, one 3-objective run per device)",
    )
    ap.add_argument("--queries", type=int, default=300, help="hypernetwork: perplexity queries B")
    ap.add_argument("--steps", type=int, default=600, help="hypernetwork: training steps")
    ap.add_argument(
        "--costs",
        choices=("surrogate", "measured"),
        default="surrogate",
        help="what the hypernetwork's predictors learn from (see search_gpt_hypernet)",
    )
    ap.add_argument(
        "--cost-model",
        choices=("space", "oracle_mix", "mix-energy"),
        default="space",
        help="hypernetwork: zero-shot cost model of the left-out device "
        "(spacesearch.targets.COST_MODELS)",
    )
    ap.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="hypernetwork: left-out devices run in this many processes (results identical)",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    devices = tuple(d for d in args.devices.split(",") if d)
    if args.quick:
        devices = devices or ("a100", "P100", "cpu_xeon_gold")
    n_seeds = args.seeds if args.seeds is not None else (1 if args.quick else 3)
    if n_seeds < 1:
        raise SystemExit("--seeds must be at least 1")
    load_before = _load()
    t0 = time.perf_counter()
    with _single_thread_blas():
        bench = SearchBenchmark(
            devices=devices,
            seeds=tuple(range(n_seeds)),
            reference_evaluations=2_000 if args.quick else REFERENCE_EVALUATIONS,
            bounds_samples=5_000 if args.quick else 20_000,
            cache_dir=args.cache_dir,
        )
        bench.run_methods(default_methods())
        hyper_details = None
        if not args.no_hypernet:
            t = time.perf_counter()
            devs = tuple(bench.devices)
            found, hyper_details = _loo_parallel(
                devs,
                dict(bench.objective_sets),
                max(1, args.jobs),
                queries=args.queries,
                steps=args.steps,
                costs=args.costs,
                cost_model=args.cost_model,
            )
            suffix = "" if args.cost_model == "space" else f", {args.cost_model}"
            bench.add_found(
                f"hypernet(B={args.queries}{suffix})",
                found,
                evaluations=args.queries,
                wall_s=time.perf_counter() - t,
            )
        res = bench.finish()
        if hyper_details is not None:
            res["hypernet"] = {
                "queries": args.queries,
                "steps": args.steps,
                "costs": args.costs,
                "cost_model": args.cost_model,
                "per_device": hyper_details,
            }
    res["settings"] = {
        "quick": bool(args.quick),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} ({platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]})",
        "load_before": load_before,
        "load_after": _load(),
        "total_wall_s": round(time.perf_counter() - t0, 1),
        "blas_threads": 1,
        "jobs": max(1, args.jobs),
    }
    stem = args.stem or ("search_gpt_quick" if args.quick else "search_gpt")
    jp, mp = write_results(res, args.out_dir, stem)
    print(markdown(res))
    print(f"wrote {jp} and {mp}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
