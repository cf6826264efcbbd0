"""Conformance suite of the measurement store, run over SQLite and (when
HILNAS_TEST_POSTGRES_URL is set) PostgreSQL, each test in a fresh database/schema."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sqlite3
import threading
import uuid
from datetime import timezone

import pytest
from hilnas.devices.base import DeviceInfo, DeviceKind, DeviceNotFoundError
from hilnas.devices.errors import InvalidInputError
from hilnas.pipeline.spaces import get_space
from hilnas.pipeline.store import (
    SCHEMA_VERSION,
    AddResult,
    MeasurementKey,
    MeasurementStore,
    NotAHilnasStoreError,
    StoreError,
    TargetNotFoundError,
    measurements_table,
    read_external_csv,
)
from hilnas.profilers.base import EnergyMethod, Measurement, MeasurementStatus
from hilnas.profilers.testing import fake_measurement
from sqlalchemy import create_engine, insert, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

PG_ENV = "HILNAS_TEST_POSTGRES_URL"
SPACE = get_space("nb201")
REFS = [SPACE.format(a) for a in SPACE.reference_architectures()]
MCK = SPACE.default_model_config().key()


# ----------------------------------------------------------------------------------------------
# backends
# ----------------------------------------------------------------------------------------------
def _pg_url_with_schema(base: str, schema: str) -> str:
    url = make_url(base)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False
    )


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
def db_url(request, tmp_path):
    """A URL of an empty database: an SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store' / 'hilnas.db'}"
        return
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} is not set (PostgreSQL conformance runs in CI)")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(_pg_url_with_schema(base, "public"))
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield _pg_url_with_schema(base, schema)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def store(db_url):
    s = MeasurementStore(db_url)
    yield s
    s.close()


# ----------------------------------------------------------------------------------------------
# factories
# ----------------------------------------------------------------------------------------------
def device(dev_id="cpu-0badc0de", fingerprint="f" * 64, **kw) -> DeviceInfo:
    return DeviceInfo(
        id=dev_id,
        kind=kw.pop("kind", DeviceKind.CPU),
        name=kw.pop("name", "Test CPU"),
        fingerprint=fingerprint,
        properties=kw.pop("properties", {"physical_cores": 2, "logical_cores": 4}),
        energy_counter=kw.pop("energy_counter", None),
        energy_unavailable_reason=kw.pop("energy_unavailable_reason", "no RAPL in tests"),
        aliases=kw.pop("aliases", ("cpu", "cpu0")),
    )


def key(arch=REFS[0], dev_id="cpu-0badc0de", **kw) -> MeasurementKey:
    values = dict(
        space="nb201",
        arch=arch,
        model_config_key=MCK,
        opset=17,
        device_id=dev_id,
        execution_provider="CPUExecutionProvider",
        threads=1,
        batch_size=1,
        warmup=5,
        repetitions=30,
    )
    values.update(kw)
    return MeasurementKey(**values)


def measurement(k: MeasurementKey | None = None, latency=1.5, **kw) -> Measurement:
    k = k or key()
    values = dict(
        latency_ms_mean=latency * 1.01,
        latency_ms_p90=latency * 1.1,
        latency_ms_iqr=latency * 0.05,
        latency_ms_cv=0.03,
        latency_ms_min=latency * 0.95,
        energy_reason="no RAPL in tests",
        peak_memory_mb=12.5,
        memory_method="rss_delta",
        onnxruntime_version="1.99.0",
        execution_provider=k.execution_provider,
        intra_op_threads=k.threads,
        batch_size=k.batch_size,
        warmup=k.warmup,
        repetitions=k.repetitions,
        timed_s=latency * k.repetitions / 1000,
        wall_s=0.2,
    )
    values.update(kw)
    return fake_measurement(latency, **values)


def failed(k: MeasurementKey | None = None, error="worker crashed (SIGSEGV)") -> Measurement:
    return measurement(
        k,
        ok=False,
        error=error,
        latency_ms_mean=None,
        latency_ms_p90=None,
        latency_ms_iqr=None,
        latency_ms_cv=None,
        latency_ms_min=None,
        timed_s=None,
    )


def sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


# ----------------------------------------------------------------------------------------------
# opening
# ----------------------------------------------------------------------------------------------
def test_fresh_store_has_marker_and_reopens(db_url):
    with MeasurementStore(db_url) as s:
        meta = s.meta()
        assert meta["app"] == "hilnas"
        assert s.schema_version == SCHEMA_VERSION == 3
    with MeasurementStore(db_url) as s:  # reopening an existing store changes nothing
        assert s.meta() == meta


def test_default_url_under_hilnas_home(hilnas_home):
    with MeasurementStore() as s:
        assert s.url == f"sqlite:///{hilnas_home / 'hilnas.db'}"
    assert (hilnas_home / "hilnas.db").exists()
    con = sqlite3.connect(hilnas_home / "hilnas.db")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


def test_database_url_env(monkeypatch, tmp_path):
    target = tmp_path / "elsewhere" / "x.db"
    monkeypatch.setenv("HILNAS_DATABASE_URL", f"sqlite:///{target}")
    with MeasurementStore() as s:
        assert str(target) in s.url
    assert target.exists()


def test_unwritable_home_is_a_store_error(monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("HILNAS_HOME", str(blocker / "home"))
    with pytest.raises(StoreError, match="HILNAS_HOME") as info:
        MeasurementStore()
    assert "writable" in str(info.value)


def test_sqlite_with_foreign_tables_is_refused_and_untouched(tmp_path):
    path = tmp_path / "other.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    con.execute("INSERT INTO customers VALUES (1, 'x')")
    con.commit()
    con.close()
    before, mtime = sha(path), path.stat().st_mtime_ns
    with pytest.raises(NotAHilnasStoreError) as info:
        MeasurementStore(f"sqlite:///{path}")
    msg = str(info.value)
    assert str(path) in msg and "not a hilnas store" in msg and "customers" in msg
    assert "did not modify" in msg and "HILNAS_DATABASE_URL" in msg
    assert sha(path) == before and path.stat().st_mtime_ns == mtime
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")] == [
        "customers"
    ]
    con.close()
    assert not (tmp_path / "other.db-wal").exists()


def test_a_file_that_is_not_sqlite_is_refused_and_untouched(tmp_path):
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database\n" * 200)
    before = sha(path)
    with pytest.raises(NotAHilnasStoreError, match="not an SQLite database"):
        MeasurementStore(f"sqlite:///{path}")
    assert sha(path) == before


def test_foreign_tables_refused_on_any_backend(db_url):
    engine = create_engine(_plain(db_url))
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE flow_runs (id INTEGER PRIMARY KEY)"))
    with pytest.raises(NotAHilnasStoreError, match="flow_runs"):
        MeasurementStore(db_url)
    with engine.connect() as conn:
        names = set(
            conn.execute(
                text("SELECT name FROM sqlite_master WHERE type='table'")
                if engine.dialect.name == "sqlite"
                else text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
            ).scalars()
        )
    engine.dispose()
    assert names == {"flow_runs"}


def _plain(db_url: str) -> str:
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        os.makedirs(os.path.dirname(url.database), exist_ok=True)
    return url.render_as_string(hide_password=False)


def test_wrong_marker_and_newer_schema_are_refused(db_url):
    MeasurementStore(db_url).close()
    engine = create_engine(_plain(db_url))
    with engine.begin() as conn:
        conn.execute(text("UPDATE hilnas_meta SET value = '99' WHERE key = 'schema_version'"))
    with pytest.raises(StoreError, match="newer hilnas") as info:
        MeasurementStore(db_url)
    assert "pip install -U hilnas" in str(info.value)
    with engine.begin() as conn:
        conn.execute(text("UPDATE hilnas_meta SET value = 'something-else' WHERE key = 'app'"))
    with pytest.raises(NotAHilnasStoreError, match="marker"):
        MeasurementStore(db_url)
    engine.dispose()


def test_password_is_hidden():
    s = MeasurementStore.__new__(MeasurementStore)
    from hilnas.pipeline.store import redact

    assert "secret" not in redact("postgresql+psycopg://u:secret@h/db")
    del s


def test_postgres_unreachable_is_a_store_error():
    pytest.importorskip("psycopg")
    with pytest.raises(StoreError, match="cannot open the store") as info:
        MeasurementStore("postgresql://u:pw@127.0.0.1:1/nope?connect_timeout=2")
    assert "pw" not in str(info.value)


def test_unsupported_url():
    with pytest.raises(StoreError, match="SQLite or PostgreSQL"):
        MeasurementStore("mysql://u@h/db")
    with pytest.raises(StoreError, match="not a database URL"):
        MeasurementStore("definitely not a url")


# ----------------------------------------------------------------------------------------------
# devices
# ----------------------------------------------------------------------------------------------
def test_upsert_device_keeps_first_seen(store):
    store.upsert_device(device())
    first = store.device_seen("cpu-0badc0de")
    assert first[0].tzinfo is not None
    store.upsert_device(device(name="Renamed CPU", fingerprint="e" * 64))
    again = store.device_seen("cpu-0badc0de")
    assert again[0] == first[0] and again[1] >= first[1]
    got = store.device("cpu-0badc0de")
    assert got.name == "Renamed CPU" and got.fingerprint == "e" * 64
    assert got.kind is DeviceKind.CPU and got.aliases == ("cpu", "cpu0")
    assert got.properties == {"physical_cores": 2, "logical_cores": 4}
    assert [d.id for d in store.devices()] == ["cpu-0badc0de"]


def test_unknown_device_lists_known(store):
    store.upsert_device(device())
    with pytest.raises(DeviceNotFoundError) as info:
        store.device("gpu-nothere")
    assert "cpu-0badc0de" in str(info.value) and "hilnas devices list" in str(info.value)


# ----------------------------------------------------------------------------------------------
# measurements
# ----------------------------------------------------------------------------------------------
def test_add_is_idempotent_and_force_replaces(store):
    store.upsert_device(device())
    k = key()
    assert not store.has_measurement(k)
    assert store.add_measurement(k, measurement(k, 1.5), onnx_sha256="a" * 64) is AddResult.INSERTED
    assert store.add_measurement(k, measurement(k, 9.9)) is AddResult.EXISTS
    rows = store.measurements()
    assert len(rows) == 1 and rows[0].measurement.latency_ms_median == 1.5
    assert store.add_measurement(k, measurement(k, 2.5), force=True) is AddResult.REPLACED
    rows = store.measurements()
    assert len(rows) == 1 and rows[0].measurement.latency_ms_median == 2.5
    assert store.has_measurement(k) and store.has_measurement(k, ok_only=True)


def test_roundtrip_of_every_field(store):
    store.upsert_device(device())
    k = key(REFS[3])
    m = measurement(
        k, 3.25, energy_mj=4.5, energy_method=EnergyMethod.RAPL_POWERCAP, energy_reason=None
    )
    store.add_measurement(k, m, onnx_sha256="b" * 64, exporter="direct", export_s=0.02, host="h1")
    rec = store.get_measurement(k)
    assert rec.key == k and rec.measurement == m
    assert rec.arch_index == SPACE.index(SPACE.parse(k.arch))
    assert rec.config_key == "cpu-0badc0de/cpu/t1/b1" == k.config_key
    assert rec.device_fingerprint == "f" * 64
    assert rec.onnx_sha256 == "b" * 64 and rec.exporter == "direct" and rec.export_s == 0.02
    assert rec.host == "h1" and rec.hilnas_version
    assert rec.created_at.tzinfo == timezone.utc
    d = rec.to_dict()
    assert d["arch"] == k.arch and d["status"] == "ok" and d["energy_method"] == "rapl_powercap"


def test_failed_measurements_are_stored_and_count_as_present(store):
    store.upsert_device(device())
    k = key(REFS[1])
    store.add_measurement(k, failed(k))
    assert store.measurement_status(k) is MeasurementStatus.FAILED
    assert store.has_measurement(k) and not store.has_measurement(k, ok_only=True)
    assert store.add_measurement(k, measurement(k)) is AddResult.EXISTS
    assert store.get_measurement(k).measurement.error == "worker crashed (SIGSEGV)"
    assert store.add_measurement(k, measurement(k), force=True) is AddResult.REPLACED
    assert store.measurement_status(k) is MeasurementStatus.OK


def test_every_key_field_distinguishes_measurements(store):
    store.upsert_device(device())
    base = key()
    variants = [
        base,
        dataclasses.replace(base, arch=REFS[1]),
        dataclasses.replace(base, model_config_key="C8-N1-in3x32-cls10"),
        dataclasses.replace(base, opset=18),
        dataclasses.replace(base, execution_provider="CUDAExecutionProvider"),
        dataclasses.replace(base, threads=4),
        dataclasses.replace(base, batch_size=8),
        dataclasses.replace(base, warmup=0),
        dataclasses.replace(base, repetitions=100),
    ]
    for k in variants:
        assert store.add_measurement(k, measurement(k)) is AddResult.INSERTED
    assert store.count_measurements() == len(variants)
    assert store.statuses(variants) == {k: MeasurementStatus.OK for k in variants}
    other_device = key(dev_id="cpu-11111111")
    store.upsert_device(device("cpu-11111111"))
    assert store.add_measurement(other_device, measurement(other_device)) is AddResult.INSERTED


def test_unique_constraint_is_in_the_database(store, db_url):
    store.upsert_device(device())
    k = key()
    store.add_measurement(k, measurement(k))
    row = store.get_measurement(k)
    values = {c.name: None for c in measurements_table.columns}
    values.update(
        space=k.space,
        arch=k.arch,
        model_config_key=k.model_config_key,
        opset=k.opset,
        device_id=k.device_id,
        device_fingerprint="x",
        config_key=row.config_key,
        execution_provider=k.execution_provider,
        intra_op_threads=k.threads,
        batch_size=k.batch_size,
        warmup=k.warmup,
        repetitions=k.repetitions,
        status="ok",
        energy_method="unknown",
        onnxruntime_version="1",
        wall_s=1.0,
        started_at="s",
        finished_at="f",
        created_at=row.created_at,
    )
    values.pop("id")
    engine = create_engine(_plain(db_url))
    with pytest.raises(sa_exc.IntegrityError), engine.begin() as conn:
        conn.execute(insert(measurements_table).values(**values))
    engine.dispose()
    assert store.count_measurements() == 1


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(threads=2), "threads"),
        (dict(repetitions=31), "repetitions"),
        (dict(execution_provider="CUDAExecutionProvider"), "execution_provider"),
    ],
)
def test_measurement_must_match_its_key(store, change, match):
    store.upsert_device(device())
    k = key()
    with pytest.raises(ValueError, match=match):
        store.add_measurement(dataclasses.replace(k, **change), measurement(k))
    assert store.count_measurements() == 0


def test_invalid_measurements_are_rejected_and_nothing_is_written(store):
    store.upsert_device(device())
    k = key()
    bad = [
        (dataclasses.replace(k, arch="|nor_conv_3x3~0|+|bogus~0|"), measurement(k), "malformed"),
        (dataclasses.replace(k, arch=" " + k.arch), measurement(k), "canonical"),
        (k, measurement(k, latency=0.0), "latency_ms_median"),
        (k, measurement(k, latency=float("nan")), "finite"),
        (k, measurement(k, energy_mj=3.0), "unknown"),
        (k, measurement(k, energy_method=EnergyMethod.RAPL_POWERCAP), "energy_mj is None"),
        (k, failed(k, error=None), "error"),
    ]
    for kk, m, match in bad:
        with pytest.raises(ValueError, match=match):
            store.add_measurement(kk, m)
    assert store.count_measurements() == 0


def test_unregistered_device_is_an_error(store):
    k = key(dev_id="cpu-unregistered")
    with pytest.raises(StoreError, match="upsert_device"):
        store.add_measurement(k, measurement(k))
    assert store.count_measurements() == 0


def test_concurrent_writers_store_each_key_once(db_url):
    setup = MeasurementStore(db_url)
    setup.upsert_device(device())
    keys = [key(a) for a in REFS]
    results: list[AddResult] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker():
        try:
            s = MeasurementStore(db_url)
            local = [s.add_measurement(k, measurement(k)) for k in keys]
            with lock:
                results.extend(local)
            s.close()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert results.count(AddResult.INSERTED) == len(keys)
    assert results.count(AddResult.EXISTS) == 5 * len(keys)
    assert setup.count_measurements() == len(keys)
    setup.close()


# ----------------------------------------------------------------------------------------------
# targets and tables
# ----------------------------------------------------------------------------------------------
def _fill(store, dev_id="cpu-0badc0de", threads=1, n=10, failed_too=True):
    store.upsert_device(device(dev_id))
    for i, a in enumerate(REFS[:n]):
        k = key(a, dev_id=dev_id, threads=threads)
        method = (
            EnergyMethod.RAPL_POWERCAP
            if i % 3 == 0
            else (EnergyMethod.ESTIMATE_POWER_X_TIME if i % 3 == 1 else EnergyMethod.UNKNOWN)
        )
        energy = None if method is EnergyMethod.UNKNOWN else 10.0 + i
        store.add_measurement(k, measurement(k, 1.0 + i, energy_mj=energy, energy_method=method))
    if failed_too:
        extra = key(SPACE.format(SPACE.from_index(5)), dev_id=dev_id, threads=threads)
        store.add_measurement(extra, failed(extra))


def test_targets_and_resolution(store):
    assert store.targets() == []
    _fill(store)
    assert store.targets() == ["cpu-0badc0de/cpu/t1/b1"]
    assert store.resolve_target("cpu-0badc0de") == "cpu-0badc0de/cpu/t1/b1"
    assert store.resolve_target("cpu-0badc0de/cpu/t1/b1") == "cpu-0badc0de/cpu/t1/b1"
    _fill(store, threads=2, n=3, failed_too=False)
    with pytest.raises(TargetNotFoundError, match="2 measured configurations"):
        store.resolve_target("cpu-0badc0de")
    with pytest.raises(TargetNotFoundError) as info:
        store.resolve_target("tpu-v9")
    assert "cpu-0badc0de/cpu/t2/b1" in str(info.value) and "hilnas profile" in str(info.value)


def test_latency_and_energy_tables(store):
    _fill(store)
    lat = store.latency_table("cpu-0badc0de")
    assert lat == {a: 1.0 + i for i, a in enumerate(REFS)}  # the failed row is left out
    energy = store.energy_table("cpu-0badc0de/cpu/t1/b1")
    # measured energy only: estimates (i % 3 == 1) and unknown (i % 3 == 2) are excluded
    assert energy == {a: 10.0 + i for i, a in enumerate(REFS) if i % 3 == 0}
    # another model config is a different table
    assert store.latency_table("cpu-0badc0de", model_config_key="C8-N1-in3x32-cls10") == {}


def test_latency_table_prefers_latest_settings(store):
    _fill(store, n=1, failed_too=False)
    k = key(REFS[0], repetitions=100)
    store.add_measurement(k, measurement(k, 7.0))
    assert store.latency_table("cpu-0badc0de") == {REFS[0]: 7.0}


def test_config_summaries(store):
    _fill(store)
    (s,) = store.config_summaries()
    assert s.config_key == "cpu-0badc0de/cpu/t1/b1" and s.ok == 10 and s.failed == 1
    assert s.with_energy == 7  # measured + estimated values are both non-null
    assert s.energy_methods == ("estimate_power_x_time", "rapl_powercap", "unknown")


# ----------------------------------------------------------------------------------------------
# external devices
# ----------------------------------------------------------------------------------------------
def test_external_import_is_atomic_and_idempotent(store, tmp_path):
    rows = [(a, 2.0 + i, None if i % 2 else 5.0 + i) for i, a in enumerate(REFS)]
    assert store.import_external_device("jetson_nano", rows, source="jetson.csv") == 10
    assert store.import_external_device("jetson_nano", rows, source="jetson.csv") == 10
    (ext,) = store.external_devices()
    assert ext.name == "jetson_nano" and ext.count == 10 and ext.with_energy == 5
    assert "jetson_nano" in store.targets() and store.resolve_target("jetson_nano") == "jetson_nano"
    assert store.latency_table("jetson_nano") == {a: 2.0 + i for i, a in enumerate(REFS)}
    assert store.energy_table("jetson_nano") == {
        a: 5.0 + i for i, a in enumerate(REFS) if i % 2 == 0
    }
    assert store.device("jetson_nano").kind is DeviceKind.EXTERNAL

    changed = [(a, lat * 2, e) for a, lat, e in rows]
    with pytest.raises(StoreError, match="replace"):
        store.import_external_device("jetson_nano", changed)
    assert store.latency_table("jetson_nano")[REFS[0]] == 2.0
    assert store.import_external_device("jetson_nano", changed, replace=True) == 10
    assert store.latency_table("jetson_nano")[REFS[0]] == 4.0


@pytest.mark.parametrize(
    "bad_row, match",
    [
        (("|nor_conv_3x3~0|+|", 1.0, None), "malformed"),
        ((REFS[0], 1.0, None), "repeats"),
        ((REFS[-1], -1.0, None), "latency_ms must be > 0"),
        ((REFS[-1], "fast", None), "number"),
        ((REFS[-1], 1.0, float("inf")), "finite"),
        ((REFS[-1], 1.0, -2.0), "energy_mj must be >= 0"),
    ],
)
def test_external_import_validates_every_row_first(store, bad_row, match):
    rows = [(a, 1.0, None) for a in REFS[:5]] + [bad_row]
    with pytest.raises(ValueError, match=match):
        store.import_external_device("bad_dev", rows)
    assert store.external_devices() == [] and store.devices() == []


def test_external_name_rules(store):
    store.upsert_device(device())
    with pytest.raises(ValueError, match="configuration key"):
        store.import_external_device("has/slash", [(REFS[0], 1.0)])
    with pytest.raises(ValueError, match="letters"):
        store.import_external_device("has space", [(REFS[0], 1.0)])
    # a local id (stored or not) is refused before the store is asked
    with pytest.raises(InvalidInputError, match="local device.*choose another name"):
        store.import_external_device("cpu-0badc0de", [(REFS[0], 1.0)])
    # a measured device's id that does not look like a local one is still refused by the store
    store.upsert_device(device("bench_box", aliases=()))
    with pytest.raises(StoreError, match="choose another name"):
        store.import_external_device("bench_box", [(REFS[0], 1.0)])


def test_read_external_csv(tmp_path):
    p = tmp_path / "dev.csv"
    p.write_text("arch,latency_ms,energy_mj\n" + f"{REFS[0]},1.5,\n{REFS[1]},2.5,3.0\n")
    assert read_external_csv(p) == [(REFS[0], "1.5", None), (REFS[1], "2.5", "3.0")]
    q = tmp_path / "bad.csv"
    q.write_text("architecture,ms\nx,1\n")
    with pytest.raises(ValueError, match="lacks the column"):
        read_external_csv(q)
