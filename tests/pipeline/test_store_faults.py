"""Faults of the measurement store on real SQLite files: forced re-measurements that fail, an
old schema, a full disk, a read-only or absent store, an in-memory URL, damaged pages, and
names or CSVs that must not be imported. After every refused case the file's row count and
sha256 are unchanged (nothing stored is lost).

Only one thing is simulated: a full disk, by SQLite's own ``PRAGMA max_page_count`` set on
every new connection (SQLite then fails with SQLITE_FULL, "database or disk is full", exactly
as on a full filesystem). The read-only directory is a real read-only tmpfs mount (root) or a
chmod-ed directory (other users); the test is skipped where neither can be made.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hilnas.devices.base import DeviceInfo, DeviceKind
from hilnas.devices.errors import (
    DataIntegrityError,
    InvalidInputError,
    NotFoundError,
    ResourceError,
)
from hilnas.pipeline.spaces import get_space
from hilnas.pipeline.store import (
    QUALITY_COLUMNS,
    SCHEMA_VERSION,
    AddResult,
    ExternalNameError,
    MeasurementKey,
    MeasurementStore,
    StoreDamagedError,
    StoreFullError,
    StoreNotFoundError,
    StoreReadOnlyError,
    check_external_name,
    read_external_csv,
)
from hilnas.profilers.base import Measurement, MeasurementStatus
from hilnas.profilers.testing import fake_measurement
from sqlalchemy import Engine, event

SPACE = get_space("nb201")
REFS = [SPACE.format(a) for a in SPACE.reference_architectures()]
MCK = SPACE.default_model_config().key()
DEV = DeviceInfo(
    id="bench-box",
    kind=DeviceKind.CPU,
    name="Test CPU",
    fingerprint="f" * 64,
    properties={"logical_cores": 2},
    energy_counter=None,
    energy_unavailable_reason="no RAPL in tests",
    aliases=(),
)


def key(arch: str = REFS[0]) -> MeasurementKey:
    return MeasurementKey("nb201", arch, MCK, 17, DEV.id, "CPUExecutionProvider", 1, 1, 1, 3)


def measurement(ok: bool = True, latency: float = 1.25) -> Measurement:
    return fake_measurement(latency, ok=ok, cv=0.0)


def make_store(path: Path, n: int = 12) -> Path:
    """A closed store file with ``n`` ok measurements (WAL checkpointed into the file)."""
    with MeasurementStore(f"sqlite:///{path}") as st:
        st.upsert_device(DEV)
        archs = REFS + [SPACE.format(SPACE.from_index(i)) for i in range(n)]
        for arch in list(dict.fromkeys(archs))[:n]:
            assert st.add_measurement(key(arch), measurement()) is AddResult.INSERTED
    return path


def rows(path: Path) -> int:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return con.execute("SELECT count(*) FROM measurements").fetchone()[0]
    finally:
        con.close()


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextlib.contextmanager
def full_disk(pages: int = 1) -> Iterator[None]:
    """Every SQLite connection opened inside the block may not grow the file (SQLITE_FULL)."""

    def limit(dbapi_connection, _record):
        dbapi_connection.execute(f"PRAGMA max_page_count={pages}")

    event.listen(Engine, "connect", limit)
    try:
        yield
    finally:
        event.remove(Engine, "connect", limit)


# ----------------------------------------------------------------------------------------------
# a failed re-measurement never destroys a good one
# ----------------------------------------------------------------------------------------------
def test_forced_failure_keeps_the_ok_row_and_records_the_attempt(tmp_path):
    path = make_store(tmp_path / "s.db", n=12)
    with MeasurementStore(f"sqlite:///{path}") as st:
        before = st.get_measurement(key(REFS[0]))
        assert st.add_measurement(key(REFS[0]), measurement(ok=False), force=True) is (
            AddResult.KEPT
        )
        after = st.get_measurement(key(REFS[0]))
        assert after == before and after.status is MeasurementStatus.OK
        (attempt,) = st.attempts(config_key=key().config_key)
        assert attempt["status"] == "failed" and "timed out" in attempt["error"]
        assert attempt["measurement_id"] == before.id and attempt["arch"] == REFS[0]
        # a successful forced re-measurement still replaces; a failure over a failure too
        assert st.add_measurement(key(REFS[0]), measurement(latency=2.0), force=True) is (
            AddResult.REPLACED
        )
        assert st.get_measurement(key(REFS[0])).measurement.latency_ms_median == 2.0
        assert st.count_measurements(status="ok") == 12


def test_old_schema_store_is_migrated_and_keeps_every_row(tmp_path):
    path = make_store(tmp_path / "v1.db", n=12)
    con = sqlite3.connect(path)  # turn it into what hilnas schema 1 wrote
    con.execute("DROP TABLE measurement_attempts")
    for column in QUALITY_COLUMNS:  # added by schema 3
        con.execute(f"ALTER TABLE measurements DROP COLUMN {column}")
    con.execute("UPDATE hilnas_meta SET value='1' WHERE key='schema_version'")
    con.commit()
    con.close()
    digest = sha(path)
    with MeasurementStore(f"sqlite:///{path}", read_only=True) as ro:  # reading: no migration
        assert len(ro.measurements()) == 12 and ro.attempts() == [] and ro.schema_version == 1
    assert sha(path) == digest
    with MeasurementStore(f"sqlite:///{path}") as st:
        assert st.schema_version == SCHEMA_VERSION == 3
        assert len(st.measurements()) == 12
        assert st.add_measurement(key(REFS[1]), measurement(ok=False), force=True) is (
            AddResult.KEPT
        )
        assert len(st.attempts()) == 1


# ----------------------------------------------------------------------------------------------
# disk full
# ----------------------------------------------------------------------------------------------
def test_disk_full_while_committing_is_a_resource_error_and_keeps_earlier_rows(tmp_path):
    path = make_store(tmp_path / "s.db", n=10)
    with MeasurementStore(f"sqlite:///{path}") as st, full_disk():
        st.close()  # new connections get the limit
        added = 0
        with pytest.raises(StoreFullError) as info:
            for i in range(200, 2200):
                st.add_measurement(key(SPACE.format(SPACE.from_index(i))), measurement())
                added += 1
    message = str(info.value)
    assert isinstance(info.value, ResourceError)
    assert str(path) in message and "free disk space, then rerun the same command" in message
    assert "\n" not in message
    assert rows(path) == 10 + added  # every committed row is there, the failed one is not


def test_disk_full_while_opening_a_new_store(tmp_path):
    path = tmp_path / "new.db"
    with full_disk(), pytest.raises(ResourceError, match="free disk space, then rerun") as info:
        MeasurementStore(f"sqlite:///{path}")
    assert str(path) in str(info.value) and "password" not in str(info.value)


# ----------------------------------------------------------------------------------------------
# read-only and absent stores, in-memory URLs
# ----------------------------------------------------------------------------------------------
def test_read_only_open_of_an_absent_store_creates_nothing(tmp_path, monkeypatch):
    home = tmp_path / "never-made"
    monkeypatch.setenv("HILNAS_HOME", str(home))
    with pytest.raises(StoreNotFoundError, match="no store at .* yet.*hilnas profile") as info:
        MeasurementStore(read_only=True)
    assert isinstance(info.value, NotFoundError)
    assert not home.exists()


def test_read_only_open_reads_and_never_writes(tmp_path):
    path = make_store(tmp_path / "s.db")
    digest = sha(path)
    with MeasurementStore(f"sqlite:///{path}", read_only=True) as ro:
        assert len(ro.measurements()) == 12 and [d.id for d in ro.devices()] == [DEV.id]
        with pytest.raises(StoreReadOnlyError):
            ro.add_measurement(key(REFS[0]), measurement(), force=True)
        with pytest.raises(StoreReadOnlyError):
            ro.upsert_device(DEV)
    assert sha(path) == digest and rows(path) == 12


@pytest.fixture
def read_only_dir(tmp_path) -> Iterator[Path]:
    """A directory nobody can write: a read-only tmpfs mount as root, chmod 555 otherwise."""
    target = tmp_path / "archive"
    target.mkdir()
    make_store(tmp_path / "s.db")
    if os.geteuid() != 0:
        (target / "hilnas.db").write_bytes((tmp_path / "s.db").read_bytes())
        target.chmod(0o555)
        yield target
        target.chmod(0o755)
        return
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(target)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()})")
    try:
        (target / "hilnas.db").write_bytes((tmp_path / "s.db").read_bytes())
        subprocess.run(["mount", "-o", "remount,ro", str(target)], check=True)
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def test_read_only_directory_is_listed_and_read(read_only_dir, monkeypatch):
    monkeypatch.setenv("HILNAS_HOME", str(read_only_dir))
    with pytest.raises(OSError):  # the directory really is read-only
        (read_only_dir / "probe").write_text("x")
    digest = sha(read_only_dir / "hilnas.db")
    with MeasurementStore(read_only=True) as ro:
        assert len(ro.measurements()) == 12
        assert ro.latency_table(key().config_key)
    assert sha(read_only_dir / "hilnas.db") == digest
    assert sorted(p.name for p in read_only_dir.iterdir()) == ["hilnas.db"]


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_in_memory_store_is_refused_for_measuring(url):
    with MeasurementStore(url) as st:
        assert st.in_memory
        with pytest.raises(InvalidInputError, match="in-memory.*lose them on exit"):
            st.require_persistent("`hilnas profile`")


def test_file_store_is_persistent(tmp_path):
    with MeasurementStore(f"sqlite:///{tmp_path / 's.db'}") as st:
        assert not st.in_memory
        st.require_persistent()  # no error


# ----------------------------------------------------------------------------------------------
# damaged files
# ----------------------------------------------------------------------------------------------
def test_damaged_pages_are_refused_on_open(tmp_path):
    path = make_store(tmp_path / "s.db")
    con = sqlite3.connect(path)
    page_size = con.execute("PRAGMA page_size").fetchone()[0]
    con.close()
    data = bytearray(path.read_bytes())
    data[3 * page_size : 3 * page_size + 64] = b"\xff" * 64  # a b-tree page header
    path.write_bytes(bytes(data))
    digest = sha(path)
    for read_only in (True, False):
        with pytest.raises(StoreDamagedError) as info:
            MeasurementStore(f"sqlite:///{path}", read_only=read_only)
        message = str(info.value)
        assert isinstance(info.value, DataIntegrityError)
        assert str(path) in message and ".recover" in message and "backup" in message
    assert sha(path) == digest


def test_garbled_architectures_are_never_returned(tmp_path, caplog):
    path = make_store(tmp_path / "s.db")
    data = path.read_bytes()
    garbled = data.replace(b"nor_conv_3x3~0|+|", b"nor_conv_9x9~0|+|")
    assert garbled != data
    path.write_bytes(garbled)
    with MeasurementStore(f"sqlite:///{path}", read_only=True) as ro:
        with caplog.at_level(logging.WARNING, logger="hilnas.pipeline.store"):
            records = ro.measurements()
            table = ro.latency_table(key().config_key)
    skipped = rows(path) - len(records)
    assert skipped > 0 and all("9x9" not in r.key.arch for r in records)
    assert all("9x9" not in a for a in table) and len(table) == len(records)
    assert any(f"skipped {skipped} stored measurements" in r.message for r in caplog.records)


def test_check_integrity_on_request(tmp_path):
    path = make_store(tmp_path / "s.db")
    with MeasurementStore(f"sqlite:///{path}", read_only=True) as ro:
        ro.check_integrity(full=True)  # a healthy file passes


# ----------------------------------------------------------------------------------------------
# imported device names and CSVs
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("cpu", "local device.*'cpu_ext'"),
        ("CPU", "local device"),
        ("gpu", "local device"),
        ("gpu0", "local device.*'gpu0_ext'"),
        ("cpu-1a2b3c4d", "local device"),
        ("gpu-deadbeef", "local device"),
        ("gold_6226", "reference device.*'gold_6226_ext'"),
        ("cpu-1a2b3c4d/cpu/t1/b1", "configuration key.*'cpu-1a2b3c4d_cpu_t1_b1_ext'"),
        ("", "needs a name"),
        ("bad name", "letters, digits"),
    ],
)
def test_import_refuses_names_that_mean_another_device(tmp_path, name, match):
    path = make_store(tmp_path / "s.db")
    digest = sha(path)
    with MeasurementStore(f"sqlite:///{path}") as st:
        with pytest.raises(ExternalNameError, match=match) as info:
            st.import_external_device(name, [(a, 1.0) for a in REFS])
        assert st.external_devices() == []
    assert isinstance(info.value, InvalidInputError) and "\n" not in str(info.value)
    assert rows(path) == 12 and sha(path) == digest


def test_the_local_cpu_id_and_its_free_alternative(tmp_path):
    from hilnas.devices import get_device

    cpu = get_device("cpu")
    with pytest.raises(ExternalNameError, match="local device"):
        check_external_name(cpu.id)
    assert check_external_name("jetson_nano") == "jetson_nano"
    assert check_external_name("cpu_ext") == "cpu_ext"  # the suggested alternative is free


def test_a_huge_csv_field_names_the_line(tmp_path):
    p = tmp_path / "big.csv"
    p.write_text(f'arch,latency_ms\n{REFS[0]},1.0\n"{"x" * 140_000}",1.0\n')
    with pytest.raises(InvalidInputError, match=r"big.csv line 3: .*field larger") as info:
        read_external_csv(p)
    assert "\n" not in str(info.value)


def test_a_short_csv_line_names_the_line(tmp_path):
    p = tmp_path / "short.csv"
    p.write_text(f"arch,latency_ms\n{REFS[0]},1.0\n{REFS[1]}\n")
    with pytest.raises(InvalidInputError, match=r"short.csv line 3: too few fields"):
        read_external_csv(p)
