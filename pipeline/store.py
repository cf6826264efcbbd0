"""The measurement store: devices, measurements and external measurements, with provenance.

SQLAlchemy Core over SQLite (default: ``<HILNAS_HOME>/hilnas.db``, WAL mode, busy timeout) or
PostgreSQL (``postgresql+psycopg://user:pw@host/db``). The SQL is kept portable: no dialect
upserts, no server-side defaults; each write is one short transaction.

Promises:
- A database is a *hilnas store* when it has a ``hilnas_meta`` table whose ``app`` row is
  ``hilnas``. An empty database becomes a store on first open. A database with other tables but
  no such marker is refused with :class:`StoreError` and is never modified (not even its SQLite
  journal mode). A store written by a newer schema version is refused too.
- A measurement is identified by its :class:`MeasurementKey` (space, arch, model config, opset,
  device, execution provider, threads, batch size, warm-up, repetitions); a unique constraint
  holds the database to one row per key. :meth:`MeasurementStore.add_measurement` is idempotent:
  adding an existing key is a no-op unless ``force=True``, which replaces the row in one
  transaction, except that a failed measurement never replaces an ok one: the ok row is kept
  and the failed attempt is recorded in ``measurement_attempts`` (schema 2; stores of schema 1
  are migrated when opened for writing, every row kept). Concurrent writers of the same key are
  safe (the loser sees ``EXISTS``).
- Every measurement row may carry its quality flag and the evidence (schema 3: ``quality`` is
  ``ok``, ``noisy`` or ``interfered``, with ``quality_reason``, ``load_1m``,
  ``other_cpu_cores`` and ``sentinel_drift``; NULL for rows that were not assessed, e.g. rows
  of a schema-2 store, which is migrated on a writing open with every row kept). The tables
  predictors fit on (:meth:`MeasurementStore.latency_table`, ``energy_table``) leave flagged
  rows out unless ``include_flagged=True``, except rows of the space's reference architectures
  (a device's embedding needs them; they are counted by :meth:`MeasurementStore.quality_exclusions`).
- ``read_only=True`` opens an SQLite file with ``mode=ro`` (``immutable=1`` on a read-only
  directory): no file is created (:class:`StoreNotFoundError` when there is none), nothing is
  migrated or written, and the home directory is not write-tested.
- A file store is integrity-checked (``PRAGMA quick_check``) when opened, up to
  :data:`QUICK_CHECK_MAX_BYTES`; damaged pages raise :class:`StoreDamagedError` before anything
  is written, and rows whose architecture does not parse for their space are never returned.
- A full disk raises :class:`StoreFullError` (a ``ResourceError``); committed rows are kept.
- Every add commits on its own, so a process killed at any point loses at most the measurement it
  was writing and never leaves a partial row.
- Failed measurements are stored (status ``failed`` with the error) so that they are not retried
  unless asked.
- Unknown energy is ``NULL`` with a reason, never 0; an estimate keeps its method label and is
  never returned by :meth:`MeasurementStore.energy_table` (measured values only).
- Thread safety: one store object may be shared by threads (the engine pools connections);
  several processes may write the same store (SQLite serialises writers with ``BEGIN IMMEDIATE``
  and a busy timeout, PostgreSQL with its unique index).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import logging
import math
import os
import re
import socket
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any

from hilnas.devices.base import DeviceConfig, DeviceInfo, DeviceKind, DeviceNotFoundError
from hilnas.devices.errors import (
    DataIntegrityError,
    InvalidInputError,
    NotFoundError,
    ResourceError,
    UserError,
)
from hilnas.pipeline.home import HomeError, home_dir
from hilnas.profilers.base import EnergyMethod, Measurement, MeasurementStatus
from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import StaticPool

log = logging.getLogger(__name__)

#: Version of the table layout written by this code; bumped with a migration in ``_migrate``.
SCHEMA_VERSION = 3  # 2: measurement_attempts; 3: measurement quality flags (nullable columns)
APP_MARKER = "hilnas"
DATABASE_URL_ENV = "HILNAS_DATABASE_URL"
DEFAULT_DB_NAME = "hilnas.db"
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: Files up to this size get ``PRAGMA quick_check`` on every open (~4 ms per MB).
QUICK_CHECK_MAX_BYTES = 32 * 1024 * 1024
_PG_INIT_LOCK = 0x68696C6E  # "hiln": serialises concurrent first opens on PostgreSQL

_EXTERNAL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")


class StoreError(UserError, RuntimeError):
    """The store cannot be used as asked; the message names the problem and the fix."""


class NotAHilnasStoreError(StoreError):
    """The database holds tables but no hilnas marker; it was left untouched."""


class TargetNotFoundError(StoreError, NotFoundError):
    """A prediction/search target name that the store cannot resolve."""


class StoreNotFoundError(StoreError, NotFoundError):
    """A read-only open of a store file that does not exist (nothing was created)."""


class StoreFullError(StoreError, ResourceError):
    """The disk (or the database's size limit) is full; what was committed before is kept."""


class StoreDamagedError(StoreError, DataIntegrityError):
    """The database file fails SQLite's integrity check (damaged pages)."""


class StoreReadOnlyError(StoreError):
    """A write on a store opened with ``read_only=True``."""


class ExternalNameError(InvalidInputError):
    """A name for an imported device that is malformed or already means another device."""


class AddResult(str, Enum):
    """What :meth:`MeasurementStore.add_measurement` did."""

    INSERTED = "inserted"
    REPLACED = "replaced"  # force=True over an existing row
    EXISTS = "exists"  # the key was already stored; nothing changed
    KEPT = "kept"  # force=True with a failed re-measurement: the good row stays, attempt logged


# ----------------------------------------------------------------------------------------------
# records
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class MeasurementKey:
    """What makes two measurements "the same": measured once unless forced.

    ``arch`` is the space's canonical string (``space.format(code)``).
    """

    space: str
    arch: str
    model_config_key: str
    opset: int
    device_id: str
    execution_provider: str
    threads: int
    batch_size: int
    warmup: int
    repetitions: int

    @property
    def config_key(self) -> str:
        """The device configuration this key belongs to, e.g. ``cpu-1a2b3c4d/cpu/t1/b1``."""
        return DeviceConfig(
            self.device_id, self.execution_provider, self.threads, self.batch_size
        ).key

    def settings(self) -> tuple:
        """The key without the architecture (one profiling run shares it)."""
        return (
            self.space,
            self.model_config_key,
            self.opset,
            self.device_id,
            self.execution_provider,
            self.threads,
            self.batch_size,
            self.warmup,
            self.repetitions,
        )


@dataclass(frozen=True, slots=True)
class MeasurementRecord:
    """One stored measurement with its provenance."""

    id: int
    key: MeasurementKey
    measurement: Measurement
    arch_index: int | None
    config_key: str
    device_fingerprint: str
    onnx_sha256: str | None
    exporter: str | None
    export_s: float | None
    host: str | None
    hilnas_version: str | None
    created_at: datetime
    # measurement quality (schema 3); None: not assessed (older rows)
    quality: str | None = None
    quality_reason: str | None = None
    load_1m: float | None = None
    other_cpu_cores: float | None = None
    sentinel_drift: float | None = None

    @property
    def status(self) -> MeasurementStatus:
        return self.measurement.status

    @property
    def flagged(self) -> bool:
        """True when the row was assessed and found ``noisy`` or ``interfered``."""
        return self.quality is not None and self.quality != "ok"

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self.key, f.name) for f in fields(MeasurementKey)}
        d.update(self.measurement.to_dict())
        d.update(
            id=self.id,
            arch_index=self.arch_index,
            config_key=self.config_key,
            device_fingerprint=self.device_fingerprint,
            onnx_sha256=self.onnx_sha256,
            exporter=self.exporter,
            export_s=self.export_s,
            host=self.host,
            hilnas_version=self.hilnas_version,
            created_at=self.created_at.isoformat(),
            **{name: getattr(self, name) for name in QUALITY_COLUMNS},
        )
        return d


@dataclass(frozen=True, slots=True)
class ExternalDevice:
    """A device known only from imported measurements (a CSV from another tool or benchmark)."""

    name: str
    space: str
    count: int
    with_energy: int
    source_name: str | None
    source_sha256: str | None
    imported_at: datetime | None


@dataclass(frozen=True, slots=True)
class ConfigSummary:
    """Counts for one device configuration (used by ``hilnas measurements list``)."""

    config_key: str
    device_id: str
    space: str
    model_config_key: str
    opset: int
    warmup: int
    repetitions: int
    ok: int
    failed: int
    with_energy: int
    energy_methods: tuple[str, ...]
    last_created_at: datetime | None
    flagged: int = 0  # ok rows whose quality is noisy or interfered


@dataclass(frozen=True, slots=True)
class QualityExclusions:
    """What the quality filter did to one fit table (see :meth:`MeasurementStore.latency_table`).

    ``excluded``: flagged rows left out; ``kept_references``: flagged rows of reference
    architectures kept (the embedding needs them); ``by_quality``: excluded rows per flag.
    """

    excluded: int = 0
    kept_references: int = 0
    by_quality: tuple[tuple[str, int], ...] = ()
    kept_flagged: int = 0  # flagged rows kept because they were the majority (see FLAGGED_KEEP)


#: The quality filter of a fit table leaves flagged rows out only while they are at most this
#: share of the target's non-reference rows: on a machine that was busy for a whole run every row
#: is flagged, and dropping them all would leave nothing to fit (they are then kept, counted in
#: :attr:`QualityExclusions.kept_flagged`, and the report says to re-measure on a quiet machine).
FLAGGED_KEEP = 0.5


# ----------------------------------------------------------------------------------------------
# schema
# ----------------------------------------------------------------------------------------------
metadata = MetaData()

meta_table = Table(
    "hilnas_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

devices_table = Table(
    "devices",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("name", String(256), nullable=False),
    Column("fingerprint", String(128), nullable=False),
    Column("properties", JSON, nullable=False),
    Column("aliases", JSON, nullable=False),
    Column("energy_counter", String(32)),
    Column("energy_unavailable_reason", Text),
    Column("host", String(256)),
    Column("first_seen", DateTime(timezone=True), nullable=False),
    Column("last_seen", DateTime(timezone=True), nullable=False),
)

KEY_COLUMNS = (
    "space",
    "arch",
    "model_config_key",
    "opset",
    "device_id",
    "execution_provider",
    "intra_op_threads",
    "batch_size",
    "warmup",
    "repetitions",
)

measurements_table = Table(
    "measurements",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # what was measured
    Column("space", String(32), nullable=False),
    Column("arch", String(1024), nullable=False),
    Column("arch_index", Integer),
    Column("model_config_key", String(128), nullable=False),
    Column("opset", Integer, nullable=False),
    Column("onnx_sha256", String(64)),
    Column("exporter", String(64)),
    Column("export_s", Float),
    # where
    Column("device_id", String(128), ForeignKey("devices.id"), nullable=False),
    Column("device_fingerprint", String(128), nullable=False),
    Column("config_key", String(300), nullable=False),
    Column("execution_provider", String(64), nullable=False),
    Column("intra_op_threads", Integer, nullable=False),
    Column("batch_size", Integer, nullable=False),
    Column("warmup", Integer, nullable=False),
    Column("repetitions", Integer, nullable=False),
    # result
    Column("status", String(16), nullable=False),
    Column("error", Text),
    Column("latency_ms_median", Float),
    Column("latency_ms_mean", Float),
    Column("latency_ms_p90", Float),
    Column("latency_ms_iqr", Float),
    Column("latency_ms_cv", Float),
    Column("latency_ms_min", Float),
    Column("energy_mj", Float),
    Column("energy_method", String(32), nullable=False),
    Column("energy_reason", Text),
    Column("peak_memory_mb", Float),
    Column("memory_method", String(64)),
    Column("onnxruntime_version", String(32), nullable=False),
    Column("session_create_s", Float),
    Column("timed_s", Float),
    Column("wall_s", Float, nullable=False),
    Column("started_at", String(40), nullable=False),
    Column("finished_at", String(40), nullable=False),
    # provenance of the row
    Column("host", String(256)),
    Column("hilnas_version", String(64)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # quality of the measurement and its evidence (schema 3; NULL: not assessed)
    Column("quality", String(16)),
    Column("quality_reason", Text),
    Column("load_1m", Float),
    Column("other_cpu_cores", Float),
    Column("sentinel_drift", Float),
    UniqueConstraint(*KEY_COLUMNS, name="uq_measurements_key"),
    Index("ix_measurements_config", "config_key", "space", "status"),
    Index("ix_measurements_device", "device_id"),
)

external_table = Table(
    "external_measurements",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("device_name", String(128), nullable=False),
    Column("space", String(32), nullable=False),
    Column("arch", String(1024), nullable=False),
    Column("arch_index", Integer),
    Column("latency_ms", Float, nullable=False),
    Column("energy_mj", Float),
    Column("source_name", String(512)),
    Column("source_sha256", String(64), nullable=False),
    Column("imported_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("device_name", "space", "arch", name="uq_external_arch"),
    Index("ix_external_device", "device_name", "space"),
)

#: Re-measurements that failed while a good row of the same key was kept (schema 2). A
#: re-measurement never destroys a good measurement unless it succeeded; the failed attempt is
#: recorded here so that nothing that happened is hidden.
attempts_table = Table(
    "measurement_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("measurement_id", Integer),  # the row that was kept (no FK: rows may be deleted)
    Column("space", String(32), nullable=False),
    Column("arch", String(1024), nullable=False),
    Column("model_config_key", String(128), nullable=False),
    Column("opset", Integer, nullable=False),
    Column("device_id", String(128), nullable=False),
    Column("config_key", String(300), nullable=False),
    Column("execution_provider", String(64), nullable=False),
    Column("intra_op_threads", Integer, nullable=False),
    Column("batch_size", Integer, nullable=False),
    Column("warmup", Integer, nullable=False),
    Column("repetitions", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("error", Text),
    Column("wall_s", Float),
    Column("started_at", String(40)),
    Column("finished_at", String(40)),
    Column("host", String(256)),
    Column("hilnas_version", String(64)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_attempts_config", "config_key", "space"),
)

HILNAS_TABLES = (
    "hilnas_meta",
    "devices",
    "measurements",
    "external_measurements",
    "measurement_attempts",
)
#: Tables a store of schema 1 has (read-only opens of an old store do not migrate it).
_V1_TABLES = HILNAS_TABLES[:4]
#: Columns of the measurements table added by schema 3 (all nullable).
QUALITY_COLUMNS = ("quality", "quality_reason", "load_1m", "other_cpu_cores", "sentinel_drift")
#: Values of the ``quality`` column (see :mod:`hilnas.profilers.quality`).
QUALITY_VALUES = ("ok", "noisy", "interfered")


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def _now() -> datetime:
    return datetime.now(timezone.utc)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite returns naive datetimes; we only ever write UTC
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


@functools.lru_cache(maxsize=1)
def hilnas_version() -> str:
    try:
        from importlib.metadata import version

        return version("hilnas")
    except Exception:  # pragma: no cover - not installed (running from a source tree)
        return "0+unknown"


def default_url(create: bool = True) -> str:
    """``HILNAS_DATABASE_URL`` if set, else the SQLite file under the home directory.

    ``create=False`` (read-only commands) neither creates nor write-tests the home directory.
    """
    env = os.environ.get(DATABASE_URL_ENV, "").strip()
    if env:
        return env
    try:
        home = home_dir(create=create)
    except HomeError as exc:
        raise StoreError(str(exc)) from exc
    return f"sqlite:///{home / DEFAULT_DB_NAME}"


def _first_line(exc: BaseException) -> str:
    msg = str(getattr(exc, "orig", None) or exc).strip()
    return msg.splitlines()[0] if msg else type(exc).__name__


def _is_disk_full(exc: BaseException) -> bool:
    """SQLITE_FULL ("database or disk is full") or a server's "no space left on device"."""
    low = str(getattr(exc, "orig", None) or exc).lower()
    return "database or disk is full" in low or "no space left" in low or "disk full" in low


def _read_only_connector(path: Path) -> Any:
    """A DB-API connect function that opens ``path`` read-only and never creates a file.

    ``mode=ro`` first; when SQLite cannot open it so (a WAL-mode file in a directory where it
    may not create the ``-shm`` index, e.g. an archived store on a read-only mount), the file
    is opened ``immutable=1``: nothing can write a directory that read-only, so no other
    process changes the file under us.
    """
    from urllib.parse import quote

    base = f"file:{quote(str(path))}?mode=ro"

    def connect() -> sqlite3.Connection:
        timeout = SQLITE_BUSY_TIMEOUT_MS / 1000
        conn = sqlite3.connect(base, uri=True, timeout=timeout, check_same_thread=False)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError as exc:
            conn.close()
            low = str(exc).lower()
            if "unable to open" not in low and "readonly" not in low:
                raise
        return sqlite3.connect(
            base + "&immutable=1", uri=True, timeout=timeout, check_same_thread=False
        )

    return connect


def redact(url: str | URL) -> str:
    """A URL safe to print (password hidden)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable database URL>"


def _fix_hint() -> str:
    return (
        f"point {DATABASE_URL_ENV} (or --db) at a hilnas store or an empty database, or unset it "
        f"to use the default sqlite:///<HILNAS_HOME>/{DEFAULT_DB_NAME}"
    )


def _finite(
    value: Any, what: str, *, positive: bool = False, allow_none: bool = False
) -> float | None:
    if value is None:
        if allow_none:
            return None
        raise InvalidInputError(f"{what} is missing")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise InvalidInputError(f"{what} must be finite, got {value!r}")
    if positive and v <= 0:
        raise InvalidInputError(f"{what} must be > 0, got {value!r}")
    if v < 0:
        raise InvalidInputError(f"{what} must be >= 0, got {value!r}")
    return v


@functools.lru_cache(maxsize=16)
def _space(name: str):
    from hilnas.pipeline.spaces import get_space

    return get_space(name)


# ----------------------------------------------------------------------------------------------
# the store
# ----------------------------------------------------------------------------------------------


def _measurement_filters(
    *,
    device_id: str | None = None,
    config_key: str | None = None,
    space: str | None = None,
    status: MeasurementStatus | str | None = None,
    model_config_key: str | None = None,
) -> list[Any]:
    """SQL conditions on the measurements table for the filters that are given."""
    t = measurements_table.c
    wanted = {
        t.device_id: device_id,
        t.config_key: config_key,
        t.space: space,
        t.status: None if status is None else MeasurementStatus(status).value,
        t.model_config_key: model_config_key,
    }
    return [column == value for column, value in wanted.items() if value is not None]


class MeasurementStore:
    """Devices and measurements in SQLite or PostgreSQL (see the module docstring).

    ``url`` is an SQLAlchemy URL; ``None`` means ``HILNAS_DATABASE_URL`` or the default SQLite
    file. ``postgresql://`` is read as ``postgresql+psycopg://``. Raises :class:`StoreError`
    (and its subclass :class:`NotAHilnasStoreError`) with the fix in the message.
    """

    def __init__(
        self, url: str | None = None, *, echo: bool = False, read_only: bool = False
    ) -> None:
        self.read_only = read_only
        self.path: Path | None = None
        raw = url if url is not None and str(url).strip() else default_url(create=not read_only)
        try:
            parsed = make_url(str(raw))
        except Exception as exc:
            raise StoreError(
                f"{raw!r} is not a database URL ({exc}); use e.g. sqlite:////path/to/hilnas.db or "
                "postgresql+psycopg://user:password@host/dbname"
            ) from exc
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        self._url = parsed
        self.display_url = redact(parsed)
        self.dialect = parsed.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise StoreError(
                f"unsupported database {self.display_url}: hilnas stores live in SQLite or "
                "PostgreSQL (postgresql+psycopg://...)"
            )
        self._has_attempts = True
        self._has_quality = True  # False only for a read-only open of a store before schema 3
        self._engine = self._make_engine(parsed, echo)
        try:
            self._initialise()
        except BaseException:
            self._engine.dispose()
            raise

    # ----- engine -----------------------------------------------------------------------
    @property
    def in_memory(self) -> bool:
        """True for an SQLite in-memory database: everything is lost when it is closed."""
        return self.dialect == "sqlite" and self.path is None

    def require_persistent(self, command: str = "this command") -> None:
        """Refuse to measure into a store that is thrown away on exit (``sqlite://``)."""
        if self.in_memory:
            raise InvalidInputError(
                f"{self.display_url} is an in-memory database: {command} would store its "
                "results there and lose them on exit; point HILNAS_DATABASE_URL (or --db) at a "
                "file, e.g. sqlite:////path/to/hilnas.db, or unset it to use the default store"
            )

    def _make_engine(self, url: URL, echo: bool) -> Engine:
        if self.dialect == "sqlite":
            return self._make_sqlite_engine(url, echo)
        try:
            kwargs: dict[str, Any] = {}
            if self.read_only:
                kwargs["execution_options"] = {"postgresql_readonly": True}
            return create_engine(url, echo=echo, pool_pre_ping=True, future=True, **kwargs)
        except ModuleNotFoundError as exc:
            raise StoreError(
                f"the PostgreSQL driver is not installed ({exc.name}); "
                "install it with `pip install 'hilnas[postgres]'`"
            ) from exc

    def _make_sqlite_engine(self, url: URL, echo: bool) -> Engine:
        database = url.database or ""
        memory = database in ("", ":memory:") or database.startswith("file::memory:")
        kwargs: dict[str, Any] = {"echo": echo}
        if memory:
            kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
        else:
            path = Path(database).expanduser()
            if not path.is_absolute():
                path = Path.cwd() / path
            url = url.set(database=str(path))
            self.path = path
            if self.read_only:
                if not path.is_file():
                    what = "is a directory, not a store" if path.is_dir() else "does not exist"
                    raise StoreNotFoundError(
                        f"no store at {path} yet ({what}); run `hilnas profile --device cpu` "
                        f"first, or point {DATABASE_URL_ENV} (or --db) at an existing store"
                    )
                kwargs["creator"] = _read_only_connector(path)
                url = make_url("sqlite://")  # the creator opens the file
                kwargs["poolclass"] = StaticPool
                kwargs["connect_args"] = {}
            else:
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise StoreError(
                        f"cannot create the directory of the store {path} "
                        f"({exc.strerror or exc}); set HILNAS_HOME (or HILNAS_DATABASE_URL) to a "
                        "writable location"
                    ) from exc
                if path.is_dir():
                    raise StoreError(f"the store path {path} is a directory; {_fix_hint()}")
                kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        engine = create_engine(url, **kwargs)
        read_only = self.read_only

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection, _record):  # pragma: no cover - trivial
            # We issue BEGIN ourselves (below) so that writers can take the lock up front.
            dbapi_connection.isolation_level = None
            cur = dbapi_connection.cursor()
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            if not read_only:
                cur.execute("PRAGMA foreign_keys=ON")
                # In WAL mode NORMAL keeps every commit across a crash of the process (SIGKILL
                # included); only a power loss may drop the last commits, never corrupt the file.
                cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn):  # pragma: no cover - trivial
            write = conn.get_execution_options().get("hilnas_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine

    @contextmanager
    def _write(self) -> Iterator[Any]:
        """One write transaction (``BEGIN IMMEDIATE`` on SQLite): commit on success.

        A full disk (SQLITE_FULL, PostgreSQL's "No space left on device") becomes
        :class:`StoreFullError`; the transaction is rolled back and earlier commits are kept.
        """
        if self.read_only:
            raise StoreReadOnlyError(
                f"the store {self.display_url} was opened read-only; this is a bug of the "
                "command that tried to write (report it), or open the store without read_only"
            )
        try:
            with self._engine.connect() as conn:
                conn.execution_options(hilnas_write=True)
                with conn.begin():
                    yield conn
        except sa_exc.OperationalError as exc:
            if _is_disk_full(exc):
                raise self._full_error(exc) from exc
            raise

    def _full_error(self, exc: BaseException) -> StoreFullError:
        where = str(self.path) if self.path is not None else self.display_url
        return StoreFullError(
            f"the store {where} cannot grow: {_first_line(exc)} (measurements committed before "
            "are kept); free disk space, then rerun the same command to resume"
        )

    @contextmanager
    def _read(self) -> Iterator[Any]:
        with self._engine.connect() as conn:
            yield conn

    def close(self) -> None:
        """Release pooled connections (the object must not be used afterwards)."""
        self._engine.dispose()

    def __enter__(self) -> MeasurementStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MeasurementStore({self.display_url!r})"

    @property
    def url(self) -> str:
        """The URL with the password hidden."""
        return self.display_url

    # ----- opening ----------------------------------------------------------------------
    def _initialise(self) -> None:
        try:
            if self.dialect == "sqlite" and self.path is not None:
                self._check_integrity()
            if self.read_only:
                self._open_read_only()
            else:
                self._open_for_writing()
        except StoreError:
            raise
        except sa_exc.DatabaseError as exc:
            raise self._translate_open_error(exc) from exc
        except sa_exc.NoSuchModuleError as exc:  # pragma: no cover - exotic URLs
            raise StoreError(f"no SQLAlchemy driver for {self.display_url}: {exc}") from exc
        except ModuleNotFoundError as exc:
            raise StoreError(
                f"the database driver for {self.display_url} is not installed ({exc.name}); "
                "install it with `pip install 'hilnas[postgres]'`"
            ) from exc
        if self.dialect == "sqlite" and self.path is not None and not self.read_only:
            # Persistent per file; set only once we know the file is a hilnas store.
            try:
                raw = self._engine.raw_connection()
                try:
                    cur = raw.cursor()
                    cur.execute("PRAGMA journal_mode=WAL")  # outside any transaction
                    cur.close()
                finally:
                    raw.close()
            except Exception as exc:  # pragma: no cover - e.g. network filesystems
                log.warning("could not switch %s to WAL mode: %s", self.display_url, exc)

    def _open_for_writing(self) -> None:
        with self._write() as conn:
            if self.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_INIT_LOCK})
            tables = set(inspect(conn).get_table_names())
            if "hilnas_meta" not in tables:
                if tables:
                    shown = ", ".join(sorted(tables)[:8]) + (", ..." if len(tables) > 8 else "")
                    raise NotAHilnasStoreError(
                        f"{self.display_url} is not a hilnas store: it has tables ({shown}) "
                        "but no hilnas_meta table. hilnas did not modify it; " + _fix_hint()
                    )
                metadata.create_all(conn)
                conn.execute(
                    insert(meta_table),
                    [
                        {"key": "app", "value": APP_MARKER},
                        {"key": "schema_version", "value": str(SCHEMA_VERSION)},
                        {"key": "created_at", "value": _now().isoformat()},
                        {"key": "created_by", "value": f"hilnas {hilnas_version()}"},
                    ],
                )
                log.info("created a hilnas store at %s", self.display_url)
            else:
                self._check_meta(conn, tables)

    def _open_read_only(self) -> None:
        with self._read() as conn:
            tables = set(inspect(conn).get_table_names())
            if "hilnas_meta" not in tables:
                if not tables:
                    raise StoreNotFoundError(
                        f"no store at {self.display_url} yet (the database is empty); run "
                        "`hilnas profile --device cpu` first"
                    )
                raise NotAHilnasStoreError(
                    f"{self.display_url} is not a hilnas store: it has tables but no hilnas_meta "
                    "table. hilnas did not modify it; " + _fix_hint()
                )
            self._check_meta(conn, tables)

    def _check_integrity(self) -> None:
        """``PRAGMA quick_check`` when a file store of up to :data:`QUICK_CHECK_MAX_BYTES` is
        opened (about 30-40 ms for 10,000 measurements, 8.5 MB, on a 2-core machine); larger
        files are checked by :meth:`check_integrity` on request.

        Damaged pages make SQLite return garbage or fail half-way through a command; refusing
        them on open, before anything is written, keeps the damage from spreading.
        """
        assert self.path is not None
        try:
            size = self.path.stat().st_size
        except OSError:
            return  # a new store: nothing to check
        if size == 0:
            return
        if size > QUICK_CHECK_MAX_BYTES:
            log.debug("skipping quick_check of %s (%d bytes) on open", self.path, size)
            return
        problems = self._integrity_problems("quick_check")
        if problems:
            raise self._damaged_error("; ".join(problems)[:300])

    def _integrity_problems(self, pragma: str) -> list[str]:
        with self._engine.connect() as conn:
            rows = conn.exec_driver_sql(f"PRAGMA {pragma}(5)").all()
        return [str(r[0]) for r in rows if str(r[0]).lower() != "ok"]

    def check_integrity(self, *, full: bool = False) -> None:
        """Check the whole SQLite file now, whatever its size (``full``: ``integrity_check``,
        which also verifies indexes, about 3x slower than ``quick_check``); raises
        :class:`StoreDamagedError` naming the file and how to recover. No-op on PostgreSQL and
        in-memory stores. Meant for a ``hilnas doctor``-like command."""
        if self.dialect != "sqlite" or self.path is None:
            return
        try:
            problems = self._integrity_problems("integrity_check" if full else "quick_check")
        except sa_exc.DatabaseError as exc:
            raise self._damaged_error(_first_line(exc)) from exc
        if problems:
            raise self._damaged_error("; ".join(problems)[:300])

    def _damaged_error(self, detail: str) -> StoreDamagedError:
        path = self.path or self.display_url
        return StoreDamagedError(
            f"the store {path} is damaged (SQLite integrity check: {detail}); hilnas did not "
            f"modify it. Restore it from a backup, or recover what is readable with "
            f"`sqlite3 {path} .recover | sqlite3 recovered.db` and use that file "
            f"({DATABASE_URL_ENV}=sqlite:////abs/path/recovered.db)"
        )

    def _check_meta(self, conn: Any, tables: set[str]) -> None:
        meta = {k: v for k, v in conn.execute(select(meta_table.c.key, meta_table.c.value))}
        if meta.get("app") != APP_MARKER:
            raise NotAHilnasStoreError(
                f"{self.display_url} is not a hilnas store: its hilnas_meta table has no "
                f"app={APP_MARKER!r} marker. hilnas did not modify it; " + _fix_hint()
            )
        try:
            version = int(meta.get("schema_version", ""))
        except ValueError:
            raise NotAHilnasStoreError(
                f"{self.display_url} has a damaged hilnas_meta table (schema_version "
                f"{meta.get('schema_version')!r}). hilnas did not modify it; " + _fix_hint()
            ) from None
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.display_url} was written by a newer hilnas (store schema {version}, this "
                f"hilnas {hilnas_version()} knows up to {SCHEMA_VERSION}); upgrade hilnas with "
                "`pip install -U hilnas`"
            )
        needed = HILNAS_TABLES
        if version < SCHEMA_VERSION:
            if self.read_only:  # read as it is; the next writing command migrates it
                needed = _V1_TABLES
                self._has_attempts = "measurement_attempts" in tables
                if "measurements" in tables:
                    have = {c["name"] for c in inspect(conn).get_columns("measurements")}
                    self._has_quality = all(c in have for c in QUALITY_COLUMNS)
            else:
                self._migrate(conn, version, tables)
                tables = set(inspect(conn).get_table_names())
        missing = [t for t in needed if t not in tables]
        if missing:
            raise StoreError(
                f"{self.display_url} is a damaged hilnas store (missing tables: "
                f"{', '.join(missing)}); restore it from a backup or " + _fix_hint()
            )

    def _migrate(self, conn: Any, from_version: int, tables: set[str]) -> None:
        """Bring a store of an older schema up to :data:`SCHEMA_VERSION` in the open
        transaction (all or nothing); every existing row is kept as it is."""
        if from_version < 1:
            raise StoreError(
                f"{self.display_url} uses store schema {from_version}, which this hilnas cannot "
                f"migrate to {SCHEMA_VERSION}; restore it from a backup or " + _fix_hint()
            )
        if from_version < 2 and "measurement_attempts" not in tables:
            attempts_table.create(conn)
        if from_version < 3:
            # nullable columns: every existing row is kept and reads as "not assessed"
            have = {c["name"] for c in inspect(conn).get_columns("measurements")}
            for name in QUALITY_COLUMNS:
                if name in have:
                    continue
                column = measurements_table.c[name]
                kind = column.type.compile(dialect=conn.dialect)
                conn.execute(text(f"ALTER TABLE measurements ADD COLUMN {name} {kind}"))
        conn.execute(
            update(meta_table)
            .where(meta_table.c.key == "schema_version")
            .values(value=str(SCHEMA_VERSION))
        )
        log.info(
            "migrated the store %s from schema %d to %d",
            self.display_url,
            from_version,
            SCHEMA_VERSION,
        )

    def _translate_open_error(self, exc: sa_exc.DatabaseError) -> StoreError:
        msg = str(getattr(exc, "orig", exc)) or str(exc)
        if _is_disk_full(exc):
            return self._full_error(exc)
        if self.dialect == "sqlite":
            low = msg.lower()
            if "malformed" in low and self.path is not None:
                return self._damaged_error(msg)
            if "not a database" in low or "malformed" in low or "encrypted" in low:
                return NotAHilnasStoreError(
                    f"{self.display_url} is not a hilnas store (not an SQLite database: {msg}). "
                    "hilnas did not modify it; " + _fix_hint()
                )
            if "readonly" in low or "read-only" in low or "unable to open" in low:
                if self.read_only:
                    return StoreError(
                        f"cannot read the store {self.display_url} ({msg}); make the file "
                        "readable, or copy it to a writable directory and point "
                        f"{DATABASE_URL_ENV} at the copy"
                    )
                return StoreError(
                    f"cannot write the store {self.display_url} ({msg}); make the file and its "
                    "directory writable, or set HILNAS_HOME to a writable directory (commands "
                    "that only read, such as `hilnas devices list`, work on a read-only store)"
                )
            if "locked" in low:
                return StoreError(
                    f"the store {self.display_url} stayed locked for "
                    f"{SQLITE_BUSY_TIMEOUT_MS // 1000} s ({msg}); another hilnas process holds "
                    "it: wait for it or stop it"
                )
        if isinstance(exc, sa_exc.OperationalError):
            first = msg.strip().splitlines()[0] if msg.strip() else msg
            return StoreError(
                f"cannot open the store {self.display_url} ({first}); "
                "check that the server is running and the URL, user and password are right"
            )
        return StoreError(f"cannot open the store {self.display_url}: {msg}")

    # ----- meta -------------------------------------------------------------------------
    def meta(self) -> dict[str, str]:
        with self._read() as conn:
            return {k: v for k, v in conn.execute(select(meta_table.c.key, meta_table.c.value))}

    @property
    def schema_version(self) -> int:
        return int(self.meta()["schema_version"])

    # ----- devices ----------------------------------------------------------------------
    def upsert_device(self, info: DeviceInfo, *, host: str | None = None) -> None:
        """Register a device or refresh its facts (``first_seen`` is kept)."""
        now = _now()
        values = {
            "kind": DeviceKind(info.kind).value,
            "name": info.name,
            "fingerprint": info.fingerprint,
            "properties": _jsonable(info.properties),
            "aliases": list(info.aliases),
            "energy_counter": info.energy_counter,
            "energy_unavailable_reason": info.energy_unavailable_reason,
            "host": host if host is not None else socket.gethostname(),
            "last_seen": now,
        }
        for attempt in (0, 1):
            try:
                with self._write() as conn:
                    row = conn.execute(
                        select(devices_table.c.fingerprint, devices_table.c.kind).where(
                            devices_table.c.id == info.id
                        )
                    ).first()
                    if row is None:
                        conn.execute(
                            insert(devices_table).values(id=info.id, first_seen=now, **values)
                        )
                    else:
                        if row.kind != values["kind"]:
                            raise StoreError(
                                f"device id {info.id!r} is already stored as a {row.kind} device; "
                                "choose another name"
                            )
                        if row.fingerprint != info.fingerprint:
                            log.warning(
                                "device %s changed fingerprint (%s -> %s): its hardware or driver "
                                "changed; new measurements carry the new fingerprint",
                                info.id,
                                row.fingerprint[:12],
                                info.fingerprint[:12],
                            )
                        conn.execute(
                            update(devices_table)
                            .where(devices_table.c.id == info.id)
                            .values(**values)
                        )
                return
            except sa_exc.IntegrityError:
                if attempt:
                    raise

    def device(self, device_id: str) -> DeviceInfo:
        """A stored device; :class:`DeviceNotFoundError` lists the stored ids."""
        with self._read() as conn:
            row = conn.execute(select(devices_table).where(devices_table.c.id == device_id)).first()
        if row is None:
            known = [d.id for d in self.devices()]
            raise DeviceNotFoundError(
                f"device {device_id!r} is not in the store {self.display_url}; stored: "
                f"{', '.join(known) if known else 'none yet'} (`hilnas devices list` shows them)"
            )
        return _device_from_row(row)

    def devices(self) -> list[DeviceInfo]:
        with self._read() as conn:
            rows = conn.execute(select(devices_table).order_by(devices_table.c.id)).all()
        return [_device_from_row(r) for r in rows]

    def device_seen(self, device_id: str) -> tuple[datetime, datetime] | None:
        """``(first_seen, last_seen)`` of a stored device, or None."""
        with self._read() as conn:
            row = conn.execute(
                select(devices_table.c.first_seen, devices_table.c.last_seen).where(
                    devices_table.c.id == device_id
                )
            ).first()
        return None if row is None else (_utc(row[0]), _utc(row[1]))

    # ----- measurements: writing --------------------------------------------------------
    def add_measurement(
        self,
        key: MeasurementKey,
        measurement: Measurement,
        *,
        arch_index: int | None = None,
        onnx_sha256: str | None = None,
        exporter: str | None = None,
        export_s: float | None = None,
        device_fingerprint: str | None = None,
        host: str | None = None,
        force: bool = False,
        quality: Any | None = None,
    ) -> AddResult:
        """Store one measurement under ``key`` in its own transaction (idempotent; see module).

        With ``force=True`` an existing row is replaced, except that a *failed* measurement
        never replaces an ok one: the ok row is kept, the failed attempt is recorded in the
        attempts table (:meth:`attempts`) and :attr:`AddResult.KEPT` is returned. A full disk
        raises :class:`StoreFullError` (a :class:`~hilnas.devices.errors.ResourceError`).

        The device must have been registered with :meth:`upsert_device`. ``key`` and the
        measurement's own provenance (provider, threads, batch size, warm-up, repetitions) must
        agree, and an ok measurement needs a positive finite median latency; ``ValueError``
        otherwise, and nothing is written.

        ``quality`` (a :class:`~hilnas.profilers.quality.MeasurementQuality`, or None: not
        assessed) is stored with the row: the flag, its reason and the evidence.
        """
        values = self._row_values(key, measurement, arch_index=arch_index)
        values.update(_quality_values(quality))
        values.update(
            onnx_sha256=onnx_sha256,
            exporter=exporter,
            export_s=_finite(export_s, "export_s", allow_none=True),
            host=host if host is not None else socket.gethostname(),
            hilnas_version=hilnas_version(),
        )
        for attempt in (0, 1):
            try:
                with self._write() as conn:
                    dev = conn.execute(
                        select(devices_table.c.fingerprint, devices_table.c.kind).where(
                            devices_table.c.id == key.device_id
                        )
                    ).first()
                    if dev is None:
                        raise StoreError(
                            f"device {key.device_id!r} is not registered in {self.display_url}; "
                            "call upsert_device(info) before adding its measurements"
                        )
                    values["device_fingerprint"] = device_fingerprint or dev.fingerprint
                    values["created_at"] = _now()
                    existing = conn.execute(_SELECT_ID_BY_KEY, _key_params(key)).first()
                    if existing is not None and not force:
                        return AddResult.EXISTS
                    if (
                        existing is not None
                        and existing.status == MeasurementStatus.OK.value
                        and values["status"] != MeasurementStatus.OK.value
                    ):
                        # never trade a good measurement for a failure: keep it, log the try
                        conn.execute(
                            insert(attempts_table),
                            _attempt_values(values, existing.id, self._has_attempts),
                        )
                        return AddResult.KEPT
                    if existing is not None:
                        conn.execute(
                            delete(measurements_table).where(measurements_table.c.id == existing.id)
                        )
                    conn.execute(_INSERT_MEASUREMENT, values)
                    return AddResult.REPLACED if existing is not None else AddResult.INSERTED
            except sa_exc.IntegrityError:
                # Another writer stored the same key between our check and our insert.
                if not force:
                    return AddResult.EXISTS
                if attempt:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _row_values(
        self, key: MeasurementKey, m: Measurement, *, arch_index: int | None
    ) -> dict[str, Any]:
        space = _space(key.space)
        code = space.parse(key.arch)
        if space.format(code) != key.arch:
            raise ValueError(
                f"key.arch must be the canonical string {space.format(code)!r}, got {key.arch!r}"
            )
        if arch_index is None:
            arch_index = space.index_or_none(code)
        mismatched = [
            f"{name}: key {kv!r} != measurement {mv!r}"
            for name, kv, mv in (
                ("execution_provider", key.execution_provider, m.execution_provider),
                ("threads", key.threads, m.intra_op_threads),
                ("batch_size", key.batch_size, m.batch_size),
                ("warmup", key.warmup, m.warmup),
                ("repetitions", key.repetitions, m.repetitions),
            )
            if kv != mv
        ]
        if mismatched:
            raise ValueError("measurement does not match its key: " + "; ".join(mismatched))
        status = MeasurementStatus(m.status)
        method = EnergyMethod(m.energy_method)
        if status is MeasurementStatus.OK:
            _finite(m.latency_ms_median, "latency_ms_median", positive=True)
            if method is EnergyMethod.UNKNOWN and m.energy_mj is not None:
                raise ValueError("energy_mj must be None when energy_method is unknown")
            if m.energy_mj is not None:
                _finite(m.energy_mj, "energy_mj")
            elif method is not EnergyMethod.UNKNOWN:
                raise ValueError(f"energy_mj is None but energy_method is {method.value}")
        elif not (m.error or "").strip():
            raise InvalidInputError(
                "a failed measurement needs a non-blank error message saying what went wrong"
            )
        return {
            "space": key.space,
            "arch": key.arch,
            "arch_index": arch_index,
            "model_config_key": key.model_config_key,
            "opset": int(key.opset),
            "device_id": key.device_id,
            "config_key": key.config_key,
            "execution_provider": key.execution_provider,
            "intra_op_threads": int(key.threads),
            "batch_size": int(key.batch_size),
            "warmup": int(key.warmup),
            "repetitions": int(key.repetitions),
            "status": status.value,
            "error": m.error,
            "latency_ms_median": m.latency_ms_median,
            "latency_ms_mean": m.latency_ms_mean,
            "latency_ms_p90": m.latency_ms_p90,
            "latency_ms_iqr": m.latency_ms_iqr,
            "latency_ms_cv": m.latency_ms_cv,
            "latency_ms_min": m.latency_ms_min,
            "energy_mj": m.energy_mj,
            "energy_method": method.value,
            "energy_reason": m.energy_reason,
            "peak_memory_mb": m.peak_memory_mb,
            "memory_method": m.memory_method,
            "onnxruntime_version": m.onnxruntime_version,
            "session_create_s": m.session_create_s,
            "timed_s": m.timed_s,
            "wall_s": float(m.wall_s),
            "started_at": m.started_at,
            "finished_at": m.finished_at,
        }

    def set_quality(self, key: MeasurementKey, quality: Any) -> bool:
        """Replace the quality flag and evidence of the stored row of ``key`` (e.g. when a
        later sentinel check shows that conditions changed); returns whether a row was there.
        The measured values are never touched."""
        values = _quality_values(quality)
        with self._write() as conn:
            done = conn.execute(
                update(measurements_table).where(_key_clause(key)).values(**values)
            ).rowcount
        return bool(done)

    def delete_measurements(self, *, device_id: str, config_key: str | None = None) -> int:
        """Remove a device's measurements (all, or one configuration's); returns the count."""
        cond = measurements_table.c.device_id == device_id
        if config_key is not None:
            cond = and_(cond, measurements_table.c.config_key == config_key)
        with self._write() as conn:
            return conn.execute(delete(measurements_table).where(cond)).rowcount or 0

    # ----- measurements: reading --------------------------------------------------------
    def has_measurement(self, key: MeasurementKey, *, ok_only: bool = False) -> bool:
        """Whether ``key`` is stored (any status, or only ``ok`` with ``ok_only``)."""
        status = self.measurement_status(key)
        if status is None:
            return False
        return status is MeasurementStatus.OK or not ok_only

    def measurement_status(self, key: MeasurementKey) -> MeasurementStatus | None:
        with self._read() as conn:
            row = conn.execute(select(measurements_table.c.status).where(_key_clause(key))).first()
        return None if row is None else MeasurementStatus(row[0])

    def statuses(self, keys: Iterable[MeasurementKey]) -> dict[MeasurementKey, MeasurementStatus]:
        """Status of each stored key among ``keys`` (absent keys are left out); batched."""
        groups: dict[tuple, dict[str, MeasurementKey]] = {}
        for k in keys:
            groups.setdefault(k.settings(), {})[k.arch] = k
        out: dict[MeasurementKey, MeasurementStatus] = {}
        t = measurements_table.c
        with self._read() as conn:
            for by_arch in groups.values():
                sample = next(iter(by_arch.values()))
                base = _key_clause(sample, with_arch=False)
                archs = list(by_arch)
                for i in range(0, len(archs), 500):
                    chunk = archs[i : i + 500]
                    for arch, status in conn.execute(
                        select(t.arch, t.status).where(base, t.arch.in_(chunk))
                    ):
                        out[by_arch[arch]] = MeasurementStatus(status)
        return out

    def _select_measurements(self) -> Any:
        """``SELECT`` of the measurement columns this store has (a read-only open of a store
        before schema 3 lacks the quality columns; its records read them as None)."""
        if self._has_quality:
            return select(measurements_table)
        return select(*(c for c in measurements_table.c if c.name not in QUALITY_COLUMNS))

    def get_measurement(self, key: MeasurementKey) -> MeasurementRecord | None:
        with self._read() as conn:
            row = conn.execute(self._select_measurements().where(_key_clause(key))).first()
        return None if row is None else _record_from_row(row)

    def measurements(
        self,
        *,
        device_id: str | None = None,
        config_key: str | None = None,
        space: str | None = None,
        status: MeasurementStatus | str | None = None,
        model_config_key: str | None = None,
    ) -> list[MeasurementRecord]:
        """Stored measurements matching the filters, oldest first."""
        t = measurements_table.c
        conds = _measurement_filters(
            device_id=device_id,
            config_key=config_key,
            space=space,
            status=status,
            model_config_key=model_config_key,
        )
        with self._read() as conn:
            rows = conn.execute(
                self._select_measurements().where(*conds).order_by(t.created_at, t.id)
            ).all()
        out: list[MeasurementRecord] = []
        damaged = 0
        for r in rows:
            rec = _checked_record(r)
            if rec is None:
                damaged += 1
            else:
                out.append(rec)
        if damaged:
            self._warn_damaged(damaged, "measurements")
        return out

    def _warn_damaged(self, count: int, what: str) -> None:
        log.warning(
            "skipped %d stored %s whose architecture or values do not parse for their space: "
            "the store %s is damaged; restore it from a backup, or recover it with "
            "`sqlite3 FILE .recover | sqlite3 recovered.db`",
            count,
            what,
            self.path or self.display_url,
        )

    # ----- failed attempts beside kept rows -------------------------------------------------
    def attempts(
        self, *, config_key: str | None = None, device_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Failed re-measurements whose key kept its earlier ok row, oldest first (plain dicts
        with the key columns, ``status``, ``error``, ``measurement_id`` and timestamps)."""
        if not self._has_attempts:
            return []
        a = attempts_table.c
        conds = []
        if config_key is not None:
            conds.append(a.config_key == config_key)
        if device_id is not None:
            conds.append(a.device_id == device_id)
        with self._read() as conn:
            rows = conn.execute(select(attempts_table).where(*conds).order_by(a.id)).all()
        out = []
        for r in rows:
            d = dict(r._mapping)
            d["created_at"] = _utc(d["created_at"])
            out.append(d)
        return out

    def count_measurements(
        self,
        *,
        device_id: str | None = None,
        config_key: str | None = None,
        status: MeasurementStatus | str | None = None,
    ) -> int:
        conds = _measurement_filters(device_id=device_id, config_key=config_key, status=status)
        with self._read() as conn:
            return int(
                conn.execute(
                    select(func.count()).select_from(measurements_table).where(*conds)
                ).scalar_one()
            )

    def config_keys(self, device_id: str | None = None, *, ok_only: bool = True) -> list[str]:
        """Device configuration keys that have measurements (ok ones by default)."""
        t = measurements_table.c
        conds = []
        if device_id is not None:
            conds.append(t.device_id == device_id)
        if ok_only:
            conds.append(t.status == MeasurementStatus.OK.value)
        with self._read() as conn:
            return sorted(conn.execute(select(t.config_key).where(*conds).distinct()).scalars())

    def config_summaries(self) -> list[ConfigSummary]:
        """Counts per (configuration, space, model config, opset, warm-up, repetitions)."""
        t = measurements_table.c
        group = (
            t.config_key,
            t.device_id,
            t.space,
            t.model_config_key,
            t.opset,
            t.warmup,
            t.repetitions,
        )
        ok = func.sum(_case_count(t.status == MeasurementStatus.OK.value))
        failed = func.sum(_case_count(t.status == MeasurementStatus.FAILED.value))
        energy = func.sum(_case_count(t.energy_mj.is_not(None)))
        if self._has_quality:
            bad = func.sum(
                _case_count(
                    and_(t.status == MeasurementStatus.OK.value, t.quality.in_(QUALITY_VALUES[1:]))
                )
            )
        else:
            bad = func.sum(_case_count(t.id < 0))  # an old store: nothing was assessed
        with self._read() as conn:
            rows = conn.execute(
                select(*group, ok, failed, energy, func.max(t.created_at), bad)
                .group_by(*group)
                .order_by(*group)
            ).all()
            methods: dict[tuple, set[str]] = {}
            for r in conn.execute(
                select(*group, t.energy_method).where(t.status == "ok").distinct()
            ):
                methods.setdefault(tuple(r[:7]), set()).add(r[7])
        return [
            ConfigSummary(
                config_key=r[0],
                device_id=r[1],
                space=r[2],
                model_config_key=r[3],
                opset=int(r[4]),
                warmup=int(r[5]),
                repetitions=int(r[6]),
                ok=int(r[7] or 0),
                failed=int(r[8] or 0),
                with_energy=int(r[9] or 0),
                energy_methods=tuple(sorted(methods.get(tuple(r[:7]), ()))),
                last_created_at=_utc(r[10]),
                flagged=int(r[11] or 0),
            )
            for r in rows
        ]

    # ----- targets (what predictors and the search consume) --------------------------------
    def targets(self) -> list[str]:
        """Every configuration key with ok measurements, then every external device name."""
        return self.config_keys(ok_only=True) + [d.name for d in self.external_devices()]

    def resolve_target(self, name: str) -> str:
        """A config key, an external device name, or a device id with exactly one configuration
        (ok measurements) -> the config key / external name; :class:`TargetNotFoundError` else."""
        configs = self.config_keys(ok_only=True)
        if name in configs:
            return name
        externals = [d.name for d in self.external_devices()]
        if name in externals:
            return name
        own = self.config_keys(name, ok_only=True)
        if len(own) == 1:
            return own[0]
        if len(own) > 1:
            raise TargetNotFoundError(
                f"device {name!r} has {len(own)} measured configurations ({', '.join(own)}); "
                "name one of them as the target"
            )
        choices = configs + externals
        raise TargetNotFoundError(
            f"no target {name!r} in the store {self.display_url}; known targets: "
            f"{', '.join(choices) if choices else 'none yet'}. Measure a device with "
            "`hilnas profile --device ID` or import one with "
            "`hilnas devices import NAME --csv FILE`"
        )

    def latency_table(
        self,
        target: str,
        space: str = "nb201",
        *,
        model_config_key: str | None = None,
        include_flagged: bool = False,
    ) -> dict[str, float]:
        """Arch string -> median latency (ms) of ok measurements of a target.

        For a device configuration, rows of ``model_config_key`` (default: the space's default
        model config) are used; when an architecture was measured under several settings
        (warm-up, repetitions, opset) the most recent row wins. Rows flagged ``noisy`` or
        ``interfered`` are left out unless ``include_flagged`` (rows of the space's reference
        architectures are always kept: the device's embedding needs them);
        :meth:`quality_exclusions` says how many were left out.
        """
        return self._table(target, space, "latency", model_config_key, include_flagged)[0]

    def energy_table(
        self,
        target: str,
        space: str = "nb201",
        *,
        model_config_key: str | None = None,
        include_flagged: bool = False,
    ) -> dict[str, float]:
        """Arch string -> measured energy per inference (mJ); unknown and estimated values are
        left out (never mixed with measured ones), flagged rows as in :meth:`latency_table`."""
        return self._table(target, space, "energy", model_config_key, include_flagged)[0]

    def quality_exclusions(
        self,
        target: str,
        space: str = "nb201",
        metric: str = "latency_ms",
        *,
        model_config_key: str | None = None,
    ) -> QualityExclusions:
        """What the default quality filter leaves out of :meth:`latency_table` (``metric``
        ``latency_ms``) or :meth:`energy_table` (``energy_mj``) of a target."""
        what = "latency" if metric == "latency_ms" else "energy"
        return self._table(target, space, what, model_config_key, False)[1]

    def _table(
        self,
        target: str,
        space: str,
        what: str,
        model_config_key: str | None,
        include_flagged: bool = False,
    ) -> tuple[dict[str, float], QualityExclusions]:
        resolved = self.resolve_target(target)
        with self._read() as conn:
            if "/" not in resolved:  # external device
                e = external_table.c
                col = e.latency_ms if what == "latency" else e.energy_mj
                rows = conn.execute(
                    select(e.arch, col).where(
                        e.device_name == resolved, e.space == space, col.is_not(None)
                    )
                ).all()
            else:
                rows = None
            if rows is not None:
                good = {a: float(v) for a, v in rows if _arch_parses(space, a)}
                if len(good) < len(rows):
                    self._warn_damaged(len(rows) - len(good), f"imported {what} values")
                return good, QualityExclusions()
            t = measurements_table.c
            mck = model_config_key or _space(space).default_model_config().key()
            col = t.latency_ms_median if what == "latency" else t.energy_mj
            conds = [
                t.config_key == resolved,
                t.space == space,
                t.model_config_key == mck,
                t.status == MeasurementStatus.OK.value,
                col.is_not(None),
            ]
            if what == "energy":
                conds.append(
                    t.energy_method.not_in(
                        [EnergyMethod.UNKNOWN.value, EnergyMethod.ESTIMATE_POWER_X_TIME.value]
                    )
                )
            quality = t.quality if self._has_quality else literal_column("NULL")
            rows = conn.execute(
                select(t.arch, col, quality).where(*conds).order_by(t.created_at, t.id)
            ).all()
        refs: set[str] = set()
        if not include_flagged and any(q not in (None, "ok") for _, _, q in rows):
            refs = set(_space(space).reference_strings())
        kept: list[tuple[str, Any]] = []
        excluded: dict[str, int] = {}
        kept_refs = kept_flagged = 0
        if not include_flagged and refs:
            extra = [q for a, _, q in rows if a not in refs]
            flagged = sum(q not in (None, "ok") for q in extra)
            if extra and flagged > FLAGGED_KEEP * len(extra):
                include_flagged, kept_flagged = True, flagged  # the majority: keep them all
        for a, v, q in rows:
            if include_flagged or q in (None, "ok"):
                kept.append((a, v))
            elif a in refs:
                kept.append((a, v))
                kept_refs += 1
            else:
                excluded[str(q)] = excluded.get(str(q), 0) + 1
        good = {a: float(v) for a, v in kept if _arch_parses(space, a)}
        if len(good) < len({a for a, _ in kept}):
            self._warn_damaged(len({a for a, _ in kept}) - len(good), f"{what} values")
        report = QualityExclusions(
            excluded=sum(excluded.values()),
            kept_references=kept_refs,
            by_quality=tuple(sorted(excluded.items())),
            kept_flagged=kept_flagged,
        )
        if kept_flagged:
            log.warning(
                "%d of the %s measurements of %s are flagged (noisy or interfered): more than "
                "%g of them, so they are all kept; re-measure on a quiet machine with "
                "`hilnas profile --retry-flagged`",
                kept_flagged,
                what,
                resolved,
                FLAGGED_KEEP,
            )
        if report.excluded:
            log.info(
                "left %d flagged %s measurement(s) of %s out of its table (%s); pass "
                "include_flagged=True to use them",
                report.excluded,
                what,
                resolved,
                ", ".join(f"{k}: {n}" for k, n in report.by_quality),
            )
        return good, report  # later rows overwrite earlier ones

    # ----- external devices ---------------------------------------------------------------
    def import_external_device(
        self,
        name: str,
        rows: Iterable[Sequence[Any]],
        space: str = "nb201",
        source: str | os.PathLike[str] | None = None,
        *,
        source_sha256: str | None = None,
        replace: bool = False,
    ) -> int:
        """Register an external device from rows of ``(arch, latency_ms, energy_mj | None)``.

        Every row is validated before anything is written (canonical or parseable architecture,
        finite positive latency, finite non-negative energy or None, no repeated architecture);
        the rows are stored in one transaction (all or nothing). Re-importing the same content is
        a no-op; different content under an existing name needs ``replace=True``. Returns the
        number of rows stored for the device.
        """
        check_external_name(name)
        sp = _space(space)
        clean: list[tuple[str, int | None, float, float | None]] = []
        seen: dict[str, int] = {}
        for i, row in enumerate(rows, start=1):
            row = tuple(row)
            if len(row) not in (2, 3):
                raise InvalidInputError(
                    f"row {i}: expected (arch, latency_ms[, energy_mj]), got {row!r}"
                )
            arch_raw, lat_raw = row[0], row[1]
            energy_raw = row[2] if len(row) == 3 else None
            try:
                code = sp.coerce(arch_raw.strip() if isinstance(arch_raw, str) else arch_raw)
            except (ValueError, IndexError, TypeError) as exc:
                raise InvalidInputError(f"row {i}: {exc}") from None
            arch = sp.format(code)
            if arch in seen:
                raise InvalidInputError(f"row {i}: architecture {arch} repeats row {seen[arch]}")
            seen[arch] = i
            try:
                latency = _finite(_blank_none(lat_raw), "latency_ms", positive=True)
                energy = _finite(_blank_none(energy_raw), "energy_mj", allow_none=True)
            except ValueError as exc:
                raise InvalidInputError(f"row {i} ({arch}): {exc}") from None
            clean.append((arch, sp.index_or_none(code), latency, energy))
        if not clean:
            raise InvalidInputError(f"no measurements to import for {name!r}")
        source_name: str | None = None
        if source is not None:
            p = Path(source)
            source_name = p.name
            if source_sha256 is None and p.is_file():
                source_sha256 = hashlib.sha256(p.read_bytes()).hexdigest()
        if source_sha256 is None:
            blob = "\n".join(f"{a},{lat!r},{en!r}" for a, _, lat, en in sorted(clean))
            source_sha256 = hashlib.sha256(blob.encode()).hexdigest()
        now = _now()
        e = external_table.c
        with self._write() as conn:
            dev = conn.execute(
                select(devices_table.c.kind).where(devices_table.c.id == name)
            ).first()
            if dev is not None and dev.kind != DeviceKind.EXTERNAL.value:
                raise StoreError(
                    f"{name!r} is the id of a measured {dev.kind} device; choose another name"
                )
            old = conn.execute(
                select(e.arch, e.latency_ms, e.energy_mj).where(
                    e.device_name == name, e.space == space
                )
            ).all()
            if old:
                same = {
                    (a, float(lat), None if en is None else float(en)) for a, lat, en in old
                } == {(a, lat, en) for a, _, lat, en in clean}
                if same:
                    return len(old)
                if not replace:
                    raise StoreError(
                        f"external device {name!r} already has {len(old)} {space} measurements "
                        "that differ from these; pass replace=True (--replace) to replace them, "
                        "or choose another name"
                    )
                conn.execute(delete(external_table).where(e.device_name == name, e.space == space))
            conn.execute(
                insert(external_table),
                [
                    {
                        "device_name": name,
                        "space": space,
                        "arch": arch,
                        "arch_index": index,
                        "latency_ms": lat,
                        "energy_mj": en,
                        "source_name": source_name,
                        "source_sha256": source_sha256,
                        "imported_at": now,
                    }
                    for arch, index, lat, en in clean
                ],
            )
            dev_values = {
                "kind": DeviceKind.EXTERNAL.value,
                "name": name,
                "fingerprint": source_sha256,
                "properties": {"source": source_name, "space": space, "rows": len(clean)},
                "aliases": [],
                "energy_counter": None,
                "energy_unavailable_reason": "external device: energy as imported",
                "host": None,
                "last_seen": now,
            }
            if dev is None:
                conn.execute(insert(devices_table).values(id=name, first_seen=now, **dev_values))
            else:
                conn.execute(
                    update(devices_table).where(devices_table.c.id == name).values(**dev_values)
                )
        return len(clean)

    def external_devices(self) -> list[ExternalDevice]:
        e = external_table.c
        with self._read() as conn:
            rows = conn.execute(
                select(
                    e.device_name,
                    e.space,
                    func.count(),
                    func.count(e.energy_mj),
                    func.max(e.source_name),
                    func.max(e.source_sha256),
                    func.max(e.imported_at),
                )
                .group_by(e.device_name, e.space)
                .order_by(e.device_name, e.space)
            ).all()
        return [
            ExternalDevice(
                name=r[0],
                space=r[1],
                count=int(r[2]),
                with_energy=int(r[3]),
                source_name=r[4],
                source_sha256=r[5],
                imported_at=_utc(r[6]),
            )
            for r in rows
        ]

    def external_measurements(
        self, name: str, space: str = "nb201"
    ) -> list[tuple[str, float, float | None]]:
        e = external_table.c
        with self._read() as conn:
            rows = conn.execute(
                select(e.arch, e.latency_ms, e.energy_mj)
                .where(e.device_name == name, e.space == space)
                .order_by(e.id)
            ).all()
        good = [
            (a, float(lat), None if en is None else float(en))
            for a, lat, en in rows
            if _arch_parses(space, a)
        ]
        if len(good) < len(rows):
            self._warn_damaged(len(rows) - len(good), "imported measurements")
        return good


# ----------------------------------------------------------------------------------------------
# names of imported devices
# ----------------------------------------------------------------------------------------------
#: ``cpu``, ``cpu0``, ``gpu``, ``gpu3`` and local ids ``cpu-1a2b3c4d`` / ``gpu-...``: these mean
#: a device of *this* machine to ``hilnas profile``; an imported device may not shadow them.
_LOCAL_ALIAS_RE = re.compile(r"^(cpu|gpu)(\d+|-[0-9a-f]{8})?$", re.IGNORECASE)


def _reference_device_names() -> tuple[str, ...]:
    """Devices of the shipped NB201 reference data (latency and energy), e.g. ``gold_6226``."""
    try:
        from hilnas.pipeline.refdata import load_nb201

        ref = load_nb201()
    except Exception as exc:  # noqa: BLE001 - a missing data file only narrows the check
        log.debug("reference data unavailable for the name check: %s", exc)
        return ()
    return tuple(ref.latency_devices) + tuple(ref.energy_devices)


def _local_device_names() -> set[str]:
    """Ids and aliases of the devices discovered on this machine (discovery never raises)."""
    try:
        from hilnas.devices import discover

        names: set[str] = set()
        for d in discover():
            names.add(d.id.lower())
            names.update(a.lower() for a in d.aliases)
        return names
    except Exception as exc:  # noqa: BLE001 - discovery problems only narrow the check
        log.debug("device discovery failed during the name check: %s", exc)
        return set()


def _free_name(name: str, taken: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.\-]", "_", name)[:80].strip("_.-") or "device"
    for suffix in ("_ext", "_imported", "_csv"):
        candidate = f"{stem}{suffix}"
        if candidate.lower() not in taken:
            return candidate
    return f"{stem}_ext2"  # pragma: no cover - every suffix taken


def check_external_name(name: object) -> str:
    """Return ``name`` if it can name an imported device, else raise :class:`ExternalNameError`.

    Refused: malformed names, aliases and ids of local devices (``cpu``, ``gpu0``,
    ``cpu-1a2b3c4d``...), the reference devices of the shipped data (``gold_6226``...) and
    configuration keys (``cpu-1a2b3c4d/cpu/t1/b1``): each of those already means another
    device to ``profile``, ``predict`` or ``measurements export``. The message names a free
    alternative.
    """
    if not isinstance(name, str) or not name.strip():
        raise ExternalNameError("an imported device needs a name, e.g. jetson_nano")
    refs = _reference_device_names()
    taken = {r.lower() for r in refs} | _local_device_names()
    if "/" in name:
        alt = _free_name(name.replace("/", "_"), taken)
        raise ExternalNameError(
            f"{name!r} looks like a device configuration key (it contains '/'); choose another "
            f"name, a plain one, for the imported device, e.g. {alt!r}"
        )
    if not _EXTERNAL_NAME_RE.match(name):
        raise ExternalNameError(
            f"external device name {name!r} must be 1-100 letters, digits, '_', '.', '-' "
            "(starting with a letter or digit), e.g. 'jetson_nano'"
        )
    low = name.lower()
    if _LOCAL_ALIAS_RE.match(name) or low in _local_device_names():
        raise ExternalNameError(
            f"{name!r} names a local device of this machine (`hilnas profile --device {name}` "
            f"measures it); choose another name for the imported device, e.g. "
            f"{_free_name(name, taken)!r}"
        )
    if low in {r.lower() for r in refs}:
        raise ExternalNameError(
            f"{name!r} is a reference device of the shipped NB201 data; choose another name for "
            f"the imported device, e.g. {_free_name(name, taken)!r}"
        )
    return name


# ----------------------------------------------------------------------------------------------
# row conversion and small utilities
# ----------------------------------------------------------------------------------------------
def _case_count(cond: Any) -> Any:
    from sqlalchemy import case

    return case((cond, 1), else_=0)


def _blank_none(value: Any) -> Any:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return value


def _key_clause(key: MeasurementKey, *, with_arch: bool = True) -> Any:
    t = measurements_table.c
    conds = [
        t.space == key.space,
        t.model_config_key == key.model_config_key,
        t.opset == int(key.opset),
        t.device_id == key.device_id,
        t.execution_provider == key.execution_provider,
        t.intra_op_threads == int(key.threads),
        t.batch_size == int(key.batch_size),
        t.warmup == int(key.warmup),
        t.repetitions == int(key.repetitions),
    ]
    if with_arch:
        conds.append(t.arch == key.arch)
    return and_(*conds)


def _attempt_values(values: dict[str, Any], kept_id: int, available: bool) -> dict[str, Any]:
    """An attempts-table row from a measurement row's values (see :data:`attempts_table`)."""
    if not available:  # pragma: no cover - writable stores are always migrated on open
        raise StoreError("the store lacks its measurement_attempts table; reopen it to migrate")
    names = {c.name for c in attempts_table.columns} - {"id", "measurement_id"}
    row = {k: v for k, v in values.items() if k in names}
    row["measurement_id"] = kept_id
    return row


def _key_params(key: MeasurementKey) -> dict[str, Any]:
    return {
        "k_space": key.space,
        "k_arch": key.arch,
        "k_model_config_key": key.model_config_key,
        "k_opset": int(key.opset),
        "k_device_id": key.device_id,
        "k_execution_provider": key.execution_provider,
        "k_intra_op_threads": int(key.threads),
        "k_batch_size": int(key.batch_size),
        "k_warmup": int(key.warmup),
        "k_repetitions": int(key.repetitions),
    }


# Prebuilt statements of the hot path (one measurement stored per model): compiled once.
_SELECT_ID_BY_KEY = select(measurements_table.c.id, measurements_table.c.status).where(
    *(measurements_table.c[name] == bindparam(f"k_{name}") for name in KEY_COLUMNS)
)
_INSERT_MEASUREMENT = insert(measurements_table)


def _jsonable(value: Any) -> Any:
    """Properties as plain JSON (enums, paths, tuples, numpy scalars made portable)."""
    import json

    return json.loads(json.dumps(value, default=_json_default))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if hasattr(obj, "item"):
        try:
            return obj.item()
        except Exception:
            pass
    return str(obj)


def _device_from_row(row: Any) -> DeviceInfo:
    return DeviceInfo(
        id=row.id,
        kind=DeviceKind(row.kind),
        name=row.name,
        fingerprint=row.fingerprint,
        properties=dict(row.properties or {}),
        energy_counter=row.energy_counter,
        energy_unavailable_reason=row.energy_unavailable_reason,
        aliases=tuple(row.aliases or ()),
    )


@functools.lru_cache(maxsize=65536)
def _arch_parses(space: str, arch: Any) -> bool:
    """Whether ``arch`` is a canonical architecture string of ``space`` (damaged pages give
    garbled strings that must never reach an export or a predictor)."""
    if not isinstance(arch, str):
        return False
    try:
        sp = _space(space)
        return sp.format(sp.parse(arch)) == arch
    except Exception:  # noqa: BLE001 - any parse failure means "not this space's string"
        return False


def _checked_record(row: Any) -> MeasurementRecord | None:
    """The record of a stored row, or None when the row does not parse (a damaged store)."""
    if not _arch_parses(row.space, row.arch):
        return None
    try:
        return _record_from_row(row)
    except (ValueError, TypeError, KeyError):
        return None


def _record_from_row(row: Any) -> MeasurementRecord:
    key = MeasurementKey(
        space=row.space,
        arch=row.arch,
        model_config_key=row.model_config_key,
        opset=int(row.opset),
        device_id=row.device_id,
        execution_provider=row.execution_provider,
        threads=int(row.intra_op_threads),
        batch_size=int(row.batch_size),
        warmup=int(row.warmup),
        repetitions=int(row.repetitions),
    )
    m = Measurement(
        status=MeasurementStatus(row.status),
        error=row.error,
        latency_ms_median=row.latency_ms_median,
        latency_ms_mean=row.latency_ms_mean,
        latency_ms_p90=row.latency_ms_p90,
        latency_ms_iqr=row.latency_ms_iqr,
        latency_ms_cv=row.latency_ms_cv,
        latency_ms_min=row.latency_ms_min,
        energy_mj=row.energy_mj,
        energy_method=EnergyMethod(row.energy_method),
        energy_reason=row.energy_reason,
        peak_memory_mb=row.peak_memory_mb,
        memory_method=row.memory_method,
        onnxruntime_version=row.onnxruntime_version,
        execution_provider=row.execution_provider,
        intra_op_threads=int(row.intra_op_threads),
        batch_size=int(row.batch_size),
        warmup=int(row.warmup),
        repetitions=int(row.repetitions),
        session_create_s=row.session_create_s,
        timed_s=row.timed_s,
        wall_s=float(row.wall_s),
        started_at=row.started_at,
        finished_at=row.finished_at,
    )
    return MeasurementRecord(
        id=int(row.id),
        key=key,
        measurement=m,
        arch_index=row.arch_index,
        config_key=row.config_key,
        device_fingerprint=row.device_fingerprint,
        onnx_sha256=row.onnx_sha256,
        exporter=row.exporter,
        export_s=row.export_s,
        host=row.host,
        hilnas_version=row.hilnas_version,
        created_at=_utc(row.created_at),
        **{name: getattr(row, name, None) for name in QUALITY_COLUMNS},
    )


def _quality_values(quality: Any | None) -> dict[str, Any]:
    """The schema-3 column values of a :class:`~hilnas.profilers.quality.MeasurementQuality`
    (all None for None); ``InvalidInputError`` for an unknown flag or a bad number."""
    if quality is None:
        return dict.fromkeys(QUALITY_COLUMNS)
    flag = getattr(quality, "quality", None)
    flag = getattr(flag, "value", flag)
    if flag not in QUALITY_VALUES:
        raise InvalidInputError(
            f"unknown measurement quality {flag!r}; use one of {', '.join(QUALITY_VALUES)}"
        )
    drift = getattr(quality, "sentinel_drift", None)
    if drift is not None:
        drift = float(drift)
        if not math.isfinite(drift):
            raise InvalidInputError(f"sentinel_drift must be finite, got {drift!r}")
    reason = getattr(quality, "reason", None)
    return {
        "quality": flag,
        "quality_reason": None if reason is None else str(reason),
        "load_1m": _finite(getattr(quality, "load_1m", None), "load_1m", allow_none=True),
        "other_cpu_cores": _finite(
            getattr(quality, "other_cpu_cores", None), "other_cpu_cores", allow_none=True
        ),
        "sentinel_drift": drift,
    }


def read_external_csv(path: str | os.PathLike[str]) -> list[tuple[str, str, str | None]]:
    """Rows ``(arch, latency_ms, energy_mj | None)`` of a CSV with columns ``arch``,
    ``latency_ms`` and optionally ``energy_mj`` (values are validated on import)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"cannot read {p} ({exc.strerror or exc})") from exc
    try:
        reader = csv.DictReader(io.StringIO(raw.decode("utf-8-sig")))
        header = [h.strip() for h in (reader.fieldnames or [])]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InvalidInputError(f"{p} is not a UTF-8 CSV file ({exc})") from exc
    missing = [c for c in ("arch", "latency_ms") if c not in header]
    if missing:
        raise InvalidInputError(
            f"{p} lacks the column(s) {', '.join(missing)}; a device CSV has the columns arch, "
            f"latency_ms and optionally energy_mj (found: {', '.join(header) or 'none'})"
        )
    reader.fieldnames = header
    out = []
    try:
        for row in reader:
            energy = row.get("energy_mj")
            arch, latency = row["arch"], row["latency_ms"]
            if arch is None or latency is None:
                raise InvalidInputError(
                    f"{p} line {reader.line_num}: too few fields; each line needs arch,latency_ms"
                    "[,energy_mj]"
                )
            out.append((arch, latency, energy if energy not in ("", None) else None))
    except csv.Error as exc:  # raised while reading the line after the last one counted
        raise InvalidInputError(
            f"{p} line {reader.line_num + 1}: not a valid device CSV line ({exc}; an architecture "
            "string and numbers are far shorter, or a quote is unbalanced); fix that line"
        ) from exc
    return out


__all__ = [
    "DATABASE_URL_ENV",
    "SCHEMA_VERSION",
    "AddResult",
    "ConfigSummary",
    "ExternalDevice",
    "MeasurementKey",
    "MeasurementRecord",
    "MeasurementStore",
    "NotAHilnasStoreError",
    "QUALITY_COLUMNS",
    "QUALITY_VALUES",
    "QualityExclusions",
    "StoreError",
    "TargetNotFoundError",
    "StoreDamagedError",
    "StoreFullError",
    "StoreNotFoundError",
    "StoreReadOnlyError",
    "ExternalNameError",
    "check_external_name",
    "default_url",
    "read_external_csv",
    "redact",
]
