"""Benchmark of the profiling pipeline on the local CPU.

Run: ``python -m hilnas.pipeline.benchmarks.profiling``.

For ``--n`` (50) random NB201 subnets, one intra-op thread, batch 1, through the same
:func:`~hilnas.pipeline.profiling.profile_device` that ``hilnas profile`` runs (export, the
isolated ONNX Runtime worker, one store commit per measurement), each pass with a fresh store:

1. *cold*: an empty ONNX cache, so every subnet is exported;
2. *warm A* and *warm B*: the cache filled by pass 1; two independent passes (each its own
   profiler worker process).

Figures:
- per subnet, wall time split into export, session creation, warm-up runs, timed inference,
  the store commit and the rest (worker IPC, statistics); overhead ratio = wall time / pure
  timed inference time, summed over the subnets (``per-subnet``) and for the whole pass
  including the worker's start and the planning (``pass``). Target: warm ratio <= 1.5.
- repeatability between warm A and warm B: Spearman rank correlation (target >= 0.99) and the
  median relative difference |a - b| / ((a + b) / 2) (target <= 3 %).
- context: Spearman of the local medians against the gold_6226 and silver_4114 latency columns
  of the shipped NAS-Bench-201 reference data (other hardware, other runtime; no target).

Prints a table and writes ``results/profiling.json`` and ``results/profiling.md`` beside this
file (``--out-dir`` to change). Timings depend on what else runs on the machine: the load average
before and after is recorded with the figures.

``--interference`` runs the measurement-quality benchmark instead
(``results/profiling_interference.{json,md}``): a reference pass that fills the export cache,
a warm reference pass, and a warm pass beside a competing busy process (started by the
benchmark, not a child of it) that is switched on and off (``--duty-on`` / ``--duty-off``
seconds, SIGCONT / SIGSTOP) so that part of the models meet it. Figures: how many models each
pass flagged and why, how many were re-measured, and the repeatability (Spearman, median
relative difference) of the loaded pass against the warm reference over all models and over
the models the loaded pass left unflagged.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

RESULTS_DIR = Path(__file__).with_name("results")
TARGETS = {"warm_overhead_ratio_max": 1.5, "spearman_min": 0.99, "median_rel_diff_max": 0.03}
CONTEXT_DEVICES = ("gold_6226", "silver_4114")
PHASES = ("export", "session_create", "warmup", "timed_inference", "store", "rest", "wall")
PHASE_LABELS = ("export", "session", "warm-up", "timed", "store", "rest", "wall")


# ----------------------------------------------------------------------------------------------
# statistics
# ----------------------------------------------------------------------------------------------
def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=float)
    sorted_x = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(a: Any, b: Any) -> float:
    """Spearman rank correlation of two equally long sequences (NaN if undefined)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(x) != len(y) or len(x) < 2:
        raise ValueError("spearman needs two sequences of the same length >= 2")
    rx, ry = _ranks(x), _ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def median_relative_difference(a: Any, b: Any) -> float:
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.median(np.abs(x - y) / ((x + y) / 2)))


# ----------------------------------------------------------------------------------------------
# passes
# ----------------------------------------------------------------------------------------------
def _pass_summary(name: str, report: Any) -> dict[str, Any]:
    rows = report.rows
    ok = [r for r in rows if r.status == "ok"]
    export = sum(r.export_s for r in rows)
    session = sum(r.session_create_s for r in rows)
    warmup = sum(r.warmup_s or 0.0 for r in rows)
    timed = sum(r.timed_s for r in rows)
    store = sum(r.store_s for r in rows)
    wall_rows = sum(r.wall_s for r in rows)
    n = max(len(rows), 1)
    return {
        "name": name,
        "subnets": len(rows),
        "ok": len(ok),
        "failed": len(rows) - len(ok),
        "exported_now": sum(1 for r in rows if r.export_cached is False),
        "per_subnet_ms": {
            "export": 1e3 * export / n,
            "session_create": 1e3 * session / n,
            "warmup": 1e3 * warmup / n,
            "timed_inference": 1e3 * timed / n,
            "store": 1e3 * store / n,
            "rest": 1e3 * (wall_rows - export - session - warmup - timed - store) / n,
            "wall": 1e3 * wall_rows / n,
        },
        "totals_s": {
            "export": export,
            "session_create": session,
            "warmup": warmup,
            "timed_inference": timed,
            "store": store,
            "subnet_wall": wall_rows,
            "pass_wall": report.wall_s,
        },
        "overhead_ratio_per_subnet": wall_rows / timed if timed else None,
        "overhead_ratio_pass": report.wall_s / timed if timed else None,
        "flagged": report.flagged,
        "quality_counts": report.quality_counts,
        "latency_ms_median": {r.arch: r.latency_ms_median for r in ok},
        "median_cv": float(np.median([r.latency_ms_cv for r in ok if r.latency_ms_cv is not None]))
        if ok
        else None,
    }


def _machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "logical_cpus": os.cpu_count(),
    }
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    for mod in ("onnxruntime", "onnx", "torch"):
        try:
            info[f"{mod}_version"] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            info[f"{mod}_version"] = None
    return info


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


def run_benchmark(
    *,
    n: int = 50,
    reps: int = 30,
    warmup: int = 5,
    seed: int = 0,
    threads: int = 1,
    device: str = "cpu",
    progress: Any = None,
) -> dict[str, Any]:
    """Run the three passes and return every figure as a JSON-ready dict."""
    from hilnas.devices import get_device
    from hilnas.pipeline.export import OnnxExporter
    from hilnas.pipeline.profiling import profile_device
    from hilnas.pipeline.refdata import load_nb201
    from hilnas.pipeline.spaces import get_space
    from hilnas.pipeline.store import MeasurementStore

    dev = get_device(device)
    space = get_space("nb201")
    started = datetime.now(timezone.utc)
    load_before = _load()
    passes: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="hilnas-bench-") as tmp:
        exporter = OnnxExporter(cache_dir=Path(tmp) / "onnx")
        for name in ("cold", "warm_a", "warm_b"):
            if progress:
                progress(f"pass {name}: {n} subnets")
            with MeasurementStore(f"sqlite:///{Path(tmp) / f'{name}.db'}") as store:
                report = profile_device(
                    dev.id,
                    archs=n,
                    reps=reps,
                    warmup=warmup,
                    seed=seed,
                    threads=threads,
                    batch_size=1,
                    store=store,
                    exporter=exporter,
                    references=False,
                )
            passes[name] = _pass_summary(name, report)
    load_after = _load()

    a, b = passes["warm_a"]["latency_ms_median"], passes["warm_b"]["latency_ms_median"]
    common = sorted(set(a) & set(b))
    la, lb = [a[k] for k in common], [b[k] for k in common]
    ref = load_nb201()
    idx = [space.index(space.parse(k)) for k in common]
    local = [(x + y) / 2 for x, y in zip(la, lb, strict=True)]
    context = {d: spearman(local, ref.latency(d)[idx]) for d in CONTEXT_DEVICES}
    cold_vs_warm = sorted(set(passes["cold"]["latency_ms_median"]) & set(a))

    result = {
        "benchmark": "profiling",
        "started_at": started.isoformat(timespec="seconds"),
        "settings": {
            "subnets": n,
            "reps": reps,
            "warmup": warmup,
            "seed": seed,
            "threads": threads,
            "batch_size": 1,
            "space": "nb201",
            "model_config": space.default_model_config().key(),
            "device_id": dev.id,
            "device_name": dev.name,
        },
        "machine": {**_machine(), "load_avg_before": load_before, "load_avg_after": load_after},
        "passes": {
            k: {kk: vv for kk, vv in v.items() if kk != "latency_ms_median"}
            for k, v in passes.items()
        },
        "overhead": {
            "cold_per_subnet": passes["cold"]["overhead_ratio_per_subnet"],
            "cold_pass": passes["cold"]["overhead_ratio_pass"],
            "warm_per_subnet": passes["warm_a"]["overhead_ratio_per_subnet"],
            "warm_pass": passes["warm_a"]["overhead_ratio_pass"],
            "warm_b_per_subnet": passes["warm_b"]["overhead_ratio_per_subnet"],
            "warm_b_pass": passes["warm_b"]["overhead_ratio_pass"],
        },
        "repeatability": {
            "subnets": len(common),
            "spearman": spearman(la, lb) if len(common) > 1 else None,
            "median_rel_diff": median_relative_difference(la, lb) if common else None,
            "max_rel_diff": float(np.max(np.abs(np.subtract(la, lb)) / ((np.add(la, lb)) / 2)))
            if common
            else None,
            "spearman_cold_vs_warm_a": spearman(
                [passes["cold"]["latency_ms_median"][k] for k in cold_vs_warm],
                [a[k] for k in cold_vs_warm],
            )
            if len(cold_vs_warm) > 1
            else None,
        },
        "context_spearman": context,
        "targets": TARGETS,
        "latency_ms_median": {
            "warm_a": a,
            "warm_b": b,
            "cold": passes["cold"]["latency_ms_median"],
        },
    }
    rep = result["repeatability"]
    result["meets_targets"] = {
        "warm_overhead_ratio": result["overhead"]["warm_per_subnet"] is not None
        and result["overhead"]["warm_per_subnet"] <= TARGETS["warm_overhead_ratio_max"],
        "spearman": rep["spearman"] is not None and rep["spearman"] >= TARGETS["spearman_min"],
        "median_rel_diff": rep["median_rel_diff"] is not None
        and rep["median_rel_diff"] <= TARGETS["median_rel_diff_max"],
    }
    return result


# ----------------------------------------------------------------------------------------------
# output
# ----------------------------------------------------------------------------------------------
def _f(x: Any, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def _pct(x: Any) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def _load_note(m: dict[str, Any]) -> list[str]:
    load, cpus = m.get("load_avg_before"), m.get("logical_cpus") or 1
    if not load or load[0] < 0.5 * cpus:
        return []
    return [
        "",
        f"**Shared machine:** other work kept the load average at {load[0]} on {cpus} logical "
        "CPUs during this run, so timings, repeatability and the overhead ratio vary from run to "
        "run; rerun on an idle machine for clean figures.",
    ]


def to_markdown(r: dict[str, Any]) -> str:
    s, m = r["settings"], r["machine"]
    lines = [
        "# Profiling benchmark",
        "",
        f"{s['subnets']} random NB201 subnets ({s['model_config']}), {s['device_name']} "
        f"(`{s['device_id']}`), {s['threads']} intra-op thread, batch 1, warm-up {s['warmup']}, "
        f"{s['reps']} timed repetitions; ONNX Runtime {m.get('onnxruntime_version')}, "
        f"torch {m.get('torch_version')}. Run {r['started_at']}; load average before "
        f"{m.get('load_avg_before')}, after {m.get('load_avg_after')} on {m.get('logical_cpus')} "
        "logical CPUs.",
        *_load_note(m),
        "",
        "Reproduce: `python -m hilnas.pipeline.benchmarks.profiling`.",
        "",
        "## Wall time per subnet (ms)",
        "",
        "| pass | exported now | export | session creation | warm-up runs | timed inference | "
        "store commit | rest | wall | overhead (per subnet) | overhead (whole pass) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, p in r["passes"].items():
        ps = p["per_subnet_ms"]
        cells = [ps[k] for k in PHASES]
        lines.append(
            f"| {name} | {p['exported_now']} | "
            + " | ".join(_f(c, ".2f") for c in cells)
            + f" | {_f(p['overhead_ratio_per_subnet'], '.2f')} | "
            f"{_f(p['overhead_ratio_pass'], '.2f')} |"
        )
    rep, t, ok, oh = r["repeatability"], r["targets"], r["meets_targets"], r["overhead"]
    lines += [
        "",
        "`rest` = the worker round trip (IPC, statistics, memory and energy readings) and the "
        "cache lookup bookkeeping. Overhead = wall time / pure timed inference time; per subnet "
        "sums the subnets' wall time, whole pass adds the profiler worker's start and the "
        "planning.",
        "",
        "## Targets",
        "",
        "| figure | value | target | met |",
        "|---|---:|---:|:---:|",
        f"| overhead ratio, warm cache (per subnet) | {_f(oh['warm_per_subnet'], '.2f')} | "
        f"<= {t['warm_overhead_ratio_max']} | {'yes' if ok['warm_overhead_ratio'] else 'no'} |",
        f"| overhead ratio, cold cache (per subnet) | {_f(oh['cold_per_subnet'], '.2f')} | "
        "(reported) | |",
        f"| Spearman, warm A vs warm B | {_f(rep['spearman'], '.4f')} | >= {t['spearman_min']} | "
        f"{'yes' if ok['spearman'] else 'no'} |",
        f"| median relative difference, A vs B | {_pct(rep['median_rel_diff'])} % | "
        f"<= {100 * t['median_rel_diff_max']:.0f} % | {'yes' if ok['median_rel_diff'] else 'no'} |",
        "",
        f"Max relative difference A vs B: {_pct(rep['max_rel_diff'])} %; "
        f"Spearman cold vs warm A: {_f(rep['spearman_cold_vs_warm_a'], '.4f')}.",
        "",
        "## Context: rank agreement with other hardware (no target)",
        "",
        "| reference device (NAS-Bench-201 latency data) | Spearman vs local CPU |",
        "|---|---:|",
    ]
    for dev, rho in r["context_spearman"].items():
        lines.append(f"| {dev} | {_f(rho, '.3f')} |")
    lines.append("")
    return "\n".join(lines)


def print_table(r: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="profiling benchmark: wall time per subnet (ms)", title_justify="left")
    for col in ("pass", "exported", *PHASE_LABELS, "ratio/subnet", "ratio/pass"):
        table.add_column(col, justify="right")
    for name, p in r["passes"].items():
        ps = p["per_subnet_ms"]
        table.add_row(
            name,
            str(p["exported_now"]),
            *(_f(ps[k], ".2f") for k in PHASES),
            _f(p["overhead_ratio_per_subnet"], ".2f"),
            _f(p["overhead_ratio_pass"], ".2f"),
        )
    console.print(table)
    rep = r["repeatability"]
    console.print(
        f"repeatability (warm A vs B, {rep['subnets']} subnets): "
        f"Spearman {_f(rep['spearman'], '.4f')}, median rel. diff {_pct(rep['median_rel_diff'])} %"
    )
    console.print(
        "context Spearman: "
        + ", ".join(f"{d} {_f(v, '.3f')}" for d, v in r["context_spearman"].items())
    )
    console.print(
        f"targets met: {r['meets_targets']}; load avg before/after "
        f"{r['machine']['load_avg_before']} / {r['machine']['load_avg_after']}"
    )


# ----------------------------------------------------------------------------------------------
# measurement quality under a competing process
# ----------------------------------------------------------------------------------------------
class _Competitor:
    """A busy Python loop started through a shell that exits at once (so the loop is not a
    descendant of this process: the quality probe counts it as another process), switched on
    and off by a thread (SIGCONT / SIGSTOP) and killed by its pid on exit."""

    def __init__(self, on_s: float, off_s: float) -> None:
        import subprocess
        import sys
        import threading

        out = subprocess.run(
            ["sh", "-c", f'"{sys.executable}" -c "while True: pass" >/dev/null 2>&1 & echo $!'],
            capture_output=True,
            text=True,
            check=True,
        )
        self.pid = int(out.stdout.strip())
        self.on_s, self.off_s = on_s, off_s
        self._stop = threading.Event()
        self.on_time = 0.0
        self.off_time = 0.0
        self.switches: list[tuple[float, bool]] = []  # (UNIX time, on after the switch)
        self._thread = threading.Thread(target=self._cycle, daemon=True)

    def _signal(self, sig: int) -> None:
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:  # pragma: no cover - it died
            self._stop.set()

    def _cycle(self) -> None:
        import signal

        while not self._stop.is_set():
            self._signal(signal.SIGCONT)
            self.switches.append((time.time(), True))
            t0 = time.monotonic()
            self._stop.wait(self.on_s)
            self.on_time += time.monotonic() - t0
            if self.off_s > 0 and not self._stop.is_set():
                self._signal(signal.SIGSTOP)
                self.switches.append((time.time(), False))
                t0 = time.monotonic()
                self._stop.wait(self.off_s)
                self.off_time += time.monotonic() - t0

    def state_during(self, start: float, end: float) -> str:
        """``on``, ``off`` or ``mixed``: the competitor's state over ``[start, end]`` (UNIX
        times)."""
        states = set()
        current = None
        for t, on in self.switches:
            if t <= start:
                current = on
            elif t < end:
                states.add(on)
        if current is not None:
            states.add(current)
        if states == {True}:
            return "on"
        if states == {False}:
            return "off"
        return "mixed"

    def __enter__(self) -> _Competitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        import signal

        self._stop.set()
        self._thread.join(timeout=5)
        self._signal(signal.SIGKILL)


def _quality_of(report: Any) -> dict[str, Any]:
    ok = report.ok_rows
    return {
        "ok": len(ok),
        "flagged": report.flagged,
        "quality_counts": report.quality_counts,
        "flag_reasons": report.flag_reasons(),
        "remeasured": report.remeasured,
        "remeasure_improved": report.remeasure_improved,
        "sentinel_checks": len(report.sentinel_checks),
        "max_sentinel_drift": report.max_sentinel_drift,
        "summary": report.quality_summary(),
        "flagged_archs": sorted(r.arch for r in ok if r.flagged),
    }


def _agreement(a: dict[str, float], b: dict[str, float], keys: list[str]) -> dict[str, Any]:
    if len(keys) < 2:
        return {"subnets": len(keys), "spearman": None, "median_rel_diff": None}
    la, lb = [a[k] for k in keys], [b[k] for k in keys]
    return {
        "subnets": len(keys),
        "spearman": spearman(la, lb),
        "median_rel_diff": median_relative_difference(la, lb),
    }


def _probe_cost_ms(samples: int = 500) -> float:
    """Milliseconds per CPU sample of the quality probe (two are taken per model)."""
    from hilnas.profilers.quality import CpuProbe

    probe = CpuProbe(lambda: [None])
    t0 = time.perf_counter()
    for _ in range(samples):
        probe.sample()
    return 1e3 * (time.perf_counter() - t0) / samples


def run_interference_benchmark(
    *,
    n: int = 50,
    reps: int = 30,
    warmup: int = 5,
    seed: int = 0,
    threads: int = 1,
    device: str = "cpu",
    duty_on_s: float = 1.0,
    duty_off_s: float = 1.0,
    progress: Any = None,
) -> dict[str, Any]:
    """Reference, warm reference and loaded passes (see the module docstring); every figure as
    a JSON-ready dict."""
    from hilnas.devices import get_device
    from hilnas.pipeline.export import OnnxExporter
    from hilnas.pipeline.profiling import profile_device
    from hilnas.pipeline.spaces import get_space
    from hilnas.pipeline.store import MeasurementStore
    from hilnas.profilers.quality import DEFAULT_THRESHOLDS, usable_cores

    dev = get_device(device)
    space = get_space("nb201")
    started = datetime.now(timezone.utc)
    load_before = _load()
    probe_ms = _probe_cost_ms()
    reports: dict[str, Any] = {}
    competitor_times: dict[str, float] = {}
    evidence: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="hilnas-bench-") as tmp:
        exporter = OnnxExporter(cache_dir=Path(tmp) / "onnx")
        for name in ("reference", "warm_reference", "loaded"):
            if progress:
                progress(f"pass {name}: {n} subnets")
            kwargs = dict(
                archs=n,
                reps=reps,
                warmup=warmup,
                seed=seed,
                threads=threads,
                batch_size=1,
                exporter=exporter,
                references=False,
            )
            with MeasurementStore(f"sqlite:///{Path(tmp) / f'{name}.db'}") as store:
                if name == "loaded":
                    with _Competitor(duty_on_s, duty_off_s) as comp:
                        reports[name] = profile_device(dev.id, store=store, **kwargs)
                    competitor_times = {"on_s": comp.on_time, "off_s": comp.off_time}
                    for rec in store.measurements(status="ok"):
                        start = datetime.fromisoformat(rec.measurement.started_at).timestamp()
                        end = datetime.fromisoformat(rec.measurement.finished_at).timestamp()
                        evidence[rec.key.arch] = {
                            "competitor": comp.state_during(start, end),
                            "other_cpu_cores": rec.other_cpu_cores,
                            "quality": rec.quality,
                        }
                else:
                    reports[name] = profile_device(dev.id, store=store, **kwargs)
    load_after = _load()

    med = {k: {r.arch: r.latency_ms_median for r in v.ok_rows} for k, v in reports.items()}
    ref, loaded = med["warm_reference"], med["loaded"]
    common = sorted(set(ref) & set(loaded))
    flagged_loaded = set(_quality_of(reports["loaded"])["flagged_archs"])
    flagged_ref = set(_quality_of(reports["warm_reference"])["flagged_archs"])
    clean = [k for k in common if k not in flagged_loaded]
    clean_both = [k for k in clean if k not in flagged_ref]
    flagged_only = [k for k in common if k in flagged_loaded]
    quiet_pair = sorted(set(med["reference"]) & set(ref))
    by_state: dict[str, Any] = {}
    for state in ("on", "off", "mixed"):
        archs = [a for a in common if evidence.get(a, {}).get("competitor") == state]
        cores = [
            evidence[a]["other_cpu_cores"]
            for a in archs
            if evidence[a]["other_cpu_cores"] is not None
        ]
        by_state[state] = {
            **_agreement(loaded, ref, archs),
            "flagged": sum(1 for a in archs if a in flagged_loaded),
            "mean_other_cpu_cores": float(np.mean(cores)) if cores else None,
        }
    return {
        "benchmark": "profiling_interference",
        "started_at": started.isoformat(timespec="seconds"),
        "settings": {
            "subnets": n,
            "reps": reps,
            "warmup": warmup,
            "seed": seed,
            "threads": threads,
            "space": "nb201",
            "model_config": space.default_model_config().key(),
            "device_id": dev.id,
            "device_name": dev.name,
            "usable_cores": usable_cores(),
            "competitor_duty_s": {"on": duty_on_s, "off": duty_off_s},
            "thresholds": asdict(DEFAULT_THRESHOLDS),
        },
        "machine": {**_machine(), "load_avg_before": load_before, "load_avg_after": load_after},
        "competitor_time_s": competitor_times,
        "probe_ms_per_sample": probe_ms,
        "passes": {k: {**_quality_of(v), "wall_s": v.wall_s} for k, v in reports.items()},
        "repeatability_vs_warm_reference": {
            "reference_pass (no competitor)": _agreement(med["reference"], ref, quiet_pair),
            "loaded, all": _agreement(loaded, ref, common),
            "loaded, unflagged": _agreement(loaded, ref, clean),
            "loaded, unflagged in both": _agreement(loaded, ref, clean_both),
            "loaded, flagged only": _agreement(loaded, ref, flagged_only),
        },
        "loaded_by_competitor_state": by_state,
        "loaded_evidence": evidence,
        "latency_ms_median": med,
    }


def interference_markdown(r: dict[str, Any]) -> str:
    s, m = r["settings"], r["machine"]
    lines = [
        "# Profiling benchmark: measurement quality under a competing process",
        "",
        f"{s['subnets']} random NB201 subnets ({s['model_config']}), {s['device_name']} "
        f"(`{s['device_id']}`, {s['usable_cores']} usable cores), {s['threads']} intra-op "
        f"thread, warm-up {s['warmup']}, {s['reps']} timed repetitions. Run {r['started_at']}; "
        f"load average before {m.get('load_avg_before')}, after {m.get('load_avg_after')}.",
        *_load_note(m),
        "",
        "Passes: `reference` (fills the export cache), `warm_reference`, and `loaded` (warm, "
        "beside a busy Python loop switched on for "
        f"{s['competitor_duty_s']['on']} s and off for {s['competitor_duty_s']['off']} s in "
        f"turn; on {r['competitor_time_s'].get('on_s', 0):.1f} s, off "
        f"{r['competitor_time_s'].get('off_s', 0):.1f} s in all). Default quality thresholds.",
        "",
        "Reproduce: `python -m hilnas.pipeline.benchmarks.profiling --interference`.",
        "",
        f"The quality probe costs {r['probe_ms_per_sample']:.3f} ms per CPU sample (two per "
        "model); each sentinel check is one extra measurement of the first reference "
        "architecture (not stored).",
        "",
        "## Flags per pass",
        "",
        "| pass | ok | flagged | by quality | reasons | re-measured (replaced) | sentinel "
        "checks | max sentinel drift | pass wall s |",
        "|---|---:|---:|---|---|---:|---:|---:|---:|",
    ]
    for name, p in r["passes"].items():
        by = ", ".join(f"{k} {v}" for k, v in sorted(p["quality_counts"].items()))
        why = ", ".join(f"{k} {v}" for k, v in sorted(p["flag_reasons"].items())) or "-"
        lines.append(
            f"| {name} | {p['ok']} | {p['flagged']} | {by} | {why} | {p['remeasured']} "
            f"({p['remeasure_improved']}) | {p['sentinel_checks']} | "
            f"{_pct(p['max_sentinel_drift'])} % | {p['wall_s']:.1f} |"
        )
    lines += [
        "",
        "## Repeatability against the warm reference pass",
        "",
        "| subset | subnets | Spearman | median relative difference |",
        "|---|---:|---:|---:|",
    ]
    for name, a in r["repeatability_vs_warm_reference"].items():
        lines.append(
            f"| {name} | {a['subnets']} | {_f(a['spearman'], '.4f')} | "
            f"{_pct(a['median_rel_diff'])} % |"
        )
    lines += [
        "",
        "## Loaded pass by the competitor's state while each model was measured",
        "",
        "Other processes' CPU use is what the quality probe saw (mean over the models); the "
        "probe judges at least a 0.5 s window, so a model measured right after a switch is "
        "partly judged on the state before it.",
        "",
        "| competitor | models | flagged | mean other-process cores | Spearman vs warm "
        "reference | median relative difference |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for state, a in r["loaded_by_competitor_state"].items():
        lines.append(
            f"| {state} | {a['subnets']} | {a['flagged']} | "
            f"{_f(a['mean_other_cpu_cores'], '.2f')} | {_f(a['spearman'], '.4f')} | "
            f"{_pct(a['median_rel_diff'])} % |"
        )
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50, help="random NB201 subnets (default 50)")
    parser.add_argument("--reps", type=int, default=30, help="timed repetitions (default 30)")
    parser.add_argument("--warmup", type=int, default=5, help="warm-up runs (default 5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--no-save", action="store_true", help="print only")
    parser.add_argument(
        "--interference",
        action="store_true",
        help="run the measurement-quality benchmark beside a competing process instead",
    )
    parser.add_argument("--duty-on", type=float, default=1.0, help="competitor on, seconds")
    parser.add_argument("--duty-off", type=float, default=1.0, help="competitor off, seconds")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    if args.interference:
        result = run_interference_benchmark(
            n=args.n,
            reps=args.reps,
            warmup=args.warmup,
            seed=args.seed,
            threads=args.threads,
            device=args.device,
            duty_on_s=args.duty_on,
            duty_off_s=args.duty_off,
            progress=lambda msg: print(msg, flush=True),
        )
        result["benchmark_wall_s"] = time.perf_counter() - t0
        text = interference_markdown(result)
        print(text)
        _save(args, "profiling_interference", result, text)
        return 0
    result = run_benchmark(
        n=args.n,
        reps=args.reps,
        warmup=args.warmup,
        seed=args.seed,
        threads=args.threads,
        device=args.device,
        progress=lambda msg: print(msg, flush=True),
    )
    result["benchmark_wall_s"] = time.perf_counter() - t0
    print_table(result)
    _save(args, "profiling", result, to_markdown(result))
    return 0


def _save(args: argparse.Namespace, stem: str, result: dict, text: str) -> None:
    """Write ``<stem>.json`` and ``<stem>.md`` into ``--out-dir`` unless ``--no-save``."""
    if args.no_save:
        return
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out_dir / f"{stem}.md").write_text(text)
    print(f"saved {args.out_dir / (stem + '.json')} and .md")


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
