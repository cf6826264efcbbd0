"""Faults and bad input of ``hilnas profile``, ``hilnas measurements`` and ``hilnas devices`` on
the real stack (local CPU, real exporter, ONNX Runtime, SQLite). Every refused case exits 2
with one line ``error: ...`` naming the fix, prints no traceback, and leaves the store's row
count and sha256 unchanged.

Simulated, because the machine cannot be made to lack them on demand: a full disk for the
store (SQLite's ``PRAGMA max_page_count`` on every connection: a real SQLITE_FULL), a full disk
for the ONNX cache (its file write raises ``OSError(ENOSPC)``), and missing packages
(``sys.modules['onnx'] = None`` in a child process before the CLI runs, which makes
``import onnx`` fail as on an install without the ``search`` extra).
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hilnas.devices import get_device
from hilnas.pipeline import refdata
from hilnas.pipeline.spaces import get_space
from hilnas.pipeline.store import MeasurementKey, MeasurementStore
from hilnas.profilers.base import Measurement
from hilnas.profilers.testing import fake_measurement

SPACE = get_space("nb201")
REFS = [SPACE.format(a) for a in SPACE.reference_architectures()]
#: a small model through the CLI's own options, short timings
SMALL = ["--channels", "4", "--cells", "1", "--warmup", "1", "--reps", "3"]


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    from hilnas.flows import cli_common

    for console in (cli_common.console, cli_common.err_console):  # no wrapping in assertions
        monkeypatch.setattr(console, "_width", 400)


def db_of(home: Path) -> Path:
    return home / "hilnas.db"


def state(path: Path) -> tuple[int, str]:
    """(row count, sha256) of a store file; both must survive a refused command."""
    n = None
    for suffix in ("", "&immutable=1"):  # immutable: a read-only directory nobody can write
        con = sqlite3.connect(f"file:{path}?mode=ro{suffix}", uri=True)
        try:
            n = con.execute("SELECT count(*) FROM measurements").fetchone()[0]
            break
        except sqlite3.OperationalError:
            continue
        finally:
            con.close()
    assert n is not None, f"cannot read {path}"
    return n, hashlib.sha256(path.read_bytes()).hexdigest()


def seeded_store(home: Path, n: int = 12) -> Path:
    """A store of the local CPU with ``n`` ok rows, written through the store API (fast)."""
    cpu = get_device("cpu")
    mck = SPACE.default_model_config().key()
    with MeasurementStore(f"sqlite:///{db_of(home)}") as st:
        st.upsert_device(cpu)
        for i in range(n):
            arch = SPACE.format(SPACE.from_index(i))
            k = MeasurementKey("nb201", arch, mck, 17, cpu.id, "CPUExecutionProvider", 1, 1, 5, 30)
            st.add_measurement(k, _ok(), arch_index=i)
    return db_of(home)


def _ok() -> Measurement:
    return fake_measurement(
        0.5,
        latency_ms_p90=0.6,
        latency_ms_iqr=0.01,
        latency_ms_min=0.4,
        warmup=5,
        repetitions=30,
        timed_s=0.015,
    )


def one_line_error(code: int, err: str, *needles: str) -> str:
    """Assert a clean refusal: exit 2, one ``error:`` line, no traceback; return the line."""
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def child(code: str, home: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the CLI in a child process after ``code`` (the simulation) ran there."""
    script = f"import sys\n{code}\nsys.argv = ['hilnas', *{list(args)!r}]\n"
    script += "from hilnas.flows.cli import main\nmain()\n"
    env = {**os.environ, "HILNAS_HOME": str(home), "COLUMNS": "400"}
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=timeout
    )


# ----------------------------------------------------------------------------------------------
# 1. --force never trades a good measurement for a failure
# ----------------------------------------------------------------------------------------------
def test_force_with_a_tiny_timeout_keeps_every_good_row(hilnas_home, hilnas_cli):
    code, out, err = hilnas_cli(["profile", "--device", "cpu", "--archs", "2", *SMALL])
    assert code == 0, err
    db = db_of(hilnas_home)
    ok_before = (
        sqlite3.connect(db)
        .execute("SELECT arch, latency_ms_median FROM measurements WHERE status='ok' ORDER BY arch")
        .fetchall()
    )
    assert len(ok_before) == 12
    code, out, err = hilnas_cli(
        ["profile", "--device", "cpu", "--archs", "0", *SMALL, "--force", "--timeout", "0.001"]
    )
    con = sqlite3.connect(db)
    ok_after = con.execute(
        "SELECT arch, latency_ms_median FROM measurements WHERE status='ok' ORDER BY arch"
    ).fetchall()
    attempts = con.execute("SELECT status, error FROM measurement_attempts").fetchall()
    con.close()
    assert len(ok_after) == 12  # the 10 references may have been re-measured, none lost
    failed_now = 10 - len(set(ok_after) - set(ok_before))
    assert len(attempts) == failed_now and all(s == "failed" and e for s, e in attempts)
    if failed_now:
        assert code == 1 and "earlier ok measurements were kept" in err


# ----------------------------------------------------------------------------------------------
# 2. bounds before any work: nothing stored, nothing created
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--reps", "1000000000000"], "--reps from 1 to"),
        (["--reps", "99999999999999999999999"], "--reps from 1 to"),
        (["--reps", "0"], "--reps from 1 to"),
        (["--threads", "100000"], "logical CPUs"),
        (["--threads", "-1"], "--threads from 0"),
        (["--timeout", "inf"], "--timeout from"),
        (["--timeout", "nan"], "--timeout from"),
        (["--timeout", "-3"], "--timeout from"),
        (["--timeout", "0"], "--timeout from"),
        (["--warmup", "-1"], "--warmup from 0"),
        (["--warmup", "99999999999"], "--warmup from 0"),
        (["--archs", "-1"], "--archs from 0"),
        (["--archs", "1000000"], "--archs from 0"),
        (["--batch-size", "0"], "--batch-size from 1"),
        (["--batch-size", "10000000"], "--batch-size from 1"),
        (["--channels", "100000000"], "--channels from 1 to 512"),
        (["--channels", "0"], "--channels from 1"),
        (["--cells", "100000"], "--cells from 1 to 32"),
        (["--seed", "-1"], "--seed from 0"),
    ],
)
def test_out_of_range_settings_are_refused_before_anything_is_stored(
    hilnas_home, hilnas_cli, args, needle
):
    db = seeded_store(hilnas_home)
    before = state(db)
    code, _out, err = hilnas_cli(["profile", "--device", "cpu", "--archs", "1", *args])
    one_line_error(code, err, needle)
    assert state(db) == before
    assert not (hilnas_home / "onnx").exists()  # nothing exported either


def test_refused_settings_do_not_create_a_store(hilnas_home, hilnas_cli):
    code, _out, err = hilnas_cli(["profile", "--device", "cpu", "--reps", "1000000000000"])
    one_line_error(code, err, "--reps")
    assert not db_of(hilnas_home).exists()


# ----------------------------------------------------------------------------------------------
# 6. an in-memory store would throw the measurements away
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_in_memory_database_is_refused_for_profiling(hilnas_home, hilnas_cli, url):
    code, _out, err = hilnas_cli(
        ["profile", "--device", "cpu", "--archs", "0", *SMALL],
        env={"HILNAS_DATABASE_URL": url},
    )
    one_line_error(code, err, "in-memory", "HILNAS_DATABASE_URL")
    assert not (hilnas_home / "onnx").exists()


# ----------------------------------------------------------------------------------------------
# 4. imported names that mean another device
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["cpu", "gpu0", "cpu-1a2b3c4d", "gold_6226", "a/cpu/t1/b1"])
def test_devices_import_refuses_names_of_other_devices(hilnas_home, hilnas_cli, tmp_path, name):
    db = seeded_store(hilnas_home)
    before = state(db)
    csv_path = tmp_path / "dev.csv"
    csv_path.write_text("arch,latency_ms\n" + "".join(f"{a},1.0\n" for a in REFS))
    code, _out, err = hilnas_cli(["devices", "import", name, "--measurements", str(csv_path)])
    one_line_error(code, err, "another name")
    assert state(db) == before


def test_devices_import_of_the_local_cpu_id(hilnas_home, hilnas_cli, tmp_path):
    csv_path = tmp_path / "dev.csv"
    csv_path.write_text("arch,latency_ms\n" + "".join(f"{a},1.0\n" for a in REFS))
    cpu_id = get_device("cpu").id
    code, _out, err = hilnas_cli(["devices", "import", cpu_id, "--measurements", str(csv_path)])
    one_line_error(code, err, "local device", "_ext")


# ----------------------------------------------------------------------------------------------
# 7. read-only and absent stores
# ----------------------------------------------------------------------------------------------
def test_read_only_commands_on_an_absent_store_create_nothing(tmp_path, hilnas_cli):
    home = tmp_path / "no-home-yet"
    env = {"HILNAS_HOME": str(home)}
    code, out, err = hilnas_cli(["devices", "list", "--json"], env=env)
    assert code == 0, err
    assert get_device("cpu").id in out
    code, out, err = hilnas_cli(["measurements", "list"], env=env)
    assert code == 0 and "no measurements" in out
    code, _out, err = hilnas_cli(
        ["measurements", "export", "--device", "cpu", "--csv", "-"], env=env
    )
    one_line_error(code, err, "no store at", "hilnas profile")
    assert not home.exists()


@pytest.fixture
def archived_home(tmp_path, hilnas_home):
    """A HILNAS_HOME on a read-only filesystem (tmpfs remounted ro, as root) holding a store
    with 12 rows; chmod 555 for other users. Skipped where neither can be made."""
    db = seeded_store(hilnas_home)
    ref = refdata.load_nb201()
    lat = ref.latency("raspi4")
    with MeasurementStore(f"sqlite:///{db}") as st:  # an imported device that can be predicted
        st.import_external_device(
            "lab_board",
            [(SPACE.format(ref.arch_codes[i]), float(lat[i]), None) for i in ref.reference_indices],
        )
    target = tmp_path / "archive"
    target.mkdir()
    data = db_of(hilnas_home).read_bytes()
    if os.geteuid() != 0:
        (target / "hilnas.db").write_bytes(data)
        target.chmod(0o555)
        yield target
        target.chmod(0o755)
        return
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(target)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({made.stderr.decode().strip()})")
    try:
        (target / "hilnas.db").write_bytes(data)
        subprocess.run(["mount", "-o", "remount,ro", str(target)], check=True)
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def test_archived_read_only_home_is_listed_and_exported(archived_home, hilnas_cli, tmp_path):
    env = {"HILNAS_HOME": str(archived_home)}
    before = state(archived_home / "hilnas.db")
    code, out, err = hilnas_cli(["devices", "list", "--json"], env=env)
    assert code == 0, err
    code, out, err = hilnas_cli(["measurements", "list", "--json"], env=env)
    assert code == 0 and '"ok": 12' in out, err
    out_csv = tmp_path / "out.csv"
    code, out, err = hilnas_cli(
        ["measurements", "export", "--device", "cpu", "--csv", str(out_csv)], env=env
    )
    assert code == 0, err
    assert len(out_csv.read_text().splitlines()) == 13
    pred_csv = tmp_path / "pred.csv"
    code, out, err = hilnas_cli(
        ["predict", "--device", "lab_board", "--metric", "latency_ms", "--out", str(pred_csv)],
        env=env,
    )
    assert code == 0, err
    assert len(pred_csv.read_text().splitlines()) == 15_626  # a header and every NB201 arch
    code, _out, err = hilnas_cli(["profile", "--device", "cpu", "--archs", "0"], env=env)
    one_line_error(code, err, "HILNAS_HOME")
    assert state(archived_home / "hilnas.db") == before


# ----------------------------------------------------------------------------------------------
# 5. damaged files
# ----------------------------------------------------------------------------------------------
def test_damaged_store_is_refused_with_the_recovery(hilnas_home, hilnas_cli, tmp_path):
    db = seeded_store(hilnas_home)
    page = sqlite3.connect(db).execute("PRAGMA page_size").fetchone()[0]
    data = bytearray(db.read_bytes())
    data[3 * page : 3 * page + 64] = b"\xff" * 64
    db.write_bytes(bytes(data))
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    for args in (
        ["measurements", "export", "--device", "cpu", "--csv", str(tmp_path / "x.csv")],
        ["devices", "list"],
        ["profile", "--device", "cpu", "--archs", "0", *SMALL],
    ):
        code, _out, err = hilnas_cli(args)
        one_line_error(code, err, str(db), ".recover", "backup")
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest
    assert not (tmp_path / "x.csv").exists()


def test_garbled_architectures_are_not_exported(hilnas_home, hilnas_cli, tmp_path, caplog):
    db = seeded_store(hilnas_home)
    data = db.read_bytes()
    db.write_bytes(data.replace(b"none~0|+|", b"nXne~0|+|"))
    out_csv = tmp_path / "out.csv"
    with caplog.at_level(logging.WARNING, logger="hilnas.pipeline.store"):
        code, _out, err = hilnas_cli(
            ["measurements", "export", "--device", "cpu", "--csv", str(out_csv)]
        )
    assert code == 0, err
    written = out_csv.read_text().splitlines()[1:]
    skipped = 12 - len(written)
    assert skipped > 0 and not any("nXne" in line for line in written)
    assert f"skipped {skipped} stored measurements" in caplog.text  # the CLI logs to stderr


# ----------------------------------------------------------------------------------------------
# 3. disk full: the store, the ONNX cache
# ----------------------------------------------------------------------------------------------
FULL_DISK = """
from sqlalchemy import Engine, event
def _full(dbapi_connection, _record):
    dbapi_connection.execute("PRAGMA max_page_count=1")
event.listen(Engine, "connect", _full)
"""


def test_disk_full_while_measuring_keeps_what_was_committed(hilnas_home):
    db = seeded_store(hilnas_home, n=2)
    result = child(FULL_DISK, hilnas_home, "profile", "--device", "cpu", "--archs", "40", *SMALL)
    one_line_error(result.returncode, result.stderr.splitlines()[-1], str(db))
    assert "free disk space, then rerun the same command to resume" in result.stderr
    assert "Traceback" not in result.stderr and "OperationalError" not in result.stderr
    assert state(db)[0] >= 2  # the earlier rows (and any committed before the disk filled)


def test_disk_full_while_opening_says_so(hilnas_home):
    result = child(FULL_DISK, hilnas_home, "profile", "--device", "cpu", "--archs", "0", *SMALL)
    line = one_line_error(result.returncode, result.stderr, "free disk space")
    assert "password" not in line and str(db_of(hilnas_home)) in line


def test_export_cache_full_is_a_resource_error(hilnas_home, hilnas_cli, monkeypatch):
    from hilnas.pipeline import export

    def no_space(path, data):  # the cache's disk is full (simulated: no real full disk here)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export, "_atomic_write", no_space)
    code, _out, err = hilnas_cli(["profile", "--device", "cpu", "--archs", "0", *SMALL])
    last = err.strip().splitlines()[-1]  # after the progress bar's last state
    one_line_error(code, last, "ONNX cache", "free disk space, then rerun the same command")
    assert "failed measurements are stored" not in err
    con = sqlite3.connect(db_of(hilnas_home))
    assert con.execute("SELECT count(*) FROM measurements").fetchone()[0] == 0


# ----------------------------------------------------------------------------------------------
# 9. a missing extra is a precondition
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("missing", ["onnx", "torch"])
def test_missing_search_extra_is_refused_before_anything_is_stored(hilnas_home, missing):
    result = child(f"sys.modules[{missing!r}] = None", hilnas_home, "profile", "--device", "cpu")
    one_line_error(
        result.returncode, result.stderr, missing, 'pip install "hilnas[search]"', "hilnas agent"
    )
    assert not db_of(hilnas_home).exists()


# ----------------------------------------------------------------------------------------------
# 8. Ctrl-C says what was kept
# ----------------------------------------------------------------------------------------------
def test_ctrl_c_says_what_was_kept(hilnas_home):
    db = db_of(hilnas_home)
    env = {**os.environ, "HILNAS_HOME": str(hilnas_home), "COLUMNS": "400"}
    args = ["profile", "--device", "cpu", "--archs", "20", *SMALL[:-2], "--reps", "200"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "hilnas.flows.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        try:
            if sqlite3.connect(db).execute("SELECT count(*) FROM measurements").fetchone()[0]:
                break
        except sqlite3.Error:
            pass
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=120)
    kept = sqlite3.connect(db).execute("SELECT count(*) FROM measurements").fetchone()[0]
    assert proc.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: interrupted: kept ") and "rerun the same command" in last
    assert f"kept {kept} measurement(s)" in last
