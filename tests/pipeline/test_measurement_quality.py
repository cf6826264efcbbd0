"""Measurement quality: the detector, the re-measurement policy, schema 3 of the store and the
exclusion of flagged rows from predictor fits.

Everything is real: SQLite files, the ONNX Runtime profiler in its worker process, the CPU
probe reading the kernel's counters. Interference is produced honestly: the detector's pure
function is fed synthetic timing series, and the probe and the profiler are run beside a real
busy process that this test starts (reparented away from the test, so that it counts as
*another* process) and kills by its pid. Tests that must not depend on the other load of a
shared machine set the thresholds so that only one signal can decide (e.g. ``cv_max=0``).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hilnas.devices.base import DeviceInfo, DeviceKind
from hilnas.devices.errors import InvalidInputError
from hilnas.flows.cli import app
from hilnas.pipeline.export import OnnxExporter
from hilnas.pipeline.predictors.io import store_fit_data, target_embedding
from hilnas.pipeline.profiling import profile_device
from hilnas.pipeline.spaces import ModelConfig, get_space
from hilnas.pipeline.store import (
    QUALITY_COLUMNS,
    SCHEMA_VERSION,
    MeasurementKey,
    MeasurementStore,
)
from hilnas.profilers import OrtProfiler
from hilnas.profilers.base import Measurement
from hilnas.profilers.quality import (
    CpuProbe,
    MeasurementQuality,
    Quality,
    QualityThresholds,
    assess,
    sentinel_drift,
)
from hilnas.profilers.stats import latency_stats
from hilnas.profilers.testing import fake_measurement
from typer.testing import CliRunner

SPACE = get_space("nb201")
REFS = [SPACE.format(a) for a in SPACE.reference_architectures()]
MCK = SPACE.default_model_config().key()
TINY = ModelConfig(channels=4, cells_per_stage=1, input_size=8)
DEV = DeviceInfo(
    id="quality-box",
    kind=DeviceKind.CPU,
    name="Test CPU",
    fingerprint="q" * 64,
    properties={"logical_cores": 2},
    energy_counter=None,
    energy_unavailable_reason="no RAPL in tests",
    aliases=(),
)
EXTRA = [SPACE.format(SPACE.from_index(i)) for i in range(0, 400, 13)]
EXTRA = [a for a in EXTRA if a not in REFS][:20]


def key(arch: str) -> MeasurementKey:
    return MeasurementKey("nb201", arch, MCK, 17, DEV.id, "CPUExecutionProvider", 1, 1, 1, 3)


def measurement(latency: float = 1.25, cv: float = 0.01) -> Measurement:
    return fake_measurement(latency, cv=cv)


NOISY = MeasurementQuality(Quality.NOISY, "repetitions spread: CV 80.0 % > 50 %", 3.1, 0.1)
INTERFERED = MeasurementQuality(Quality.INTERFERED, "other processes used 1.00 cores", 2.0, 1.0)


def filled_store(path: Path) -> Path:
    """10 references + 20 further architectures; 4 further and 1 reference flagged."""
    with MeasurementStore(f"sqlite:///{path}") as st:
        st.upsert_device(DEV)
        for i, arch in enumerate(REFS + EXTRA):
            q = None
            if arch in EXTRA[:2]:
                q = NOISY
            elif arch in EXTRA[2:4] or arch == REFS[3]:
                q = INTERFERED
            elif i % 2:
                q = MeasurementQuality(Quality.OK, None, 0.5, 0.05)
            st.add_measurement(key(arch), measurement(1.0 + 0.1 * i), quality=q)
    return path


def sqlite_rows(path: Path) -> list[tuple]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return con.execute(
            "SELECT arch, status, latency_ms_median FROM measurements ORDER BY id"
        ).fetchall()
    finally:
        con.close()


# ----------------------------------------------------------------------------------------------
# the detector (pure)
# ----------------------------------------------------------------------------------------------
def _series(n: int, preempted: float, seed: int = 0) -> np.ndarray:
    """Synthetic per-run durations (ns) of a 2 ms model with 1 % jitter; a share of the runs
    preempted by a competing process (each takes 1.5-3x as long)."""
    rng = np.random.default_rng(seed)
    t = 2e6 * (1 + 0.01 * rng.standard_normal(n))
    hit = rng.random(n) < preempted
    t[hit] *= rng.uniform(1.5, 3.0, hit.sum())
    return t.astype(np.int64)


def _assess_series(times: np.ndarray, **kw) -> MeasurementQuality:
    s = latency_stats(times)
    return assess(cv=s.cv, spread=s.iqr_ms / s.median_ms, **kw)


def test_quiet_series_is_ok_and_a_preempted_one_is_noisy():
    quiet = _assess_series(_series(50, 0.0), other_cpu_cores=0.1, threads=1, cores=2)
    assert quiet.quality is Quality.OK and quiet.reason is None and not quiet.flagged
    noisy = _assess_series(_series(50, 0.4), other_cpu_cores=0.1, threads=1, cores=2)
    assert noisy.quality is Quality.NOISY and "IQR/median" in noisy.reason and noisy.flagged
    # one run of 50 preempted (3x): the CV rises to ~0.27, the IQR and the median stay
    one = _series(50, 0.0)
    one[7] *= 3
    assert 0.2 < latency_stats(one).cv < QualityThresholds().cv_max
    assert _assess_series(one, threads=1, cores=2).quality is Quality.OK
    # the same run 30x slower (a long preemption) is noisy by its CV alone
    one[7] *= 10
    long = _assess_series(one, threads=1, cores=2)
    assert long.quality is Quality.NOISY and "IQR" not in long.reason


def test_competing_load_is_judged_against_the_free_cores():
    quiet = _series(50, 0.0)
    # one competing core on a 2-core machine measuring with one thread: interfered
    q = _assess_series(quiet, other_cpu_cores=1.0, threads=1, cores=2, load_1m=2.1)
    assert q.quality is Quality.INTERFERED and q.load_1m == 2.1 and q.other_cpu_cores == 1.0
    assert "1.00 cores" in q.reason and "bound 0.50 of 2 cores" in q.reason
    # the same on 16 cores leaves 15 free: a bound of 7.5 cores
    assert _assess_series(quiet, other_cpu_cores=1.0, threads=1, cores=16).quality is Quality.OK
    # threads=0 (every core measuring): any competitor above the floor interferes
    assert _assess_series(quiet, other_cpu_cores=0.6, threads=0, cores=16).flagged
    # interference wins over noise, and both reasons are kept
    both = _assess_series(_series(50, 0.4), other_cpu_cores=1.5, threads=1, cores=2)
    assert both.quality is Quality.INTERFERED and "repetitions spread" in both.reason


def test_sentinel_drift_and_threshold_validation():
    assert sentinel_drift(2.0, 2.1) == pytest.approx(0.05)
    assert sentinel_drift(2.0, 1.9) == pytest.approx(-0.05)
    assert sentinel_drift(None, 1.0) is None and sentinel_drift(0.0, 1.0) is None
    with pytest.raises(InvalidInputError, match="cv_max"):
        QualityThresholds(cv_max=-1)
    with pytest.raises(InvalidInputError, match="max_remeasure"):
        QualityThresholds(max_remeasure=1.5)
    with pytest.raises(InvalidInputError, match="QualityThresholds"):
        profile_device("cpu", archs=0, quality={"cv_max": 0.1}, store="sqlite://")


# ----------------------------------------------------------------------------------------------
# the probe, beside a real competing process
# ----------------------------------------------------------------------------------------------
@pytest.fixture
def competitor():
    """A busy Python loop that is *not* a descendant of the test (the shell that starts it
    exits at once, so the loop is reparented): it counts as another process."""
    out = subprocess.run(
        ["sh", "-c", f'"{sys.executable}" -c "while True: pass" >/dev/null 2>&1 & echo $!'],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(out.stdout.strip())
    time.sleep(0.3)
    yield pid
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:  # pragma: no cover - already gone
        pass


def test_probe_sees_a_competing_process(competitor):
    probe = CpuProbe()
    other = probe.other_cores_over(1.0)
    # the loop alone keeps most of a core busy (more when the machine is shared)
    assert other is not None and other >= 0.5


def _run(store, exporter, **kw):
    kw.setdefault("archs", 3)
    kw.setdefault("reps", 5)
    kw.setdefault("warmup", 1)
    return profile_device(
        "cpu",
        store=store,
        exporter=exporter,
        profiler_factory=OrtProfiler,
        model_config=TINY,
        references=False,
        **kw,
    )


@pytest.fixture
def store(tmp_path):
    s = MeasurementStore(f"sqlite:///{tmp_path / 'q.db'}")
    yield s
    s.close()


@pytest.fixture
def exporter(tmp_path):
    return OnnxExporter(cache_dir=tmp_path / "onnx")


def test_profiling_beside_a_busy_process_flags_and_keeps_every_model(competitor, store, exporter):
    """The competitor runs all along: every model is interfered, none can be re-measured (the
    load never recovers within the wait), each is kept with its flag, reason and evidence."""
    q = QualityThresholds(recover_wait_s=0.6, recover_probe_s=0.3, cv_max=1e6, spread_max=1e6)
    report = _run(store, exporter, quality=q)
    assert report.measured == 3 and report.flagged == 3 and report.remeasured == 0
    assert report.quality_counts == {"interfered": 3}
    assert report.flag_reasons()["competing CPU load"] == 3
    assert report.flag_reasons()["not re-measured"] == 3
    assert "3 of 3 flagged" in report.quality_summary()
    for row in report.rows:
        rec = store.get_measurement(
            MeasurementKey(
                "nb201",
                row.arch,
                TINY.key(),
                17,
                report.device_id,
                "CPUExecutionProvider",
                1,
                1,
                1,
                5,
            )
        )
        assert rec.quality == "interfered" == row.quality and rec.flagged
        assert rec.other_cpu_cores >= 0.5 and rec.load_1m is not None
        assert "other processes used" in rec.quality_reason
        assert "not re-measured: other processes' CPU use did not fall" in rec.quality_reason
    # the stored values are the measurements themselves: nothing was dropped
    assert store.count_measurements(status="ok") == 3
    # every row is flagged: leaving them out would leave nothing to fit, so the fit table keeps
    # them (FLAGGED_KEEP) and says so
    table = store.latency_table(report.config_key, model_config_key=TINY.key())
    assert len(table) == 3
    ex = store.quality_exclusions(report.config_key, model_config_key=TINY.key())
    assert ex.kept_flagged == 3 and ex.excluded == 0


def test_flagged_models_are_remeasured_once_within_the_bound(store, exporter):
    """``cv_max=0`` makes every measurement noisy whatever the machine does, and a huge load
    bound makes the load 'recover' at once: so exactly ``max_remeasure`` models are re-measured
    once each, the better measurement is kept, the others say why they were not."""
    q = QualityThresholds(
        cv_max=0.0, other_cores_min=1e6, max_remeasure=2, sentinel_every=0, recover_wait_s=1
    )
    report = _run(store, exporter, archs=4, quality=q)
    assert report.measured == 4 and report.flagged == 4
    assert report.remeasured == 2 and sum(r.remeasured for r in report.rows) == 2
    reasons = [r.quality_reason for r in report.rows]
    assert sum("re-measured once" in r for r in reasons) == 2
    assert sum("this run's 2 re-measurements were used" in r for r in reasons) == 2
    assert report.sentinel_note == "sentinel disabled (sentinel_every=0)"
    stored = {r.key.arch: r for r in store.measurements()}
    assert len(stored) == 4
    for row in report.rows:
        assert stored[row.arch].quality_reason == row.quality_reason
        assert stored[row.arch].measurement.latency_ms_median == row.latency_ms_median


def test_sentinel_drift_flags_the_models_of_its_interval(store, exporter):
    """``drift_max=0``: any change of the sentinel's median counts as drift, so every model
    measured after the baseline is flagged interfered with the drift stored as evidence."""
    q = QualityThresholds(
        drift_max=0.0,
        sentinel_every=2,
        cv_max=1e6,
        spread_max=1e6,
        other_cores_min=1e6,
        max_remeasure=0,
    )
    report = _run(store, exporter, archs=5, quality=q)
    checks = report.sentinel_checks
    assert report.sentinel_arch == REFS[0] and [c.after for c in checks] == [0, 2, 4, 5]
    assert checks[0].baseline and checks[0].drift is None
    drifted = [c for c in checks[1:] if c.drift != 0.0]
    assert drifted and report.max_sentinel_drift > 0
    flagged = [r for r in report.rows if r.flagged]
    assert flagged and all("sentinel drift" in r.quality_reason for r in flagged)
    assert all(r.sentinel_drift is not None for r in flagged)
    by_arch = {r.key.arch: r for r in store.measurements()}
    assert all(by_arch[r.arch].sentinel_drift == r.sentinel_drift for r in flagged)


# ----------------------------------------------------------------------------------------------
# schema 3 of the store
# ----------------------------------------------------------------------------------------------
def test_flags_are_stored_and_read_back(tmp_path):
    path = filled_store(tmp_path / "s.db")
    with MeasurementStore(f"sqlite:///{path}") as st:
        assert st.schema_version == SCHEMA_VERSION == 3
        rec = st.get_measurement(key(EXTRA[0]))
        assert (rec.quality, rec.load_1m, rec.other_cpu_cores) == ("noisy", 3.1, 0.1)
        assert rec.quality_reason.startswith("repetitions spread") and rec.flagged
        assert rec.to_dict()["quality"] == "noisy"
        assert st.get_measurement(key(REFS[0])).quality is None  # not assessed
        assert st.get_measurement(key(REFS[1])).quality == "ok"
        (summary,) = st.config_summaries()
        assert summary.ok == 30 and summary.flagged == 5
        drifted = INTERFERED.flag(Quality.INTERFERED, "sentinel drift +9.0 %")
        assert st.set_quality(key(EXTRA[5]), drifted)
        rec = st.get_measurement(key(EXTRA[5]))
        assert rec.quality == "interfered" and "sentinel drift" in rec.quality_reason
        assert rec.measurement.latency_ms_median == pytest.approx(1.0 + 0.1 * 15)


def test_a_bad_quality_is_refused_and_nothing_changes(tmp_path):
    path = filled_store(tmp_path / "s.db")
    before = sqlite_rows(path)
    bad = MeasurementQuality("shaky", "?")  # type: ignore[arg-type]
    with MeasurementStore(f"sqlite:///{path}") as st:
        with pytest.raises(InvalidInputError, match="unknown measurement quality 'shaky'"):
            st.add_measurement(
                key(SPACE.format(SPACE.from_index(9000))), measurement(), quality=bad
            )
        with pytest.raises(InvalidInputError, match="load_1m must be finite"):
            st.set_quality(key(EXTRA[0]), MeasurementQuality(Quality.OK, None, float("nan")))
        assert st.get_measurement(key(EXTRA[0])).quality == "noisy"
    assert sqlite_rows(path) == before


def _downgrade_to_schema_2(path: Path) -> None:
    """What hilnas schema 2 wrote: the same tables without the quality columns."""
    con = sqlite3.connect(path)
    for column in QUALITY_COLUMNS:
        con.execute(f"ALTER TABLE measurements DROP COLUMN {column}")
    con.execute("UPDATE hilnas_meta SET value='2' WHERE key='schema_version'")
    con.commit()
    con.close()


def test_schema_2_store_migrates_to_3_keeping_every_row(tmp_path):
    path = filled_store(tmp_path / "v2.db")
    _downgrade_to_schema_2(path)
    before = sqlite_rows(path)
    assert len(before) == 30
    digest = path.read_bytes()
    with MeasurementStore(f"sqlite:///{path}", read_only=True) as ro:  # reads, migrates nothing
        assert ro.schema_version == 2
        recs = ro.measurements()
        assert len(recs) == 30 and all(r.quality is None for r in recs)
        assert ro.get_measurement(key(EXTRA[0])).quality is None
        assert len(ro.latency_table(f"{DEV.id}/cpu/t1/b1")) == 30  # nothing assessed: all kept
        assert ro.config_summaries()[0].flagged == 0
    assert path.read_bytes() == digest
    with MeasurementStore(f"sqlite:///{path}") as st:
        assert st.schema_version == 3
        assert len(st.measurements()) == 30
        assert (
            st.add_measurement(
                key(SPACE.format(SPACE.from_index(9001))), measurement(), quality=NOISY
            ).value
            == "inserted"
        )
        assert st.get_measurement(key(SPACE.format(SPACE.from_index(9001)))).quality == "noisy"
    assert sqlite_rows(path)[:30] == before
    con = sqlite3.connect(path)
    cols = {r[1] for r in con.execute("PRAGMA table_info(measurements)")}
    con.close()
    assert set(QUALITY_COLUMNS) <= cols


# ----------------------------------------------------------------------------------------------
# predictors fit on unflagged rows by default
# ----------------------------------------------------------------------------------------------
def test_fit_data_leaves_flagged_rows_out_and_says_how_many(tmp_path):
    path = filled_store(tmp_path / "s.db")
    target = f"{DEV.id}/cpu/t1/b1"
    with MeasurementStore(f"sqlite:///{path}") as st:
        table = st.latency_table(target)
        assert len(table) == 26 and REFS[3] in table  # the flagged reference is kept
        assert not set(EXTRA[:4]) & set(table)
        assert len(st.latency_table(target, include_flagged=True)) == 30
        ex = st.quality_exclusions(target)
        assert (ex.excluded, ex.kept_references) == (4, 1)
        assert dict(ex.by_quality) == {"interfered": 2, "noisy": 2}
        data = store_fit_data(st, DEV.id, "latency_ms")
        assert data.target == target and data.excluded == 4 and len(data.table) == 26
        assert "4 flagged latency_ms measurement(s)" in data.note()
        assert "1 flagged reference" in data.note()
        everything = store_fit_data(st, target, include_flagged=True)
        assert len(everything.table) == 30 and everything.note() is None
        emb, _ = target_embedding(target, "latency_ms", st)
        emb_all, _ = target_embedding(target, "latency_ms", st, include_flagged=True)
        assert len(emb.support_values) == 16 and len(emb_all.support_values) == 20
        # flag most of the rest as well: the flagged rows are then the majority and all kept
        for arch in EXTRA[4:16]:
            st.set_quality(key(arch), NOISY)
        assert len(st.latency_table(target)) == 30
        assert st.quality_exclusions(target).kept_flagged == 16  # 16 of the 20 further rows
        assert "(most of them: all kept)" in store_fit_data(st, target).note()


# ----------------------------------------------------------------------------------------------
# the CLI shows the flags
# ----------------------------------------------------------------------------------------------
def test_measurements_list_and_export_show_the_flags(tmp_path):
    path = filled_store(tmp_path / "s.db")
    runner = CliRunner()
    listed = runner.invoke(app, ["measurements", "list", "--db", f"sqlite:///{path}"])
    assert listed.exit_code == 0, listed.output
    assert "flagged" in listed.output and "left out of predictor fits" in listed.output
    out = tmp_path / "m.csv"
    exported = runner.invoke(
        app,
        [
            "measurements",
            "export",
            "--device",
            DEV.id,
            "--csv",
            str(out),
            "--db",
            f"sqlite:///{path}",
        ],
    )
    assert exported.exit_code == 0, exported.output
    import csv

    rows = list(csv.DictReader(out.open()))
    by_arch = {r["arch"]: r for r in rows}
    assert by_arch[EXTRA[0]]["quality"] == "noisy"
    assert by_arch[EXTRA[2]]["quality"] == "interfered"
    assert by_arch[EXTRA[2]]["other_cpu_cores"] == "1.0"
    assert by_arch[REFS[0]]["quality"] == ""


def test_retry_flagged_remeasures_flagged_rows_and_keeps_the_better(store, exporter):
    """Run 1 flags every model (``cv_max=0``) and re-measures none; run 2 retries them under
    the same strict thresholds (each is kept or replaced by the one with the smaller CV); run 3
    retries under thresholds nothing can fail, so every row is replaced by an ok one and the
    fit table uses them again. A run with nothing flagged measures nothing."""
    strict = QualityThresholds(cv_max=0.0, other_cores_min=1e6, max_remeasure=0, sentinel_every=0)
    first = _run(store, exporter, quality=strict)
    assert first.flagged == 3 and first.remeasured == 0
    target, mck = first.config_key, TINY.key()
    assert store.quality_exclusions(target, model_config_key=mck).kept_flagged == 3
    again = _run(store, exporter, quality=strict, retry_flagged=True)
    assert again.remeasured == 3 and all(r.remeasured for r in again.rows)
    assert again.flagged == 3 and store.count_measurements() == 3
    kept = [r for r in again.rows if r.outcome == "stored"]
    assert all("re-measured (retry): still noisy" in r.quality_reason for r in kept)
    assert again.remeasure_improved == 3 - len(kept)
    lenient = QualityThresholds(cv_max=1e6, spread_max=1e6, other_cores_min=1e6, sentinel_every=0)
    fixed = _run(store, exporter, quality=lenient, retry_flagged=True)
    assert fixed.remeasured == fixed.remeasure_improved == fixed.measured == 3
    assert fixed.flagged == 0 and fixed.quality_counts == {"ok": 3}
    assert len(store.latency_table(target, model_config_key=mck)) == 3
    assert all(r.quality == "ok" for r in store.measurements())
    nothing = _run(store, exporter, quality=lenient, retry_flagged=True)
    assert nothing.measured == 0 and nothing.skipped == 3 and nothing.remeasured == 0


def test_interference_benchmark_runs_end_to_end(tmp_path):
    """The shipped benchmark, tiny: three passes, the duty-cycled competitor, the figures and
    their markdown (saved to a temporary directory, not over the shipped results)."""
    from hilnas.pipeline.benchmarks import profiling as bench

    assert (
        bench.main(
            [
                "--interference",
                "--n",
                "3",
                "--reps",
                "3",
                "--warmup",
                "1",
                "--duty-on",
                "0.2",
                "--duty-off",
                "0.2",
                "--out-dir",
                str(tmp_path),
            ]
        )
        == 0
    )
    import json

    r = json.loads((tmp_path / "profiling_interference.json").read_text())
    assert set(r["passes"]) == {"reference", "warm_reference", "loaded"}
    assert all(p["ok"] == 3 for p in r["passes"].values())
    assert r["competitor_time_s"]["on_s"] > 0 and r["probe_ms_per_sample"] > 0
    assert r["machine"]["load_avg_before"] is not None
    states = r["loaded_by_competitor_state"]
    assert sum(s["subnets"] for s in states.values()) == 3
    text = (tmp_path / "profiling_interference.md").read_text()
    assert "## Flags per pass" in text and "Reproduce:" in text


def test_hilnas_fit_reports_the_flagged_rows_it_left_out(tmp_path):
    path = filled_store(tmp_path / "s.db")
    res = CliRunner().invoke(app, ["fit", "--db", f"sqlite:///{path}", "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout[res.stdout.index("{") :])
    (row,) = [r for r in report["devices"] if r["metric"] == "latency_ms"]
    assert row["flagged"] == {"left_out": 4, "kept": 0}
    assert row["n"] == 26  # 10 references (1 flagged, kept) + 16 unflagged further rows
