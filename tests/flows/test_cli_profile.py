"""``hilnas devices``, ``hilnas profile`` and ``hilnas measurements`` on the real stack: the local
CPU from discovery, the real ONNX exporter, the real ONNX Runtime profiler and a real SQLite
store, in-process through CliRunner (a small model, --channels 4 --cells 1, warm-up 1, 3 reps)
and as the console script in subprocesses, SIGKILL test included. Nothing is patched but the
console width (so assertions do not depend on line wrapping)."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hilnas.devices import get_device
from hilnas.flows.cli import app
from hilnas.flows.cli_common import UserError
from hilnas.pipeline.export import OnnxExporter, file_sha256
from hilnas.pipeline.spaces import get_space
from hilnas.pipeline.store import MeasurementStore
from typer.testing import CliRunner

runner = CliRunner()
SPACE = get_space("nb201")
#: a small model through the CLI's own options (the input stays 32x32), short timings
SMALL = ("--channels", "4", "--cells", "1", "--warmup", "1", "--reps", "3")
SMALL_CONFIG = dataclasses.replace(SPACE.default_model_config(), channels=4, cells_per_stage=1)


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    from hilnas.flows import cli_common

    for console in (cli_common.console, cli_common.err_console):  # no wrapping in assertions
        monkeypatch.setattr(console, "_width", 250)


@pytest.fixture(scope="module")
def cpu():
    """The local CPU as the real discovery reports it."""
    return get_device("cpu")


def invoke(*args: str):
    return runner.invoke(app, list(args))


def user_error(result) -> str:
    """The message of the UserError a command raised (main() prints it and exits 2)."""
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, UserError), (result.exception, result.output)
    return str(result.exception)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_energy_columns(rows, cpu) -> None:
    """CSV energy: a measured value, or empty with method unknown and a reason."""
    for r in rows:
        if r["energy_mj"] == "":
            assert r["energy_method"] == "unknown" and r["energy_reason"]
        else:
            assert float(r["energy_mj"]) > 0 and r["energy_method"] not in ("", "unknown")
        if cpu.energy_counter is None:  # this machine cannot measure CPU energy
            assert r["energy_mj"] == "" and r["energy_method"] == "unknown"


# ----------------------------------------------------------------------------------------------
# CliRunner
# ----------------------------------------------------------------------------------------------
def test_devices_list_json_and_table(hilnas_home, cpu):
    result = invoke("devices", "list", "--json")
    assert result.exit_code == 0, result.output
    (row,) = [r for r in json.loads(result.output) if r["id"] == cpu.id]
    assert row["kind"] == "cpu" and row["local"] and row["name"] == cpu.name
    assert row["fingerprint"] == cpu.fingerprint and "cpu" in row["aliases"]
    assert row["stored"] is False and row["configurations"] == []
    profiled = invoke("profile", "--device", "cpu", "--archs", "0", *SMALL)
    assert profiled.exit_code == 0, profiled.output
    (row,) = [
        r for r in json.loads(invoke("devices", "list", "--json").output) if r["id"] == cpu.id
    ]
    assert row["stored"] and row["configurations"] == [
        {
            "config_key": f"{cpu.id}/cpu/t1/b1",
            "space": "nb201",
            "model_config": SMALL_CONFIG.key(),
            "ok": 10,
            "failed": 0,
        }
    ]
    table = invoke("devices", "list")
    assert table.exit_code == 0 and cpu.id in table.output and "t1/b1: 10" in table.output
    if cpu.energy_counter is None:
        assert f"{cpu.id}: energy unknown: {cpu.energy_unavailable_reason}" in table.output


def test_profile_table_rerun_and_export(hilnas_home, tmp_path, cpu):
    result = invoke("profile", "--device", "cpu", "--archs", "3", "--seed", "1", *SMALL)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "summary" in out and "13 planned: 13 measured now, 0 already stored, 0 failed" in out
    assert f"{cpu.id} ({cpu.name})" in out and f"{cpu.id}/cpu/t1/b1" in out
    if cpu.energy_counter is None:  # the energy status is explicit
        assert "unknown (" in out and "energy mJ" in out
    again = invoke("profile", "--device", "cpu", "--archs", "3", "--seed", "1", *SMALL)
    assert again.exit_code == 0 and "13 architecture(s) already stored" in again.output
    assert "0 measured now, 13 already stored" in again.output

    target = tmp_path / "out" / "cpu.csv"
    exp = invoke("measurements", "export", "--device", "cpu", "--csv", str(target))
    assert exp.exit_code == 0, exp.output
    with target.open() as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    assert reader.fieldnames[:4] == ["arch", "latency_ms", "energy_mj", "energy_method"]
    assert len(rows) == 13 and len({r["arch"] for r in rows}) == 13
    assert all(float(r["latency_ms"]) > 0 for r in rows)
    assert_energy_columns(rows, cpu)
    assert all(
        r["config_key"] == f"{cpu.id}/cpu/t1/b1"
        and r["repetitions"] == "3"
        and r["warmup"] == "1"
        and r["model_config_key"] == SMALL_CONFIG.key()
        and r["device_fingerprint"] == cpu.fingerprint
        for r in rows
    )
    by_id = invoke("measurements", "export", "--device", cpu.id, "--csv", "-")
    assert by_id.exit_code == 0 and by_id.output == target.read_text()

    listing = invoke("measurements", "list", "--json")
    data = json.loads(listing.output)
    assert data["configurations"][0]["ok"] == 13
    assert f"{cpu.id}/cpu/t1/b1" in invoke("measurements", "list").output


def test_profile_json_report(cpu):
    result = invoke("profile", "--device", "cpu", "--archs", "1", *SMALL, "--reps", "2", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["measured"] == 11 and report["device_id"] == cpu.id
    assert report["repetitions"] == 2 and report["model_config_key"] == SMALL_CONFIG.key()
    if cpu.energy_counter is None:  # explicit: unknown, with the reason
        assert report["energy_status"].startswith("unknown (")
    assert len(report["rows"]) == 11 and report["rows"][0]["reference"] is True
    assert all(r["latency_ms_median"] > 0 for r in report["rows"])


def test_failed_model_then_retry_failed_then_force(hilnas_home, cpu):
    """A cache entry that is not ONNX (its sidecar's sha256 updated to match, so the exporter
    passes it on): ONNX Runtime rejects it, the failure is stored and reported; deleting the
    entry and --retry-failed measures it; --force measures everything again."""
    exporter = OnnxExporter()  # the default cache, under HILNAS_HOME, that the CLI uses
    bad = SPACE.reference_architectures()[3]
    entry = exporter.export(SPACE, bad, config=SMALL_CONFIG).path
    entry.write_bytes(b"this is not an ONNX model\n")
    meta = json.loads(entry.with_suffix(".json").read_text())
    meta["sha256"] = file_sha256(entry)
    entry.with_suffix(".json").write_text(json.dumps(meta))

    first = invoke("profile", "--device", "cpu", "--archs", "0", *SMALL)
    assert first.exit_code == 1, first.output  # a failed model makes the run exit non-zero
    assert "10 planned: 9 measured now, 0 already stored, 1 failed" in first.output
    assert re.search(r"│\s+4 │\s+\d+ │\s+\* +│ failed +│\s+- │", first.output)  # its row
    assert re.search(r"│ error +│ " + re.escape(str(entry)[:60]), first.output)  # the summary
    assert "re-export" in first.output.replace("\n", " ").replace("│", "")  # with its fix
    assert "failed measurements are stored and not retried unless you pass --retry-failed" in (
        first.output
    )
    with MeasurementStore() as st:
        (failed,) = st.measurements(status="failed")
        assert failed.key.arch == SPACE.format(bad) and str(entry) in failed.measurement.error
        assert "re-export it" in failed.measurement.error  # the fix, in the stored error

    entry.unlink()
    entry.with_suffix(".json").unlink()
    assert (
        "0 measured now, 10 already stored"
        in invoke("profile", "--device", "cpu", "--archs", "0", *SMALL).output
    )  # a failure is not retried unless asked
    retried = invoke("profile", "--device", "cpu", "--archs", "0", *SMALL, "--retry-failed")
    assert retried.exit_code == 0, retried.output
    assert "1 measured now, 9 already stored, 0 failed; 10 ok in the store" in retried.output
    forced = invoke("profile", "--device", "cpu", "--archs", "0", *SMALL, "--force")
    assert "10 measured now, 0 already stored, 0 failed" in forced.output
    with MeasurementStore() as st:
        assert st.count_measurements(status="ok") == 10 == st.count_measurements()


def test_export_of_an_external_device(tmp_path):
    sp = get_space("nb201")
    rows = [(sp.format(sp.from_index(i)), 1.0 + i, None if i % 2 else 2.5) for i in range(4)]
    with MeasurementStore() as st:
        st.import_external_device("edge_tpu", rows, source="edge.csv")
    out = invoke("measurements", "export", "--device", "edge_tpu", "--csv", "-")
    assert out.exit_code == 0, out.output
    exported = list(csv.DictReader(out.output.splitlines()))
    assert [r["arch"] for r in exported] == [r[0] for r in rows]
    assert [r["energy_mj"] for r in exported] == ["2.5", "", "2.5", ""]
    assert [r["energy_method"] for r in exported] == ["imported", "unknown", "imported", "unknown"]
    listing = invoke("measurements", "list")
    assert "edge_tpu (external)" in listing.output


@pytest.mark.parametrize(
    "args, match",
    [
        (["--device", "tpu9"], "hilnas devices list"),
        (["--device", "cpu", "--reps", "0"], "--reps from 1"),
        (["--device", "cpu", "--space", "transformer99"], "nb201"),
        (["--device", "cpu", "--arch", "|nor_conv_3x3~0|+|what~0|"], "malformed"),
        (["--device", "cpu", "--arch", "99999"], "index"),
        (["--device", "cpu", "--threads", "-1"], "threads"),
        (["--device", "cpu", "--channels", "0"], "channels"),
    ],
)
def test_profile_bad_input_leaves_no_store(hilnas_home, args, match):
    msg = user_error(invoke("profile", *args))
    assert match in msg
    # no store, no ONNX cache, no lock: nothing was written under HILNAS_HOME
    assert list(hilnas_home.iterdir()) == []


def test_not_a_hilnas_store_is_refused_everywhere(hilnas_home, tmp_path):
    db = tmp_path / "app.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE invoices (id INTEGER)")
    con.commit()
    con.close()
    before = sha(db)
    url = f"sqlite:///{db}"
    for args in (
        ["profile", "--device", "cpu", "--archs", "1", "--db", url],
        ["devices", "list", "--db", url],
        ["measurements", "list", "--db", url],
        [
            "measurements",
            "export",
            "--device",
            "cpu",
            "--csv",
            str(tmp_path / "x.csv"),
            "--db",
            url,
        ],
    ):
        msg = user_error(invoke(*args))
        assert "not a hilnas store" in msg and str(db) in msg and "HILNAS_DATABASE_URL" in msg
    assert sha(db) == before
    assert not (hilnas_home / "onnx").exists()  # nothing was exported, so nothing measured
    assert not (tmp_path / "x.csv").exists()


def test_unwritable_home(monkeypatch, tmp_path):
    blocker = tmp_path / "plain-file"
    blocker.write_text("x")
    monkeypatch.setenv("HILNAS_HOME", str(blocker / "home"))
    msg = user_error(invoke("profile", "--device", "cpu", "--archs", "1"))
    assert "HILNAS_HOME" in msg and "writable" in msg
    # listing only reads: it needs no writable home and lists the local devices
    listed = invoke("devices", "list", "--json")
    assert listed.exit_code == 0, listed.output
    assert '"local": true' in listed.output


def test_export_unknown_device_or_nothing_measured(tmp_path):
    msg = user_error(
        invoke("measurements", "export", "--device", "gpu7", "--csv", str(tmp_path / "a.csv"))
    )
    assert "hilnas profile --device gpu7" in msg
    assert not (tmp_path / "a.csv").exists()
    msg = user_error(invoke("measurements", "export", "--device", "cpu", "--csv", "-"))
    assert "hilnas profile --device cpu" in msg  # the local CPU, not measured yet


# ----------------------------------------------------------------------------------------------
# the console script in a subprocess
# ----------------------------------------------------------------------------------------------
def hilnas_exe() -> str:
    exe = Path(sys.executable).with_name("hilnas")
    if exe.exists():
        return str(exe)
    found = shutil.which("hilnas")
    if not found:
        pytest.skip("the hilnas console script is not installed (pip install -e .)")
    return found


def run_cli(*args: str, env_home: Path, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, HILNAS_HOME=str(env_home), COLUMNS="200", NO_COLOR="1")
    env.pop("HILNAS_DATABASE_URL", None)
    return subprocess.run(
        [hilnas_exe(), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        **kw,
    )


def test_console_script_bad_input_exit_codes(hilnas_home, tmp_path):
    r = run_cli("profile", "--device", "cpu", "--reps", "0", env_home=hilnas_home)
    assert r.returncode == 2 and "--reps from 1 to" in r.stderr
    assert not (hilnas_home / "hilnas.db").exists()
    db = tmp_path / "foreign.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE x (y)")
    con.commit()
    con.close()
    before = sha(db)
    r = run_cli("measurements", "list", "--db", f"sqlite:///{db}", env_home=hilnas_home)
    assert r.returncode == 2 and "not a hilnas store" in r.stderr and sha(db) == before
    blocker = tmp_path / "f"
    blocker.write_text("x")
    r = run_cli("measurements", "list", env_home=blocker / "home")  # reading needs no home
    assert r.returncode == 0 and "no measurements" in r.stdout and blocker.read_text() == "x"
    r = run_cli("profile", "--device", "cpu", "--archs", "0", env_home=blocker / "home")
    assert r.returncode == 2 and "HILNAS_HOME" in r.stderr


def test_console_script_devices_list_json_shows_the_cpu(hilnas_home):
    r = run_cli("devices", "list", "--json", env_home=hilnas_home)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    cpu = [d for d in rows if d["kind"] == "cpu"]
    assert cpu and cpu[0]["local"] and cpu[0]["id"].startswith("cpu-")


def _ok_rows(db: Path) -> list[tuple]:
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return con.execute(
            "SELECT arch, status, latency_ms_median, energy_mj, energy_method, energy_reason "
            "FROM measurements"
        ).fetchall()
    except sqlite3.OperationalError:  # tables not created yet
        return []
    finally:
        con.close()


def test_sigkill_then_rerun_leaves_exactly_30(hilnas_home):
    """`hilnas profile --device cpu --archs 20 --reps 30`, SIGKILLed once some measurements are
    stored, then rerun: exactly 30 ok rows, no duplicates, positive latency, explicit energy."""
    db = hilnas_home / "hilnas.db"
    args = ("profile", "--device", "cpu", "--archs", "20", "--reps", "30")
    env = dict(os.environ, HILNAS_HOME=str(hilnas_home), COLUMNS="200", NO_COLOR="1")
    env.pop("HILNAS_DATABASE_URL", None)
    proc = subprocess.Popen(
        [hilnas_exe(), *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if len(_ok_rows(db)) >= 4:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "profiling finished before it could be killed"
        stored_before = len(_ok_rows(db))
        assert 4 <= stored_before < 30
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        try:  # the profiler worker runs in the same session: do not leave it behind
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert proc.returncode == -signal.SIGKILL

    r = run_cli(*args, env_home=hilnas_home, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = _ok_rows(db)
    assert len(rows) == 30
    assert len({row[0] for row in rows}) == 30  # no duplicates
    assert all(row[1] == "ok" and row[2] > 0 for row in rows)
    for _, _, _, energy, method, reason in rows:  # energy: a measured value or unknown + reason
        assert method
        assert (energy is not None and method != "unknown") or (energy is None and reason)
    assert f"{30 - stored_before} measured now" in r.stdout or "measured now" in r.stdout
    r2 = run_cli(*args, env_home=hilnas_home)
    assert r2.returncode == 0 and "0 measured now, 30 already stored" in r2.stdout
    assert len(_ok_rows(db)) == 30
