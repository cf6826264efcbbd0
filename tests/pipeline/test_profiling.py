"""profile_device: plan, resume after an interruption, failures, bad input (fakes for export and
the profiler, so these run in milliseconds); one integration test uses the real ones."""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from pathlib import Path

import pytest
from hilnas.devices.base import DeviceNotFoundError
from hilnas.pipeline.profiling import ProgressEvent, plan_architectures, profile_device
from hilnas.pipeline.spaces import ArchitectureError, ModelConfig, get_space
from hilnas.pipeline.store import MeasurementStore, NotAHilnasStoreError, StoreError


def load_fakes():
    name = "hilnas_test_profiling_fakes"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).with_name("profiling_fakes.py")
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


fakes = load_fakes()
FakeExporter, FakeProfiler, factory = fakes.FakeExporter, fakes.FakeProfiler, fakes.factory
SPACE = get_space("nb201")
REFS = SPACE.reference_architectures()


@pytest.fixture(autouse=True)
def fake_discovery(monkeypatch):
    """The device layer answers with one fake CPU (whatever the real discovery says)."""
    fakes.install(monkeypatch)


@pytest.fixture
def store(tmp_path):
    s = MeasurementStore(f"sqlite:///{tmp_path / 'p.db'}")
    yield s
    s.close()


@pytest.fixture
def exporter(tmp_path):
    root = tmp_path / "onnx"
    root.mkdir()
    return FakeExporter(root)


def run(store, exporter, **kw):
    kw.setdefault("archs", 20)
    kw.setdefault("reps", 30)
    prof = kw.pop("profiler", factory())
    return profile_device("cpu", store=store, exporter=exporter, profiler_factory=prof, **kw)


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
def test_profile_measures_plan_and_rerun_skips_everything(store, exporter):
    events: list[ProgressEvent] = []
    report = run(store, exporter, progress=events.append)
    assert (report.planned, report.measured, report.skipped, report.failed) == (30, 30, 0, 0)
    assert report.config_key == "cpu-feedbeef/cpu/t1/b1" and report.stored_ok == 30
    assert sum(r.reference for r in report.rows) == 10
    assert all(r.latency_ms_median > 0 for r in report.rows)
    assert report.energy_status.startswith("unknown") and "RAPL" in report.energy_status
    assert events[0].kind == "plan" and events[0].total == 30
    assert [e.done for e in events if e.kind == "done"] == list(range(1, 31))
    assert store.count_measurements(status="ok") == 30
    assert store.device(fakes.CPU.id).name == "Fake CPU"

    again = run(store, exporter)
    assert (again.measured, again.skipped, again.failed) == (0, 30, 0)
    assert len(FakeProfiler.instances) == 1  # no profiler worker is started when nothing is to do
    assert [r.latency_ms_median for r in again.rows] == [r.latency_ms_median for r in report.rows]
    assert store.count_measurements() == 30


def test_interrupted_run_resumes_without_loss_or_duplicates(store, exporter):
    with pytest.raises(KeyboardInterrupt):
        run(store, exporter, profiler=factory(interrupt_after=7))
    assert store.count_measurements() == 7  # each measurement was committed on its own
    report = run(store, exporter)
    assert (report.measured, report.skipped) == (23, 7)
    assert FakeProfiler.instances[-1].measured == [r.arch for r in report.rows[7:]]
    assert store.count_measurements(status="ok") == 30
    archs = [r.key.arch for r in store.measurements()]
    assert len(archs) == len(set(archs)) == 30


def test_failures_are_stored_and_not_retried_unless_asked(store, exporter):
    crash = {SPACE.format(REFS[2]), SPACE.format(REFS[5])}
    report = run(store, exporter, archs=5, profiler=factory(crash_on=crash))
    assert (report.measured, report.failed) == (13, 2)
    assert store.count_measurements(status="failed") == 2
    failed_rows = [r for r in report.rows if r.outcome == "failed"]
    assert {r.arch for r in failed_rows} == crash and all("SIGSEGV" in r.error for r in failed_rows)

    again = run(store, exporter, archs=5)
    assert (again.measured, again.skipped, again.failed) == (0, 15, 0)
    assert store.count_measurements(status="failed") == 2

    retried = run(store, exporter, archs=5, retry_failed=True)
    assert (retried.measured, retried.skipped) == (2, 13)
    assert store.count_measurements(status="failed") == 0 and store.count_measurements() == 15


def test_force_remeasures_and_replaces(store, exporter):
    run(store, exporter, archs=2)
    ids = {r.id for r in store.measurements()}
    report = run(store, exporter, archs=2, force=True)
    assert report.measured == 12 and store.count_measurements() == 12
    assert ids.isdisjoint({r.id for r in store.measurements()})


def test_export_failure_is_reported_not_stored(store, tmp_path):
    bad = SPACE.format(REFS[4])
    exp = FakeExporter(tmp_path, fail_on={bad})
    report = run(store, exp, archs=0)
    assert report.failed == 1 and report.measured == 9
    row = next(r for r in report.rows if r.arch == bad)
    assert row.status is None and "export failed" in row.error
    assert store.count_measurements() == 9  # retried on the next run
    exp.fail_on = set()
    assert run(store, exp, archs=0).measured == 1


def test_settings_are_part_of_the_key(store, exporter):
    run(store, exporter, archs=0)
    assert run(store, exporter, archs=0, reps=31).measured == 10
    assert run(store, exporter, archs=0, threads=2).measured == 10
    assert run(store, exporter, archs=0, warmup=0).measured == 10
    small = ModelConfig(channels=8, cells_per_stage=1)
    assert run(store, exporter, archs=0, model_config=small).measured == 10
    assert sorted(store.config_keys()) == ["cpu-feedbeef/cpu/t1/b1", "cpu-feedbeef/cpu/t2/b1"]
    assert store.count_measurements() == 50


def test_profile_records_provenance(store, exporter):
    report = run(store, exporter, archs=1, seed=5)
    rec = store.measurements()[0]
    assert rec.onnx_sha256 and rec.exporter == "fake" and rec.device_fingerprint == "c" * 64
    assert rec.key.model_config_key == SPACE.default_model_config().key() and rec.key.opset == 17
    assert report.to_dict()["rows"][0]["arch"] == rec.key.arch


# ----------------------------------------------------------------------------------------------
# bad input: clear error, store untouched (not even created)
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(device_id="tpu9"), DeviceNotFoundError, "hilnas devices list"),
        (dict(reps=0), ValueError, "--reps 1"),
        (dict(warmup=-1), ValueError, "warmup"),
        (dict(archs=-2), ValueError, "archs"),
        (dict(space="mobilenet9"), ValueError, "available: nb201"),
        (dict(include=["|nor_conv_3x3~0|+|oops|"]), ArchitectureError, "malformed"),
        (dict(include=[99999]), ArchitectureError, "index"),
    ],
)
def test_bad_input_leaves_no_store(tmp_path, exporter, kwargs, exc, match):
    db = tmp_path / "never.db"
    args = dict(device_id="cpu", archs=2, reps=3)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        profile_device(
            args.pop("device_id"),
            store=f"sqlite:///{db}",
            exporter=exporter,
            profiler_factory=factory(),
            **args,
        )
    assert not db.exists()
    assert FakeProfiler.instances == []


def test_not_a_hilnas_store_is_refused_before_measuring(tmp_path, exporter):
    import sqlite3

    db = tmp_path / "foreign.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    before = db.read_bytes()
    with pytest.raises(NotAHilnasStoreError):
        profile_device(
            "cpu", archs=1, store=f"sqlite:///{db}", exporter=exporter, profiler_factory=factory()
        )
    assert db.read_bytes() == before and FakeProfiler.instances == []


def test_unwritable_home_is_a_store_error(monkeypatch, tmp_path, exporter):
    f = tmp_path / "file"
    f.write_text("x")
    monkeypatch.setenv("HILNAS_HOME", str(f / "home"))
    with pytest.raises(StoreError, match="HILNAS_HOME"):
        profile_device("cpu", archs=1, exporter=exporter, profiler_factory=factory())


# ----------------------------------------------------------------------------------------------
# the real exporter and profiler (skipped until both exist)
# ----------------------------------------------------------------------------------------------
def _real_stack_available() -> bool:
    try:
        return (
            importlib.util.find_spec("hilnas.pipeline.export") is not None
            and hasattr(importlib.import_module("hilnas.profilers"), "OrtProfiler")
            and hasattr(importlib.import_module("hilnas.devices"), "discover")
        )
    except ImportError:
        return False


@pytest.mark.skipif(not _real_stack_available(), reason="exporter/profiler/discovery not built yet")
def test_real_stack_profiles_the_local_cpu(monkeypatch, tmp_path):
    monkeypatch.undo()  # use the real discovery
    import hilnas.devices as real

    monkeypatch.setenv("HILNAS_HOME", str(tmp_path / "home"))
    cpu = real.get_device("cpu")
    small = ModelConfig(channels=8, cells_per_stage=1)
    with MeasurementStore() as st:
        report = profile_device("cpu", archs=2, reps=5, warmup=1, model_config=small, store=st)
        assert report.measured + report.failed == 12 and report.measured >= 10
        assert report.device_id == cpu.id
        recs = st.measurements(status="ok")
        assert len(recs) == report.measured
        assert all(r.measurement.latency_ms_median > 0 for r in recs)
        assert all(r.measurement.energy_method is not None for r in recs)
        assert all(r.measurement.energy_mj is not None or r.measurement.energy_reason for r in recs)
        again = profile_device("cpu", archs=2, reps=5, warmup=1, model_config=small, store=st)
        assert again.measured == 0 and again.skipped == 12


# ----------------------------------------------------------------------------------------------
# the benchmark's statistics and plumbing (fake profiler; the real figures come from running it)
# ----------------------------------------------------------------------------------------------
def test_spearman_and_relative_difference():
    from hilnas.pipeline.benchmarks.profiling import median_relative_difference, spearman

    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486833, rel=1e-6)  # ties
    assert median_relative_difference([1.0, 2.0, 4.0], [1.0, 2.2, 4.0]) == 0.0
    assert median_relative_difference([1.0, 2.0], [1.1, 2.2]) == pytest.approx(0.0952381, rel=1e-6)


def test_benchmark_runs_end_to_end_with_a_fake_profiler(monkeypatch, tmp_path):
    pytest.importorskip("onnx")
    from hilnas.pipeline.benchmarks import profiling as bench

    fakes.install(monkeypatch, onnx_root=tmp_path / "unused")
    result = bench.run_benchmark(n=4, reps=3, warmup=1)
    assert set(result["passes"]) == {"cold", "warm_a", "warm_b"}
    assert result["passes"]["cold"]["exported_now"] == 4
    assert result["passes"]["warm_a"]["exported_now"] == 0
    assert result["repeatability"]["spearman"] == pytest.approx(1.0)  # the fake is deterministic
    assert result["repeatability"]["median_rel_diff"] == 0.0
    assert set(result["context_spearman"]) == {"gold_6226", "silver_4114"}
    md = bench.to_markdown(result)
    assert "| cold | 4 |" in md and "Spearman" in md
    assert bench.main(["--n", "3", "--reps", "2", "--out-dir", str(tmp_path / "res")]) == 0
    saved = json.loads((tmp_path / "res" / "profiling.json").read_text())
    assert saved["settings"]["subnets"] == 3 and (tmp_path / "res" / "profiling.md").exists()
