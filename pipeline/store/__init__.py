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

Where each part lives (every name is re-exported here, so ``from hilnas.pipeline.store import
X`` is the way to use them):

- :mod:`~hilnas.pipeline.store.errors`: the error classes (:class:`StoreError` and its kinds,
  :class:`ExternalNameError`);
- :mod:`~hilnas.pipeline.store.records`: :class:`MeasurementKey`, :class:`MeasurementRecord`,
  :class:`ExternalDevice`, :class:`ConfigSummary`, :class:`QualityExclusions` (with
  :data:`FLAGGED_KEEP`) and :class:`AddResult`;
- :mod:`~hilnas.pipeline.store.schema`: the SQLAlchemy tables, :data:`SCHEMA_VERSION` and the
  column sets (key, quality);
- :mod:`~hilnas.pipeline.store.engine`: :func:`default_url`, :func:`redact`, the read-only
  SQLite connector, disk-full detection, and the engine and transactions of a store;
- :mod:`~hilnas.pipeline.store.opening`: opening a store (integrity check, marker, schema
  version), the migrations of older schemas, open errors;
- :mod:`~hilnas.pipeline.store.rows`: row conversion and the small utilities the parts share;
- :mod:`~hilnas.pipeline.store.devices`: measured devices;
- :mod:`~hilnas.pipeline.store.measurements`: adding, flagging, reading and counting
  measurements, failed attempts, per-configuration summaries;
- :mod:`~hilnas.pipeline.store.targets`: targets and the tables predictors fit on (with the
  quality filter);
- :mod:`~hilnas.pipeline.store.external`: imported devices, their names and CSV files;
- :mod:`~hilnas.pipeline.store.measurement_store`: :class:`MeasurementStore`, one class made
  of one mixin per part above.
"""

from __future__ import annotations

import logging

from hilnas.pipeline.store.engine import (  # noqa: F401
    DATABASE_URL_ENV,
    DEFAULT_DB_NAME,
    SQLITE_BUSY_TIMEOUT_MS,
    _first_line,
    _fix_hint,
    _is_disk_full,
    _read_only_connector,
    default_url,
    redact,
)
from hilnas.pipeline.store.errors import (  # noqa: F401
    ExternalNameError,
    NotAHilnasStoreError,
    StoreDamagedError,
    StoreError,
    StoreFullError,
    StoreNotFoundError,
    StoreReadOnlyError,
    TargetNotFoundError,
)
from hilnas.pipeline.store.external import (  # noqa: F401
    _EXTERNAL_NAME_RE,
    _LOCAL_ALIAS_RE,
    _free_name,
    _local_device_names,
    _reference_device_names,
    check_external_name,
    read_external_csv,
)
from hilnas.pipeline.store.measurement_store import MeasurementStore  # noqa: F401
from hilnas.pipeline.store.opening import _PG_INIT_LOCK, QUICK_CHECK_MAX_BYTES  # noqa: F401
from hilnas.pipeline.store.records import (  # noqa: F401
    FLAGGED_KEEP,
    AddResult,
    ConfigSummary,
    ExternalDevice,
    MeasurementKey,
    MeasurementRecord,
    QualityExclusions,
)
from hilnas.pipeline.store.rows import (  # noqa: F401
    _INSERT_MEASUREMENT,
    _SELECT_ID_BY_KEY,
    _arch_parses,
    _attempt_values,
    _blank_none,
    _case_count,
    _checked_record,
    _device_from_row,
    _finite,
    _json_default,
    _jsonable,
    _key_clause,
    _key_params,
    _measurement_filters,
    _now,
    _quality_values,
    _record_from_row,
    _space,
    _utc,
    hilnas_version,
)
from hilnas.pipeline.store.schema import (  # noqa: F401
    _V1_TABLES,
    APP_MARKER,
    HILNAS_TABLES,
    KEY_COLUMNS,
    QUALITY_COLUMNS,
    QUALITY_VALUES,
    SCHEMA_VERSION,
    attempts_table,
    devices_table,
    external_table,
    measurements_table,
    meta_table,
    metadata,
)

log = logging.getLogger(__name__)  # the logger every part of the store writes to

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
