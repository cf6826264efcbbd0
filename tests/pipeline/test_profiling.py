"""profile_device on the real stack: the local CPU from discovery, the real ONNX exporter, the real
ONNX Runtime profiler (its isolated worker process) and a real SQLite store.

A tiny model (C=4, N=1, 8x8 input), warm-up 1 and 3 repetitions keep each run well under a
second; most of a run is the profiler worker's start. Failures are produced for real: a cache
entry that is not ONNX, a per-model timeout that no model can meet, a directory squatting on
the path the exporter must write, a real SIGINT (Ctrl-C) in the middle of a run. Nothing is
patched, except where one test makes ``onnx`` unimportable (``sys.modules``) to simulate an
install without the ``search`` extra.
"""

from __future__ import annotations

import json
import math
import signal
import sqlite3
from importlib import metadata
from pathlib import Path

import pytest
from hilnas.devices import get_device
from hilnas.devices.base import DeviceNotFoundError
from hilnas.devices.errors import InvalidInputError, PreconditionError
from hilnas.pipeline.export import OnnxExporter, file_sha256
from hilnas.pipeline.profiling import ProgressEvent, plan_architectures, profile_device
from hilnas.pipeline.spaces import ArchitectureError, ModelConfig, get_space
from hilnas.pipeline.store import MeasurementStore, NotAHilnasStoreError, StoreError
from hilnas.profilers import OrtProfiler

SPACE = get_space("nb201")
REFS = SPACE.reference_architectures()
TINY = ModelConfig(channels=4, cells_per_stage=1, input_size=8)


class CountingFactory:
    """Builds the real :class:`OrtProfiler` and keeps each one (a spy: nothing is replaced), so
    a test can tell whether a profiler worker was started at all."""

    def __init__(self) -> None:
        self.made: list[OrtProfiler] = []

    def __call__(self, device, config, settings) -> OrtProfiler:
        profiler = OrtProfiler(device, config, settings)
        self.made.append(profiler)
        return profiler


@pytest.fixture(scope="module")
def cpu():
    """The local CPU as the real discovery reports it."""
    return get_device("cpu")


@pytest.fixture
def store(tmp_path):
    s = MeasurementStore(f"sqlite:///{tmp_path / 'p.db'}")
    yield s
    s.close()


@pytest.fixture
def exporter(tmp_path):
    return OnnxExporter(cache_dir=tmp_path / "onnx")


@pytest.fixture
def profilers():
    return CountingFactory()


def run(store, exporter, profilers=None, **kw):
    kw.setdefault("archs", 3)
    kw.setdefault("reps", 3)
    kw.setdefault("warmup", 1)
    kw.setdefault("model_config", TINY)
    return profile_device(
        "cpu", store=store, exporter=exporter, profiler_factory=profilers or OrtProfiler, **kw
    )


def assert_energy_explicit(rows, cpu) -> None:
    """Energy of every ok row is a measured value or unknown with a reason (never silent)."""
    for r in rows:
        if r.status != "ok":
            continue
        assert r.energy_method
        if r.energy_mj is None:
            assert r.energy_method == "unknown" and r.energy_reason
        else:
            assert r.energy_mj > 0 and r.energy_method != "unknown"
        if cpu.energy_counter is None:  # this machine cannot measure CPU energy
            assert r.energy_mj is None


def corrupt_cache_entry(exporter, arch) -> str:
    """Export ``arch`` for real, then overwrite the cached file with bytes that are not ONNX and
    update its sidecar's sha256 to match, so the exporter's integrity check passes the entry on
    and ONNX Runtime is the one that has to reject it. Returns the cached file's path."""
    exported = exporter.export(SPACE, arch, config=TINY)
    exported.path.write_bytes(b"this is not an ONNX model\n")
    sidecar = exported.path.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    meta["sha256"] = file_sha256(exported.path)
    sidecar.write_text(json.dumps(meta))
    return str(exported.path)


# ----------------------------------------------------------------------------------------------
# plan
# ----------------------------------------------------------------------------------------------
def test_plan_has_references_first_and_a_seeded_sample():
    plan = plan_architectures(SPACE, 20, seed=3)
    codes = [c for c, _ in plan]
    assert len(plan) == 30 == len(set(codes))
    assert codes[:10] == [tuple(r) for r in REFS] and all(ref for _, ref in plan[:10])
    assert not any(ref for _, ref in plan[10:])
    assert plan == plan_architectures(SPACE, 20, seed=3)
    assert plan != plan_architectures(SPACE, 20, seed=4)
    assert len(plan_architectures(SPACE, 0, seed=0)) == 10
    with_extra = plan_architectures(SPACE, 20, seed=3, include=[SPACE.format(REFS[0]), 7])
    assert [c for c, _ in with_extra][10] == SPACE.from_index(7)
    assert len(with_extra) == 31  # the reference given again is not repeated


# ----------------------------------------------------------------------------------------------
# runs
# ----------------------------------------------------------------------------------------------
def test_profile_measures_plan_and_rerun_skips_everything(store, exporter, profilers, cpu):
    events: list[ProgressEvent] = []
    report = run(store, exporter, profilers, progress=events.append)
    assert (report.planned, report.measured, report.skipped, report.failed) == (13, 13, 0, 0)
    assert report.device_id == cpu.id and report.device_name == cpu.name
    assert report.config_key == f"{cpu.id}/cpu/t1/b1" and report.stored_ok == 13
    assert report.model_config_key == TINY.key()
    assert sum(r.reference for r in report.rows) == 10
    assert all(math.isfinite(r.latency_ms_median) and r.latency_ms_median > 0 for r in report.rows)
    assert all(r.export_cached is False for r in report.rows)  # a fresh cache: all exported now
    assert report.timed_s > 0 and report.overhead_ratio > 1
    assert_energy_explicit(report.rows, cpu)
    if cpu.energy_counter is None:
        assert report.energy_status.startswith("unknown (") and report.energy_status.endswith(")")
    assert events[0].kind == "plan" and events[0].total == 13
    assert [e.done for e in events if e.kind == "done"] == list(range(1, 14))
    assert store.count_measurements(status="ok") == 13
    assert store.device(cpu.id).name == cpu.name
    assert len(profilers.made) == 1 and profilers.made[0].worker_pid is None  # closed after

    again = run(store, exporter, profilers)
    assert (again.measured, again.skipped, again.failed) == (0, 13, 0)
    assert len(profilers.made) == 1  # no profiler worker is started when nothing is to do
    assert [r.latency_ms_median for r in again.rows] == [r.latency_ms_median for r in report.rows]
    assert all(r.outcome == "stored" for r in again.rows)
    assert store.count_measurements() == 13


def test_interrupted_run_resumes_without_loss_or_duplicates(store, exporter, profilers):
    """A real SIGINT (what Ctrl-C sends) arrives once 4 measurements are stored."""

    def interrupt_after_four(event: ProgressEvent) -> None:
        if event.kind == "done" and event.done == 4:
            signal.raise_signal(signal.SIGINT)

    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            run(store, exporter, profilers, archs=0, progress=interrupt_after_four)
    finally:
        signal.signal(signal.SIGINT, old)
    assert store.count_measurements() == 4  # each measurement was committed on its own
    assert profilers.made[0].worker_pid is None  # the worker did not outlive the interruption

    started: list[str] = []
    report = run(
        store,
        exporter,
        profilers,
        archs=0,
        progress=lambda e: started.append(e.arch) if e.kind == "start" else None,
    )
    assert (report.measured, report.skipped) == (6, 4)
    assert [r.outcome for r in report.rows] == ["stored"] * 4 + ["measured"] * 6
    assert started == [r.arch for r in report.rows[4:]]  # only what was missing, in plan order
    assert store.count_measurements(status="ok") == 10
    archs = [r.key.arch for r in store.measurements()]
    assert len(archs) == len(set(archs)) == 10


def test_failures_are_stored_and_not_retried_unless_asked(store, exporter, profilers):
    """Two cache entries that are not ONNX: ONNX Runtime rejects them, the run goes on."""
    bad = {SPACE.format(REFS[2]): corrupt_cache_entry(exporter, REFS[2])}
    bad[SPACE.format(REFS[5])] = corrupt_cache_entry(exporter, REFS[5])
    report = run(store, exporter, profilers, archs=0)
    assert (report.measured, report.failed) == (8, 2)
    assert store.count_measurements(status="failed") == 2
    failed_rows = [r for r in report.rows if r.outcome == "failed"]
    assert {r.arch for r in failed_rows} == set(bad)
    for r in failed_rows:
        assert r.status == "failed" and r.latency_ms_median is None
        assert bad[r.arch] in r.error and "not a valid ONNX model" in r.error
        assert "re-export it" in r.error  # the fix
    stored = {r.key.arch: r for r in store.measurements(status="failed")}
    assert set(stored) == set(bad) and all(r.measurement.error for r in stored.values())

    again = run(store, exporter, profilers, archs=0)
    assert (again.measured, again.skipped, again.failed) == (0, 10, 0)
    assert store.count_measurements(status="failed") == 2 and len(profilers.made) == 1

    for path in bad.values():  # the fix the message names: delete the entries, run again
        Path(path).unlink()
        Path(path).with_suffix(".json").unlink()
    retried = run(store, exporter, profilers, archs=0, retry_failed=True)
    assert (retried.measured, retried.skipped) == (2, 8)
    assert store.count_measurements(status="failed") == 0 and store.count_measurements() == 10


def test_a_model_over_the_timeout_is_stored_as_failed(store, exporter, profilers):
    """A million timed runs (about a minute) against a 0.1 s timeout: the worker is killed at
    the timeout and restarted, the failure is stored and not retried unless asked. (A model
    that only just misses a tiny timeout is not a reliable failure: a parent that wakes late on
    a loaded machine finds the answer already there and takes it.)"""
    one = {"archs": 0, "references": False, "include": [SPACE.format(REFS[0])]}
    report = run(store, exporter, profilers, reps=1_000_000, timeout_s=0.1, **one)
    assert (report.measured, report.failed) == (0, 1)
    (row,) = report.rows
    assert row.status == "failed" and "timed out after 0.1 s" in row.error
    assert "1000000 timed runs" in row.error and "raise the timeout" in row.error  # the fix
    assert report.wall_s < 30  # the worker was stopped, not waited for
    (profiler,) = profilers.made
    assert profiler.worker_starts == 2  # killed and restarted for the next model
    assert store.count_measurements(status="failed") == 1
    again = run(store, exporter, profilers, reps=1_000_000, timeout_s=0.1, **one)
    assert again.skipped == 1 and len(profilers.made) == 1  # not retried unless asked


def test_force_remeasures_and_replaces(store, exporter):
    run(store, exporter, archs=0)
    ids = {r.id for r in store.measurements()}
    report = run(store, exporter, archs=0, force=True)
    assert report.measured == 10 and store.count_measurements() == 10
    assert ids.isdisjoint({r.id for r in store.measurements()})
    assert all(r.export_cached for r in report.rows)  # measured again, not exported again


def test_force_never_replaces_a_good_measurement_with_a_failure(store, exporter, profilers):
    """A forced re-measurement of a cache entry that has since become unloadable fails for
    real (ONNX Runtime rejects it); the ok row is kept and the failed attempt recorded."""
    one = {"archs": 0, "references": False, "include": [SPACE.format(REFS[0])]}
    first = run(store, exporter, profilers, **one)
    (good,) = store.measurements()
    assert first.measured == 1 and good.status.value == "ok"
    path = corrupt_cache_entry(exporter, REFS[0])
    forced = run(store, exporter, profilers, force=True, **one)
    assert (forced.kept, forced.failed, forced.measured) == (1, 0, 0)
    (row,) = forced.rows
    assert row.outcome == "kept" and row.status == "ok" and path in row.error
    assert row.latency_ms_median == good.measurement.latency_ms_median  # the kept values
    assert store.measurements() == [good]
    (attempt,) = store.attempts()
    assert attempt["status"] == "failed" and attempt["measurement_id"] == good.id


def test_in_memory_url_is_refused_before_measuring(exporter, profilers):
    with pytest.raises(InvalidInputError, match="in-memory.*lose them on exit"):
        profile_device(
            "cpu", archs=0, store="sqlite://", exporter=exporter, profiler_factory=profilers
        )
    assert profilers.made == [] and list(exporter.cache_dir.iterdir()) == []


def test_missing_exporter_packages_are_a_precondition(tmp_path, monkeypatch, profilers):
    """Simulated: the ``search`` extra is absent (``onnx`` cannot be imported)."""
    import sys

    monkeypatch.setitem(sys.modules, "onnx", None)
    db = tmp_path / "never.db"
    with pytest.raises(PreconditionError, match=r'pip install "hilnas\[search\]".*hilnas agent'):
        profile_device("cpu", archs=0, store=f"sqlite:///{db}", profiler_factory=profilers)
    assert not db.exists() and profilers.made == []


def test_export_failure_is_reported_not_stored(store, exporter):
    """A directory where the exporter must write the ONNX file makes that export fail."""
    bad = SPACE.format(REFS[4])
    squat = exporter.path_for(exporter.key(SPACE, bad, config=TINY))
    squat.mkdir(parents=True)
    report = run(store, exporter, archs=0)
    assert report.failed == 1 and report.measured == 9
    row = next(r for r in report.rows if r.arch == bad)
    assert row.status is None and row.error.startswith("export failed: ExportError")
    assert str(squat) in row.error and "writable directory" in row.error
    assert store.count_measurements() == 9  # retried on the next run
    squat.rmdir()
    assert run(store, exporter, archs=0).measured == 1


def test_settings_are_part_of_the_key(store, exporter, cpu):
    one = {"archs": 0, "references": False, "include": [SPACE.format(REFS[0])]}
    run(store, exporter, **one)
    assert run(store, exporter, reps=4, **one).measured == 1
    assert run(store, exporter, threads=2, **one).measured == 1
    assert run(store, exporter, warmup=0, **one).measured == 1
    assert run(store, exporter, model_config=ModelConfig(4, 1, 16), **one).measured == 1
    assert run(store, exporter, **one).measured == 0
    assert sorted(store.config_keys()) == [f"{cpu.id}/cpu/t1/b1", f"{cpu.id}/cpu/t2/b1"]
    assert store.count_measurements() == 5


def test_profile_records_provenance(store, exporter, cpu):
    """The default model (C=16, N=5, 32x32) this time, as `hilnas profile` measures it."""
    report = run(store, exporter, archs=1, seed=5, model_config=None)
    assert report.measured == 11
    rec = next(r for r in store.measurements() if r.key.arch == report.rows[0].arch)
    exported = exporter.lookup(SPACE, rec.key.arch)  # the file that was measured
    assert exported is not None
    assert rec.onnx_sha256 == exported.sha256 == file_sha256(exported.path)
    assert rec.exporter == exported.exporter
    assert rec.device_fingerprint == cpu.fingerprint and rec.key.device_id == cpu.id
    assert rec.key.model_config_key == SPACE.default_model_config().key() and rec.key.opset == 17
    m = rec.measurement
    assert m.onnxruntime_version == metadata.version("onnxruntime")
    assert (m.execution_provider, m.intra_op_threads, m.batch_size) == (
        "CPUExecutionProvider",
        1,
        1,
    )
    assert (m.warmup, m.repetitions) == (1, 3)
    assert report.to_dict()["rows"][0]["arch"] == rec.key.arch


# ----------------------------------------------------------------------------------------------
# bad input: clear error, store untouched (not even created), nothing exported or started
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"device_id": "tpu9"}, DeviceNotFoundError, "hilnas devices list"),
        ({"reps": 0}, ValueError, "--reps from 1"),
        ({"reps": 10**12}, InvalidInputError, "--reps from 1 to 1,000,000"),
        ({"reps": 10**23}, InvalidInputError, "--reps from 1"),
        ({"threads": 100_000}, InvalidInputError, "logical CPUs"),
        ({"timeout_s": float("inf")}, InvalidInputError, "--timeout"),
        ({"timeout_s": float("nan")}, InvalidInputError, "--timeout"),
        ({"timeout_s": -1.0}, InvalidInputError, "--timeout"),
        ({"warmup": 10**9}, InvalidInputError, "--warmup"),
        ({"archs": 10**6}, InvalidInputError, "--archs from 0"),
        ({"batch_size": 0}, InvalidInputError, "--batch-size"),
        ({"reps": True}, InvalidInputError, "integer"),
        ({"warmup": -1}, ValueError, "warmup"),
        ({"archs": -2}, ValueError, "archs"),
        ({"space": "mobilenet9"}, ValueError, "one of: .*nb201"),
        ({"include": ["|nor_conv_3x3~0|+|oops|"]}, ArchitectureError, "malformed"),
        ({"include": [99999]}, ArchitectureError, "index"),
    ],
)
def test_bad_input_leaves_no_store(tmp_path, exporter, profilers, kwargs, exc, match):
    db = tmp_path / "never.db"
    args = {"device_id": "cpu", "archs": 2, "reps": 3}
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        profile_device(
            args.pop("device_id"),
            store=f"sqlite:///{db}",
            exporter=exporter,
            profiler_factory=profilers,
            **args,
        )
    assert not db.exists()
    assert profilers.made == [] and list(exporter.cache_dir.iterdir()) == []


def test_not_a_hilnas_store_is_refused_before_measuring(tmp_path, exporter, profilers):
    db = tmp_path / "foreign.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    before = db.read_bytes()
    with pytest.raises(NotAHilnasStoreError, match="not a hilnas store"):
        profile_device(
            "cpu", archs=1, store=f"sqlite:///{db}", exporter=exporter, profiler_factory=profilers
        )
    assert db.read_bytes() == before
    assert profilers.made == [] and list(exporter.cache_dir.iterdir()) == []


def test_unwritable_home_is_a_store_error(monkeypatch, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    monkeypatch.setenv("HILNAS_HOME", str(f / "home"))
    with pytest.raises(StoreError, match="HILNAS_HOME"):
        profile_device("cpu", archs=1)  # the default store, exporter and profiler


# ----------------------------------------------------------------------------------------------
# the benchmark: statistics, and the script end to end on the real stack (tiny sizes)
# ----------------------------------------------------------------------------------------------
def test_spearman_and_relative_difference():
    from hilnas.pipeline.benchmarks.profiling import median_relative_difference, spearman

    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486833, rel=1e-6)  # ties
    assert median_relative_difference([1.0, 2.0, 4.0], [1.0, 2.2, 4.0]) == 0.0
    assert median_relative_difference([1.0, 2.0], [1.1, 2.2]) == pytest.approx(0.0952381, rel=1e-6)


def test_benchmark_runs_end_to_end(tmp_path, cpu):
    """3 subnets, 2 reps: checks the plumbing (passes, cache reuse, files), not the figures."""
    from hilnas.pipeline.benchmarks import profiling as bench

    out = tmp_path / "res"
    assert bench.main(["--n", "3", "--reps", "2", "--warmup", "1", "--out-dir", str(out)]) == 0
    result = json.loads((out / "profiling.json").read_text())
    assert result["settings"]["subnets"] == 3 and result["settings"]["device_id"] == cpu.id
    passes = result["passes"]
    assert set(passes) == {"cold", "warm_a", "warm_b"}
    assert all(p["subnets"] == 3 and p["ok"] == 3 for p in passes.values())
    assert passes["cold"]["exported_now"] == 3  # an empty cache
    assert passes["warm_a"]["exported_now"] == passes["warm_b"]["exported_now"] == 0
    assert all(p["totals_s"]["timed_inference"] > 0 for p in passes.values())
    assert all(p["overhead_ratio_per_subnet"] > 1 for p in passes.values())
    rep = result["repeatability"]
    assert rep["subnets"] == 3 and -1.0 <= rep["spearman"] <= 1.0
    assert 0.0 <= rep["median_rel_diff"] <= rep["max_rel_diff"]
    assert set(result["context_spearman"]) == {"gold_6226", "silver_4114"}
    assert set(result["latency_ms_median"]["warm_a"]) == set(result["latency_ms_median"]["cold"])
    md = (out / "profiling.md").read_text()
    assert "| cold | 3 |" in md and "Spearman" in md and cpu.id in md


# ----- workloads: a space's configuration from strings, GPT-S's two phases ---------------------
GPT = get_space("gpt_s")
GPT_SMALL = (
    '{"embed":192,"layers":10,"mlp_ratio":[2,2,2,2,2,2,2,2,2,2],'
    '"heads":[4,4,4,4,4,4,4,4,4,4],"bias":false}'
)
GPT_TINY = {"vocab_size": "256", "context_length": "64", "seq_len": "8"}


def test_workload_configs_sweep_gpt_phases_and_convert_strings():
    from hilnas.pipeline.profiling import workload_configs

    both = workload_configs(GPT, GPT_TINY)
    assert [c.phase for c in both] == ["prefill", "decode"]
    assert {(c.vocab_size, c.context_length, c.seq_len) for c in both} == {(256, 64, 8)}
    assert [c.phase for c in workload_configs(GPT, {**GPT_TINY, "phase": "both"})] == [
        "prefill",
        "decode",
    ]
    (one,) = workload_configs(GPT, {**GPT_TINY, "phase": "decode", "all_logits": "false"})
    assert one.phase == "decode" and one.all_logits is False
    assert workload_configs(SPACE, {"channels": "4"})[0].channels == 4  # NB201: no sweep
    for bad, match in (
        ({"phase": "generate"}, "use one of prefill, decode or both"),
        ({"seq_len": "65", "context_length": "64"}, "seq_len"),
        ({"seq_len": "eight"}, "not an integer"),
        ({"channels": "4"}, "its settings are vocab_size"),
        ({"all_logits": "maybe"}, "all_logits=true"),
    ):
        with pytest.raises(InvalidInputError, match=match) as info:
            workload_configs(GPT, bad)
        assert "\n" not in str(info.value)


def test_prefill_and_decode_of_one_gpt_arch_are_two_rows(cpu, store, tmp_path):
    from hilnas.pipeline.profiling import workload_configs

    exporter = OnnxExporter(cache_dir=tmp_path / "onnx")
    reports = [
        profile_device(
            "cpu",
            space="gpt_s",
            archs=0,
            reps=2,
            warmup=1,
            include=[GPT_SMALL],
            references=False,
            model_config=cfg,
            store=store,
            exporter=exporter,
        )
        for cfg in workload_configs(GPT, GPT_TINY)
    ]
    assert [r.model_config_key for r in reports] == [
        "gpt-v256-ctx64-prefill-s8",
        "gpt-v256-ctx64-decode-s8",
    ]
    rows = store.measurements(device_id=cpu.id, space="gpt_s", status="ok")
    assert len(rows) == 2
    assert {r.key.model_config_key for r in rows} == {r.model_config_key for r in reports}
    assert {r.key.arch for r in rows} == {GPT.format(GPT.parse(GPT_SMALL))}
    for report in reports:
        (row,) = report.rows
        assert row.outcome == "measured" and row.latency_ms_median > 0
        # the direct builder computes the weights in the graph: a small file whatever the model
        assert 0 < row.onnx_bytes < 1_000_000
        assert report.onnx_mb_per_subnet == pytest.approx(row.onnx_bytes / 2**20)
        assert report.onnx_cache_bytes >= row.onnx_bytes
    # rerunning both phases measures nothing again
    again = profile_device(
        "cpu",
        space="gpt_s",
        archs=0,
        reps=2,
        warmup=1,
        include=[GPT_SMALL],
        references=False,
        model_config=workload_configs(GPT, {**GPT_TINY, "phase": "decode"})[0],
        store=store,
        exporter=exporter,
    )
    assert again.measured == 0 and again.skipped == 1


def test_gpt_defaults_are_the_space_profile_defaults():
    from hilnas.pipeline.profiling import DEFAULT_REPS, profile_defaults

    gpt = profile_defaults("gpt_s")
    assert (gpt.archs, gpt.reps, gpt.warmup) == (20, 20, 3)
    assert gpt.sweep == ("phase", ("prefill", "decode"))
    assert (
        profile_defaults("nb201").reps == DEFAULT_REPS and profile_defaults("nb201").sweep is None
    )
