"""``hilnas devices``, ``hilnas profile`` and ``hilnas measurements``: CliRunner with fakes of the
exporter/profiler/discovery, real subprocesses of the console script, and the SIGKILL test."""

from __future__ import annotations

import csv
import hashlib
import importlib
import importlib.util
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hilnas.flows.cli import app
from hilnas.flows.cli_common import UserError
from hilnas.pipeline.store import MeasurementStore
from typer.testing import CliRunner

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


def load_fakes():
    name = "hilnas_test_profiling_fakes"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, ROOT / "tests" / "pipeline" / "profiling_fakes.py"
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


fakes = load_fakes()


@pytest.fixture
def fake_stack(monkeypatch, tmp_path):
    from hilnas.flows import cli_common

    fakes.install(monkeypatch, onnx_root=tmp_path / "onnx")
    for console in (cli_common.console, cli_common.err_console):  # no wrapping in assertions
        monkeypatch.setattr(console, "_width", 250)
    return fakes


def invoke(*args: str):
    return runner.invoke(app, list(args))


def user_error(result) -> str:
    """The message of the UserError a command raised (main() prints it and exits 2)."""
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, UserError), (result.exception, result.output)
    return str(result.exception)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------------------------
# CliRunner
# ----------------------------------------------------------------------------------------------
def test_devices_list_json_and_table(fake_stack, hilnas_home):
    result = invoke("devices", "list", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert rows[0]["id"] == "cpu-feedbeef" and rows[0]["kind"] == "cpu" and rows[0]["local"]
    assert rows[0]["stored"] is False and rows[0]["configurations"] == []
    assert invoke("profile", "--device", "cpu", "--archs", "0", "--reps", "3").exit_code == 0
    rows = json.loads(invoke("devices", "list", "--json").output)
    assert rows[0]["stored"] and rows[0]["configurations"][0]["ok"] == 10
    table = invoke("devices", "list")
    assert table.exit_code == 0 and "cpu-feedbeef" in table.output


def test_profile_table_rerun_and_export(fake_stack, hilnas_home, tmp_path):
    result = invoke("profile", "--device", "cpu", "--archs", "3", "--reps", "5", "--seed", "1")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "summary" in out and "13 planned: 13 measured now, 0 already stored, 0 failed" in out
    assert "unknown" in out  # the energy status is explicit
    again = invoke("profile", "--device", "cpu", "--archs", "3", "--reps", "5", "--seed", "1")
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
    assert all(r["energy_mj"] == "" and r["energy_method"] == "unknown" for r in rows)
    assert all(
        r["config_key"] == "cpu-feedbeef/cpu/t1/b1" and r["repetitions"] == "5" for r in rows
    )

    listing = invoke("measurements", "list", "--json")
    data = json.loads(listing.output)
    assert data["configurations"][0]["ok"] == 13
    assert "cpu-feedbeef/cpu/t1/b1" in invoke("measurements", "list").output


def test_profile_json_report(fake_stack):
    result = invoke("profile", "--device", "cpu", "--archs", "1", "--reps", "2", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["measured"] == 11 and report["energy_status"].startswith("unknown")
    assert len(report["rows"]) == 11 and report["rows"][0]["reference"] is True


def test_export_of_an_external_device(fake_stack, tmp_path):
    from hilnas.pipeline.spaces import get_space

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
        (["--device", "cpu", "--reps", "0"], "--reps 1"),
        (["--device", "cpu", "--space", "transformer99"], "available: nb201"),
        (["--device", "cpu", "--arch", "|nor_conv_3x3~0|+|what~0|"], "malformed"),
        (["--device", "cpu", "--arch", "99999"], "index"),
        (["--device", "cpu", "--threads", "-1"], "threads"),
        (["--device", "cpu", "--channels", "0"], "channels"),
    ],
)
def test_profile_bad_input_leaves_no_store(fake_stack, hilnas_home, args, match):
    msg = user_error(invoke("profile", *args))
    assert match in msg
    assert not (hilnas_home / "hilnas.db").exists()
    assert fake_stack.FakeProfiler.instances == []


def test_not_a_hilnas_store_is_refused_everywhere(fake_stack, tmp_path):
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
    assert sha(db) == before and fake_stack.FakeProfiler.instances == []


def test_unwritable_home(fake_stack, monkeypatch, tmp_path):
    blocker = tmp_path / "plain-file"
    blocker.write_text("x")
    monkeypatch.setenv("HILNAS_HOME", str(blocker / "home"))
    for args in (["profile", "--device", "cpu", "--archs", "1"], ["devices", "list"]):
        msg = user_error(invoke(*args))
        assert "HILNAS_HOME" in msg and "writable" in msg


def test_export_unknown_device_or_nothing_measured(fake_stack, tmp_path):
    msg = user_error(
        invoke("measurements", "export", "--device", "gpu7", "--csv", str(tmp_path / "a.csv"))
    )
    assert "hilnas profile --device gpu7" in msg
    assert not (tmp_path / "a.csv").exists()


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
        [hilnas_exe(), *args], capture_output=True, text=True, timeout=timeout, env=env, **kw
    )


def test_console_script_bad_input_exit_codes(hilnas_home, tmp_path):
    r = run_cli("profile", "--device", "cpu", "--reps", "0", env_home=hilnas_home)
    assert r.returncode == 2 and "--reps must be at least 1" in r.stderr
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
    r = run_cli("measurements", "list", env_home=blocker / "home")
    assert r.returncode == 2 and "HILNAS_HOME" in r.stderr


def _real_stack_available() -> bool:
    try:
        return (
            importlib.util.find_spec("hilnas.pipeline.export") is not None
            and hasattr(importlib.import_module("hilnas.profilers"), "OrtProfiler")
            and hasattr(importlib.import_module("hilnas.devices"), "discover")
        )
    except ImportError:
        return False


real_stack = pytest.mark.skipif(
    not _real_stack_available(), reason="exporter/profiler/discovery not built yet"
)


@real_stack
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


@real_stack
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
