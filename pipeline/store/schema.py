"""The SQLAlchemy tables of a store, its schema version and the column sets the code
checks (the migrations that bring older stores up to :data:`SCHEMA_VERSION` are in
:mod:`~hilnas.pipeline.store.opening`)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

#: Version of the table layout written by this code; bumped with a migration in ``_migrate`` (:mod:`~hilnas.pipeline.store.opening`).
SCHEMA_VERSION = 3  # 2: measurement_attempts; 3: measurement quality flags (nullable columns)
APP_MARKER = "hilnas"


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
