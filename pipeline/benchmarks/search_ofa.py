"""OFA MobileNetV3 search benchmark (issue 9, 8b and 8c): HV ratio per GPU configuration, the
local CPU's choices MEASURED, and the wall time of every stage.

``python -m hilnas.pipeline.benchmarks.search_ofa [--quick] [--no-cpu] [--cache-dir DIR]``

**Oracles** (:mod:`hilnas.pipeline.spacesearch.ofa_problem`), per target ``(error, latency_ms)``:

- error: top-1 validation error (%) of the subnet with the shared weights of the OFA supernet
  trained with the DEFAULT settings of ``hilnas search --space ofa_mbv3 --quality supernet``
  (reduced width 0.35 and 18-32 px on a 5,000-image MNIST sample; trained once and cached in
  ``--cache-dir``). One evaluation is one forward pass over the 1,000 validation images; it
  does not depend on the device, so every architecture is evaluated once for all targets;
- latency: the space's cross-device predictor trained on HELP's GPU configurations WITHOUT
  ``titan_rtx_64`` (MODNAS's test configuration), zero-shot from each configuration's values on
  the 10 reference architectures; the same predictor is every target's latency oracle and the
  hypernetwork's latency model, so for titan_rtx_64 everything is zero-shot.

**Scoring** is search_gpt's (:class:`~hilnas.pipeline.benchmarks.search_gpt.SearchBenchmark`,
reused here): per target each objective normalised over one seeded uniform sample of the space
(``--bounds-samples`` architectures, the same for every target), reference point 1, HV ratio
against a reference front = the non-dominated union of every method's points on that target,
an NSGA-II run of ``--reference-evaluations`` oracle evaluations on that target (seed 1000),
and the *pool*: every architecture whose error was evaluated for any target, scored on this
target's oracles (free: the error is cached, latency is a predictor).

**Methods** (budget = error evaluations, i.e. supernet forward passes):

- ``hypernet(B=...)``: ONE MetaHypernetwork run (:func:`train_space_search`) for all targets,
  trained on the 8 configurations other than titan_rtx_64 and the local CPU, B error queries
  in total; each configuration's front (``--points``, refined on predicted objectives) is
  scored on the oracles; titan_rtx_64's front is read zero-shot from its reference values;
- ``nsga2@100``: :func:`~hilnas.pipeline.spacesearch.baselines.nsga2` per target;
- ``random@100``: one seeded uniform sample (``space.sample``) shared by every target (random
  search does not depend on the device), scored on each target's oracles.

**Local CPU** (hardware in the loop): the CPU's 10 reference architectures are profiled with
ONNX Runtime through :func:`~hilnas.pipeline.profiling.profile_device` (its embedding joins
the search as a training target); after the search the hypernetwork's argmax architectures
for a sweep of ``--sweep`` preferences are MEASURED the same way; reported: measured and
predicted latency, supernet validation and test error, Spearman between the preference's weight
on error and the measured latency, and predicted vs measured latency.

**Wall time** of export per subnet (the direct ONNX builder, from the profiler's rows),
profiling per subnet, supernet training (default settings; when loaded from the cache, the
record written when it was trained) and the search, each its own row.

Results: ``pipeline/benchmarks/results/search_ofa.{json,md}`` (``--quick``:
``search_ofa_quick.*``: 3 configurations, smaller budgets).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from hilnas.devices.errors import InvalidInputError, NotFoundError, PreconditionError
from hilnas.pipeline.benchmarks.search_gpt import (
    REFERENCE_SEED,
    MethodFn,
    SearchBenchmark,
    _fmt,
    _load,
    _single_thread_blas,
    baseline_method,
)
from hilnas.pipeline.spacesearch.ofa_problem import (
    TEST_CONFIG,
    SupernetErrorOracle,
    cached_supernet,
    latency_predictor,
    ofa_problem,
)

log = logging.getLogger(__name__)

RESULTS_DIR = Path(__file__).with_name("results")
SPACE = "ofa_mbv3"
KEY = "err-lat"
OBJECTIVE_SET: dict[str, tuple[str, ...]] = {KEY: ("error", "latency_ms")}
#: Seed of the normalisation sample (apart from the methods' seeds 0, 1, 2 and 1000).
BOUNDS_SEED = 12345
POOL = "pool"


def _configs() -> tuple[str, ...]:
    from hilnas.pipeline.predictors.space import ofa_latency_table

    return ofa_latency_table().devices


# ----------------------------------------------------------------------------- benchmark
@dataclass
class OFASearchBenchmark(SearchBenchmark):
    """:class:`SearchBenchmark` on ``ofa_mbv3``: one ``(error, latency_ms)`` problem per HELP GPU
    configuration in ``devices`` (default all 9), every problem sharing ``error_oracle`` (a
    :class:`SupernetErrorOracle`) and the latency ``predictor``."""

    error_oracle: SupernetErrorOracle | None = None
    predictor: Any = None
    objective_sets: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: dict(OBJECTIVE_SET)
    )
    bounds_samples: int = 200

    def __post_init__(self) -> None:
        configs = _configs()
        self.devices = tuple(self.devices) or configs
        unknown = [d for d in self.devices if d not in configs]
        if unknown:
            raise NotFoundError(
                f"unknown OFA configuration(s) {', '.join(unknown)}; choose from "
                f"{', '.join(configs)}"
            )
        if not self.seeds:
            raise InvalidInputError("need at least one seed; pass e.g. --seeds 3")
        if self.error_oracle is None or self.predictor is None:
            raise PreconditionError(
                "OFASearchBenchmark needs error_oracle= (a SupernetErrorOracle) and predictor= "
                "(see hilnas.pipeline.spacesearch.ofa_problem)"
            )
        if dict(self.objective_sets) != OBJECTIVE_SET:
            raise InvalidInputError(f"ofa_mbv3 has one objective set here: {OBJECTIVE_SET}")
        for dev in self.devices:
            self.problems[(dev, KEY)] = ofa_problem(
                dev,
                self.error_oracle,
                self.predictor,
                bounds_samples=self.bounds_samples,
                bounds_seed=BOUNDS_SEED,
            )
        t0 = time.perf_counter()
        for problem in self.problems.values():
            problem.bounds  # noqa: B018 - evaluate now, outside the methods' wall time
        self.bounds_wall_s = time.perf_counter() - t0

    @contextlib.contextmanager
    def seeds_as(self, seeds: Sequence[int]) -> Iterator[None]:
        """Run methods with other seeds (e.g. NSGA-II with fewer seeds than random search)."""
        before = self.seeds
        self.seeds = tuple(int(s) for s in seeds)
        try:
            yield
        finally:
            self.seeds = before

    def add_pool(self) -> int:
        """Add every architecture the error oracle knows as the method ``pool`` (scored on each
        target's oracles; it strengthens the reference fronts at no error evaluation).
        Returns the pool's size."""
        codes = self.error_oracle.codes()
        self.add_found(POOL, {k: codes for k in self.problems}, evaluations=0)
        return len(codes)


def shared_random(budget: int) -> MethodFn:
    """Random search of ``budget`` architectures: ``space.sample(budget, seed)`` (distinct
    canonical networks), the same sample for every target."""

    def run(problem: Any, seed: int) -> tuple[np.ndarray, int]:
        codes = problem.space.sample(budget, seed=int(seed))
        return problem.evaluate(codes), budget

    return run


# ----------------------------------------------------------------------------- local CPU
def _rows_latency(report: Any) -> dict[str, tuple[float, float | None]]:
    """arch -> (median latency ms, CV of the repetitions) of the report's ok rows."""
    return {
        r.arch: (float(r.latency_ms_median), r.latency_ms_cv)
        for r in report.rows
        if r.latency_ms_median is not None and r.status == "ok"
    }


def profile_cpu(
    db: str,
    *,
    reps: int | None,
    warmup: int | None,
    include: Sequence[str] = (),
    references: bool = True,
    force: bool = False,
) -> Any:
    """Profile this machine's CPU (ONNX Runtime, the space's default workload) through
    :func:`~hilnas.pipeline.profiling.profile_device`: the reference architectures (when
    ``references``) and ``include`` (``force``: measure again what the store has). Returns the
    report."""
    from hilnas.pipeline.profiling import profile_device

    return profile_device(
        "cpu",
        space=SPACE,
        archs=0,
        reps=reps,
        warmup=warmup,
        store=db,
        include=list(include),
        references=references,
        force=force,
    )


def cpu_target(db: str, config_key: str) -> Any:
    """The CPU as a search target from its measured reference latencies in the store."""
    from hilnas.pipeline.spacesearch.targets import resolve_target
    from hilnas.pipeline.store import MeasurementStore

    with MeasurementStore(db, read_only=True) as store:
        return resolve_target(SPACE, config_key, ("latency_ms",), store)


def row_timings(reports: Sequence[Any]) -> dict[str, Any]:
    """Export and profiling time per subnet over the rows the reports measured now."""
    rows = [r for rep in reports for r in rep.rows if r.outcome == "measured"]
    exported = [r.export_s for r in rows if r.export_cached is False]
    prof = [r.measure_wall_s for r in rows]
    sess = [r.session_create_s for r in rows]
    walls = [r.wall_s for r in rows]

    def stats(v: list[float]) -> dict[str, Any]:
        if not v:
            return {"n": 0}
        a = np.asarray(v, dtype=np.float64)
        return {
            "n": len(a),
            "median_s": round(float(np.median(a)), 4),
            "min_s": round(float(a.min()), 4),
            "max_s": round(float(a.max()), 4),
            "first_s": round(float(a[0]), 4),
        }

    return {
        "export_per_subnet": stats(exported),
        "export_warm_per_subnet": stats(exported[1:]),
        "profile_per_subnet": stats(prof),
        "session_create_per_subnet": stats(sess),
        "row_wall_per_subnet": stats(walls),
    }


def measured_choices(
    model: Any,
    target: Any,
    db: str,
    error: SupernetErrorOracle,
    supernet: Any,
    weights: Sequence[float],
    codes: Sequence[Sequence[int]],
    *,
    reps: int | None,
    warmup: int | None,
) -> tuple[dict[str, Any], Any]:
    """MEASURE ``codes`` (chosen for ``target`` with these weights on error) on this CPU and
    compare: Spearman(weight on error, measured latency), predicted vs measured latency, the
    supernet's validation and test error of each. Returns the figures and the profile report."""
    from hilnas.pipeline.predictors import spearman, within
    from hilnas.pipeline.spaces import get_space

    space = get_space(SPACE)
    w = np.asarray(weights, dtype=np.float64)
    codes = [tuple(int(v) for v in c) for c in codes]
    archs = [space.format(c) for c in codes]
    unique = list(dict.fromkeys(archs))
    t0 = time.perf_counter()
    report = profile_cpu(db, reps=reps, warmup=warmup, include=unique, references=False)
    measure_s = time.perf_counter() - t0
    lat_of = _rows_latency(report)
    measured = np.array([lat_of.get(a, (np.nan, None))[0] for a in archs])
    cvs = [lat_of.get(a, (np.nan, None))[1] for a in archs]
    predicted = model.predict(codes, target)[:, list(model.objectives).index("latency_ms")]
    val = error(codes)
    test = 100.0 * np.asarray(supernet.test_error(codes), dtype=np.float64)
    ok = np.isfinite(measured)

    def rho(a: np.ndarray, b: np.ndarray) -> float | None:
        if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
            return None
        return round(float(spearman(a[ok], b[ok])), 3)

    figures = {
        "distinct_architectures": len(unique),
        "measured": int(ok.sum()),
        "spearman_error_weight_vs_measured_latency": rho(w, measured),
        "spearman_predicted_vs_measured_latency": rho(predicted, measured),
        "spearman_val_error_vs_measured_latency": rho(val, measured),
        "within10_predicted_latency": (
            round(float(within(predicted[ok], measured[ok])), 3) if ok.any() else None
        ),
        "measure_s": round(measure_s, 1),
        "points": [
            {
                "weight_on_error": round(float(wi), 3),
                "arch": a,
                "measured_latency_ms": None if not np.isfinite(m) else round(float(m), 3),
                "measured_cv": None if cv is None else round(float(cv), 3),
                "predicted_latency_ms": round(float(p), 3),
                "supernet_val_error_pct": round(float(v), 2),
                "supernet_test_error_pct": round(float(t), 2),
            }
            for wi, a, m, cv, p, v, t in zip(
                w, archs, measured, cvs, predicted, val, test, strict=True
            )
        ],
    }
    return figures, report


def cpu_sweep(
    model: Any,
    target: Any,
    db: str,
    error: SupernetErrorOracle,
    supernet: Any,
    *,
    n: int,
    points: int,
    front_evaluations: int,
    reps: int | None,
    warmup: int | None,
) -> tuple[dict[str, Any], list[Any]]:
    """On this CPU, MEASURED (:func:`measured_choices`): ``sweep``, the hypernetwork's argmax
    architecture for ``n`` preferences (weight on error 1 .. 0), and ``front``, the CPU's front
    as ``hilnas front`` reads it (``points``, refined on predicted objectives; the weight is
    each point's preference). Then the references again (``reference_remeasured_over_start``:
    the drift since the CPU's embedding was measured). Returns the figures and the reports."""
    from hilnas.pipeline.spaces import get_space

    space = get_space(SPACE)
    w = np.linspace(1.0, 0.0, n)
    codes = model.architectures(target, np.stack([w, 1.0 - w], axis=1))
    sweep, rep1 = measured_choices(
        model, target, db, error, supernet, w, codes, reps=reps, warmup=warmup
    )
    pts = model.front(target, points=points, evaluations=front_evaluations)
    fw = [p.preference[0] if p.preference else np.nan for p in pts]
    front, rep2 = measured_choices(
        model,
        target,
        db,
        error,
        supernet,
        fw,
        [space.parse(p.arch) for p in pts],
        reps=reps,
        warmup=warmup,
    )
    again = _rows_latency(
        profile_cpu(db, reps=reps, warmup=warmup, include=(), references=True, force=True)
    )
    first = target.values("latency_ms")
    refs = space.reference_strings()
    ratio = [again[r][0] / v for r, v in zip(refs, first, strict=True) if r in again]
    figures = {
        "device": target.name,
        "preferences": n,
        "sweep": sweep,
        "front": front,
        "reference_latency_ms_at_start": [round(float(v), 3) for v in first],
        "reference_remeasured_over_start_median": (
            round(float(np.median(ratio)), 3) if ratio else None
        ),
    }
    return figures, [rep1, rep2]


# ----------------------------------------------------------------------------- the run
@dataclass
class Settings:
    """What one benchmark run does (the CLI's flags)."""

    devices: tuple[str, ...] = ()
    random_seeds: tuple[int, ...] = (0, 1, 2)
    nsga_seeds: tuple[int, ...] = (0,)
    budgets: tuple[int, ...] = (100,)
    bounds_samples: int = 200
    reference_evaluations: int = 100
    queries: int = 300
    steps: int = 600
    rounds: int = 3
    pool: int = 3000
    hidden: int = 128
    points: int = 12
    #: NSGA-II evaluations of PREDICTED objectives per front (SpaceSearchModel.front's
    #: ``evaluations``; 0: its greedy walk); no oracle query
    front_evaluations: int = 2000
    cpu: bool = True
    sweep: int = 11
    reps: int | None = None
    warmup: int | None = None
    supernet: Mapping[str, Any] = field(default_factory=dict)


def run(
    settings: Settings,
    *,
    cache_dir: Path | None,
    db: str,
    supernet: Any = None,
    predictor: Any = None,
) -> dict[str, Any]:
    """Everything above; returns the plain-data results (``write_results`` writes them).

    ``supernet`` / ``predictor``: inject an :class:`OFASupernetOracle` / a latency predictor
    (tests); default :func:`cached_supernet` with ``settings.supernet`` and
    :func:`latency_predictor` without titan_rtx_64.
    """
    import torch
    from hilnas.pipeline.spaces import get_space
    from hilnas.pipeline.spaces.ofa_mbv3.train import OFATrainSettings
    from hilnas.pipeline.spacesearch.search import (
        QualityOracle,
        SpaceSearchConfig,
        train_space_search,
    )
    from hilnas.pipeline.spacesearch.targets import resolve_target

    torch.set_num_threads(1)
    space = get_space(SPACE)
    walls: dict[str, Any] = {}
    t = time.perf_counter()
    if predictor is None:
        predictor = latency_predictor((TEST_CONFIG,), cache_dir=cache_dir)
    walls["latency_predictor_s"] = round(time.perf_counter() - t, 2)
    train_record: dict[str, Any] = {"injected": True}
    if supernet is None:
        supernet, train_record = cached_supernet(
            cache_dir,
            OFATrainSettings(**dict(settings.supernet)),
            progress=lambda e, loss: log.info("supernet epoch %d: loss %.3f", e, loss),
        )
    error = SupernetErrorOracle.from_supernet(supernet, cache_dir)
    cached_errors = error.loaded

    # ---- the CPU's embedding -----------------------------------------------------------------
    reports = []
    cpu = None
    if settings.cpu:
        t = time.perf_counter()
        rep = profile_cpu(db, reps=settings.reps, warmup=settings.warmup)
        reports.append(rep)
        cpu = cpu_target(db, rep.config_key)
        walls["profile_cpu_references_s"] = round(time.perf_counter() - t, 1)
        log.info("profiled the CPU's references: %s", rep.config_key)

    # ---- problems and baselines ----------------------------------------------------------------
    bench = OFASearchBenchmark(
        devices=settings.devices,
        seeds=settings.random_seeds,
        reference_evaluations=settings.reference_evaluations,
        bounds_samples=settings.bounds_samples,
        cache_dir=cache_dir,
        error_oracle=error,
        predictor=predictor,
    )
    log.info("bounds: %.1f s (%d error evaluations)", bench.bounds_wall_s, error.evaluations)
    error.save()
    evals_before: dict[str, int] = {}

    def run_one(name: str, fn: MethodFn, seeds: Sequence[int]) -> None:
        before = error.evaluations
        with bench.seeds_as(seeds):
            bench.run_method(name, fn)
        evals_before[name] = error.evaluations - before
        error.save()  # a killed run keeps what it paid for

    for b in settings.budgets:
        run_one(f"random@{b}", shared_random(b), settings.random_seeds)
        run_one(f"nsga2@{b}", baseline_method("nsga2", b), settings.nsga_seeds)

    # ---- one hypernetwork run for every target ----------------------------------------------------
    train_names = [d for d in _configs() if d != TEST_CONFIG]
    targets = [resolve_target(SPACE, d, ("latency_ms",)) for d in train_names]
    if cpu is not None:
        targets.append(cpu)
    cfg = SpaceSearchConfig(
        space=SPACE,
        objectives=("error", "latency_ms"),
        targets=tuple(t.name for t in targets),
        queries=settings.queries,
        rounds=settings.rounds,
        steps=settings.steps,
        pool=settings.pool,
        hidden=settings.hidden,
        seed=0,
    )
    quality = QualityOracle("error", error, "OFA supernet validation error (%), shared cache")
    before_evals, before_s = error.evaluations, error.seconds
    t = time.perf_counter()
    model = train_space_search(cfg, targets, {"latency_ms": predictor}, quality)
    search_s = time.perf_counter() - t
    error.save()
    search_query_evals = error.evaluations - before_evals
    search_query_s = error.seconds - before_s
    t = time.perf_counter()
    found = {}
    front_sizes = {}
    for key in bench.problems:
        pts = model.front(key[0], points=settings.points, evaluations=settings.front_evaluations)
        found[key] = np.asarray([space.parse(p.arch) for p in pts], dtype=np.int64)
        front_sizes[key[0]] = len(pts)
    fronts_s = time.perf_counter() - t
    hname = f"hypernet(B={settings.queries})"
    before = error.evaluations
    bench.add_found(hname, found, evaluations=len(quality.queried), wall_s=search_s + fronts_s)
    evals_before[hname] = search_query_evals
    scoring_evals = error.evaluations - before
    log.info("hypernetwork: search %.1f s, fronts %.1f s", search_s, fronts_s)

    # ---- the CPU's sweep, measured -----------------------------------------------------------
    cpu_res = None
    if cpu is not None:
        cpu_res, reps_ = cpu_sweep(
            model,
            cpu,
            db,
            error,
            supernet,
            n=settings.sweep,
            points=settings.points,
            front_evaluations=settings.front_evaluations,
            reps=settings.reps,
            warmup=settings.warmup,
        )
        reports.extend(reps_)

    # ---- reference fronts and scoring ------------------------------------------------------------
    # the reference NSGA-II runs first, so that the pool holds their architectures too; finish()
    # repeats them (same seed: every error is a cache hit)
    from hilnas.pipeline.spacesearch.problem import reference_front

    before = error.evaluations
    t = time.perf_counter()
    for problem in bench.problems.values():
        reference_front(
            problem, settings.reference_evaluations, REFERENCE_SEED, cache_dir=cache_dir
        )
    walls["reference_runs_s"] = round(time.perf_counter() - t, 1)
    error.save()
    reference_evals = error.evaluations - before
    pool_size = bench.add_pool()
    res = bench.finish()
    methods = [m for m in res["methods"] if m != POOL]
    res["methods"] = methods
    res["pool_size"] = pool_size
    error.save()

    hv = res["table"][KEY]
    res["hypernet"] = {
        "queries": settings.queries,
        "queries_used": len(quality.queried),
        "steps": settings.steps,
        "rounds": settings.rounds,
        "points": settings.points,
        "front_evaluations": settings.front_evaluations,
        "train_targets": [t.name for t in targets],
        "zero_shot_target": TEST_CONFIG,
        "front_sizes": front_sizes,
        "cost_fidelity": model.info.get("cost_fidelity"),
        "search_s": round(search_s, 1),
        "query_error_evaluations": search_query_evals,
        "query_error_s": round(search_query_s, 1),
        "fronts_s": round(fronts_s, 1),
        "front_scoring_error_evaluations": scoring_evals,
    }
    res["cpu"] = cpu_res
    res["oracles"] = {
        "error": supernet.describe(),
        "latency": {
            "predictor": "hilnas.pipeline.predictors.space (ridge, zero-shot from the 10 "
            "reference latencies)",
            "train_configurations": list(predictor.info.get("train_devices", [])),
            "alpha": predictor.alpha,
        },
        "error_evaluations": error.evaluations,
        "error_evaluations_from_disk_cache": cached_errors,
        "error_s": round(error.seconds, 1),
        "error_s_per_evaluation": (
            None if error.seconds_per_evaluation is None else round(error.seconds_per_evaluation, 3)
        ),
        "new_error_evaluations_by_method": evals_before,
        "reference_error_evaluations": reference_evals,
    }
    timings = row_timings(reports) if reports else {}
    res["wall_time"] = {
        **timings,
        "supernet_training": train_record,
        "search": {
            "total_s": round(search_s, 1),
            "error_queries_s": round(search_query_s, 1),
            "hypernetwork_and_cost_models_s": round(search_s - search_query_s, 1),
            "fronts_s": round(fronts_s, 1),
            "targets": len(targets),
        },
        **walls,
    }
    res["means_over"] = {
        "all": list(bench.devices),
        "zero_shot": [d for d in bench.devices if d == TEST_CONFIG],
    }
    res["summary"] = _summary(hv, methods, list(bench.devices))
    return res


def _summary(hv: Mapping[str, Any], methods: Sequence[str], devices: Sequence[str]) -> dict:
    out: dict[str, Any] = {}
    for m in [*methods, POOL]:
        vals = [hv[d][m]["mean"] for d in devices]
        out[m] = {"mean": float(np.mean(vals)), "min": float(np.min(vals))}
    out["reference-run"] = {
        "mean": float(np.mean([hv[d]["reference"]["run_hv_ratio"] for d in devices]))
    }
    return out


# ----------------------------------------------------------------------------- output
def markdown(res: dict[str, Any]) -> str:
    """The results as Markdown: HV table, CPU sweep, wall times."""
    s = res["settings"]
    methods = res["methods"]
    hv = res["table"][KEY]
    h = res["hypernet"]
    o = res["oracles"]
    lines = [
        "# OFA MobileNetV3 search benchmark: HV ratio per GPU configuration, the CPU measured",
        "",
        f"Generated {s['finished']} by `python -m hilnas.pipeline.benchmarks.search_ofa"
        f"{' --quick' if s['quick'] else ''}` on {s['machine']}; total {s['total_wall_s']} s.",
        f"Load before: {s['load_before'].get('uptime', s['load_before']['loadavg'])}; "
        f"after: {s['load_after'].get('uptime', s['load_after']['loadavg'])}.",
        "",
        "Oracles: error = top-1 validation error (%) of the subnet with the shared weights of the "
        "OFA supernet trained with the default settings of `hilnas search --space ofa_mbv3` "
        f"(width {o['error']['width_mult']}, input {o['error']['input_sizes'][0]}-"
        f"{o['error']['input_sizes'][1]} px, {o['error']['epochs']} epochs on a 5,000-image "
        "MNIST sample: a REDUCED proxy of accuracy); latency = the space predictor trained on "
        f"{len(o['latency']['train_configurations'])} of HELP's configurations (not "
        f"{TEST_CONFIG}), zero-shot from each one's 10 reference latencies. One error "
        f"evaluation took {o['error_s_per_evaluation']} s on average ({o['error_evaluations']} "
        f"evaluated in this run, {o['error_evaluations_from_disk_cache']} read from the cache).",
        "",
        f"Per configuration each objective is normalised over {res['bounds_samples']} uniformly "
        "sampled architectures (the same for all), reference point 1; the reference front is "
        "the non-dominated union of every method's points, an NSGA-II run of "
        f"{res['reference_evaluations']} evaluations on that configuration (seed "
        f"{res['reference_seed']}) and the pool of all {res['pool_size']} architectures whose "
        "error was evaluated for any configuration (scored on this one's latency). "
        f"`hypernet(B={h['queries']})`: ONE run for all targets ({len(h['train_targets'])} "
        f"training targets: the configurations other than {TEST_CONFIG}"
        f"{' and this CPU' if res.get('cpu') else ''}; {h['queries_used']} error queries in "
        f"total, {h['steps']} steps), fronts of up to {h['points']} points (refined by "
        f"NSGA-II on the predicted objectives, {h['front_evaluations']} evaluations, no oracle "
        f"query) scored on the oracles; {TEST_CONFIG} is zero-shot (predictor and hypernetwork never saw it). "
        "Baselines: budget = error evaluations per configuration; `random@B` is one uniform "
        "sample shared by all configurations; cells are mean (min) over seeds "
        f"(random {res['settings']['random_seeds']}, NSGA-II {res['settings']['nsga_seeds']}).",
        "",
    ]
    head = ["configuration", *methods, "pool", "ref-run", "ref points"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for dev in res["devices"]:
        c = hv[dev]
        name = f"{dev} (zero-shot)" if dev == TEST_CONFIG else dev
        row = [name]
        row += [f"{_fmt(c[m]['mean'])} ({_fmt(c[m]['min'])})" for m in methods]
        row += [_fmt(c[POOL]["mean"]), _fmt(c["reference"]["run_hv_ratio"])]
        row.append(str(c["reference"]["points"]))
        lines.append("| " + " | ".join(row) + " |")
    sm = res["summary"]
    row = ["**mean**"]
    row += [f"**{_fmt(sm[m]['mean'])}** ({_fmt(sm[m]['min'])})" for m in methods]
    row += [_fmt(sm[POOL]["mean"]), _fmt(sm["reference-run"]["mean"]), ""]
    lines += ["| " + " | ".join(row) + " |", ""]
    lines += [
        "New error evaluations by method: "
        + ", ".join(f"{m} {n}" for m, n in o["new_error_evaluations_by_method"].items())
        + f"; reference runs {o['reference_error_evaluations']}; scoring the hypernetwork's "
        f"fronts {h['front_scoring_error_evaluations']}. Hypernetwork front sizes: "
        + ", ".join(f"{d} {n}" for d, n in h["front_sizes"].items())
        + ".",
        "",
    ]
    cpu = res.get("cpu")
    if cpu:
        lines += [
            f"## This CPU, measured ({cpu['device']})",
            "",
            "Each architecture measured with ONNX Runtime through the project's profiler "
            "(`profile_device`, the space's default repetitions) after the search; latency "
            "predicted zero-shot from the CPU's 10 reference latencies measured before it. "
            "The references measured again at the end took "
            f"{cpu['reference_remeasured_over_start_median']}x (median) their latency at the "
            "start (the machine is shared: the CVs below say how noisy each median is).",
            "",
        ]
        for part, title in (
            ("sweep", f"the hypernetwork's argmax for {cpu['preferences']} preferences"),
            ("front", "the CPU's front as `hilnas front` reads it (refined)"),
        ):
            f = cpu[part]
            lines += [
                f"**{part}** ({title}; {f['distinct_architectures']} distinct): "
                "Spearman(weight on error, measured latency) "
                f"**{f['spearman_error_weight_vs_measured_latency']}**; Spearman(predicted, "
                f"measured latency) {f['spearman_predicted_vs_measured_latency']}, within "
                f"+-10 %: {f['within10_predicted_latency']}; Spearman(supernet val error, "
                f"measured latency) {f['spearman_val_error_vs_measured_latency']}.",
                "",
                "| weight on error | measured ms (CV) | predicted ms | val error % | "
                "test error % | architecture |",
                "|---:|---:|---:|---:|---:|---|",
            ]
            for p in f["points"]:
                lines.append(
                    f"| {p['weight_on_error']:.2f} | {p['measured_latency_ms']} "
                    f"({p['measured_cv']}) | {p['predicted_latency_ms']:.2f} | "
                    f"{p['supernet_val_error_pct']:.1f} | {p['supernet_test_error_pct']:.1f} | "
                    f"`{p['arch']}` |"
                )
            lines.append("")
    w = res["wall_time"]
    tr = w["supernet_training"]
    lines += ["## Wall time", "", "| stage | time | note |", "|---|---:|---|"]
    if w.get("export_per_subnet", {}).get("n"):
        e, ew = w["export_per_subnet"], w["export_warm_per_subnet"]
        lines.append(
            f"| export per subnet (direct ONNX builder) | {ew.get('median_s', e['median_s'])} s "
            f"median | {e['n']} subnets, first {e['first_s']} s, max {e['max_s']} s |"
        )
        p, sc = w["profile_per_subnet"], w["session_create_per_subnet"]
        lines.append(
            f"| profiling per subnet (ONNX Runtime, CPU) | {p['median_s']} s median | "
            f"session creation {sc['median_s']} s median; {p['n']} subnets |"
        )
    if "train_s" in tr:
        when = "this run" if tr.get("trained_now") else f"cached, trained {tr.get('date')}"
        lines.append(
            f"| supernet training (default settings) | {tr['train_s']} s | {tr['epochs']} "
            f"epochs x {tr['per_epoch_s']} s; {when}; load {tr.get('load_before')} -> "
            f"{tr.get('load_after')} |"
        )
    sr = w["search"]
    lines.append(
        f"| search (one hypernetwork run, {sr['targets']} targets) | {sr['total_s']} s | "
        f"error queries {sr['error_queries_s']} s, hypernetwork and cost models "
        f"{sr['hypernetwork_and_cost_models_s']} s |"
    )
    lines.append(f"| fronts of {len(res['devices'])} configurations | {sr['fronts_s']} s | |")
    for m, secs in res["wall_s"].items():
        if m != POOL:
            lines.append(f"| {m} (all configurations and seeds) | {secs} s | |")
    lines.append(f"| normalisation sample | {res['bounds_wall_s']} s | |")
    if "reference_runs_s" in w:
        lines.append(
            f"| reference NSGA-II runs ({res['reference_evaluations']} evaluations x "
            f"{len(res['devices'])}) | {w['reference_runs_s']} s | |"
        )
    lines.append(f"| reference fronts and scoring | {res['scoring_wall_s']} s | |")
    if "profile_cpu_references_s" in w:
        lines.append(f"| profiling the CPU's 10 references | {w['profile_cpu_references_s']} s | |")
    lines.append("")
    return "\n".join(lines)


def write_results(res: dict[str, Any], out_dir: Path, stem: str) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    jp, mp = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    jp.write_text(json.dumps(res, indent=1) + "\n")
    mp.write_text(markdown(res))
    return jp, mp


def benchmark(
    settings: Settings,
    *,
    cache_dir: Path | None,
    quick: bool = False,
    supernet: Any = None,
    predictor: Any = None,
) -> dict[str, Any]:
    """:func:`run` in a fresh temporary ``HILNAS_HOME`` (the CPU's store and ONNX cache start
    cold), one BLAS thread, with the machine, the load before and after and the total time
    recorded under ``settings``."""
    load_before = _load()
    t0 = time.perf_counter()
    with _single_thread_blas(), tempfile.TemporaryDirectory(prefix="hilnas-search-ofa-") as tmp:
        old_home = os.environ.get("HILNAS_HOME")
        os.environ["HILNAS_HOME"] = tmp
        try:
            res = run(
                settings,
                cache_dir=cache_dir,
                db=f"sqlite:///{Path(tmp) / 'hilnas.db'}",
                supernet=supernet,
                predictor=predictor,
            )
        finally:
            if old_home is None:
                os.environ.pop("HILNAS_HOME", None)
            else:
                os.environ["HILNAS_HOME"] = old_home
    res["settings"] = {
        "quick": bool(quick),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} ({platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]})",
        "load_before": load_before,
        "load_after": _load(),
        "total_wall_s": round(time.perf_counter() - t0, 1),
        "torch_threads": 1,
        "blas_threads": 1,
        "cache_dir": None if cache_dir is None else str(cache_dir),
        "random_seeds": list(settings.random_seeds),
        "nsga_seeds": list(settings.nsga_seeds),
        "budgets": list(settings.budgets),
    }
    return res


# ----------------------------------------------------------------------------- CLI
def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise SystemExit(f"expected comma-separated integers, got {text!r}") from None


def main(argv: Sequence[str] | None = None) -> int:
    from hilnas.pipeline.home import home_dir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", default="", help="comma-separated OFA configurations (all 9)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 3 configurations, small")
    ap.add_argument("--no-cpu", action="store_true", help="leave out the local CPU")
    ap.add_argument("--random-seeds", default="0,1,2")
    ap.add_argument("--nsga-seeds", default="0")
    ap.add_argument("--budgets", default="100,1000", help="baseline budgets (error evaluations)")
    ap.add_argument("--bounds-samples", type=int, default=None)
    ap.add_argument("--reference-evaluations", type=int, default=None)
    ap.add_argument("--queries", type=int, default=None, help="hypernetwork: error queries B")
    ap.add_argument("--steps", type=int, default=None, help="hypernetwork: training steps")
    ap.add_argument("--points", type=int, default=12, help="front points per configuration")
    ap.add_argument("--sweep", type=int, default=11, help="CPU: preferences measured")
    ap.add_argument(
        "--front-evaluations",
        type=int,
        default=2000,
        help="hypernetwork fronts: NSGA-II evaluations of predicted objectives (0: greedy walk)",
    )
    ap.add_argument("--reps", type=int, default=None, help="CPU: timed runs (profiler default)")
    ap.add_argument("--warmup", type=int, default=None, help="CPU: warm-up runs (default)")
    ap.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    ap.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="trained supernet, errors, predictor, reference runs (default "
        "$HILNAS_HOME/cache/search_ofa)",
    )
    ap.add_argument("--no-cache", action="store_true", help="train and evaluate everything afresh")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    quick = bool(args.quick)
    st = Settings(
        devices=tuple(d for d in args.devices.split(",") if d)
        or (("titan_rtx_64", "titan_rtx_1", "titan_xp_32") if quick else ()),
        random_seeds=_ints(args.random_seeds),
        nsga_seeds=_ints(args.nsga_seeds),
        budgets=_ints(args.budgets),
        bounds_samples=args.bounds_samples or (60 if quick else 200),
        reference_evaluations=args.reference_evaluations or (60 if quick else 100),
        queries=args.queries or (60 if quick else 300),
        steps=args.steps or (100 if quick else 600),
        rounds=2 if quick else 3,
        points=args.points,
        front_evaluations=args.front_evaluations,
        cpu=not args.no_cpu,
        sweep=args.sweep,
        reps=args.reps,
        warmup=args.warmup,
    )
    if quick:
        st.budgets = _ints(args.budgets) if args.budgets != "100,1000" else (30,)
    cache = None if args.no_cache else (args.cache_dir or home_dir() / "cache" / "search_ofa")
    res = benchmark(st, cache_dir=cache, quick=quick)
    stem = "search_ofa_quick" if quick else "search_ofa"
    jp, mp = write_results(res, args.out_dir, stem)
    print(markdown(res))
    print(f"wrote {jp} and {mp}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
