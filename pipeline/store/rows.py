"""Row conversion and small utilities shared by the store's parts: timestamps, number
checks, the space lookup, the architecture check, SQL conditions and prebuilt statements,
stored rows to records and quality flags to column values."""

from __future__ import annotations

import functools
import math
from datetime import datetime, timezone
from enum import Enum
from typing import Any

from hilnas.devices.base import DeviceInfo, DeviceKind
from hilnas.devices.errors import InvalidInputError
from hilnas.pipeline.store.errors import StoreError
from hilnas.pipeline.store.records import MeasurementKey, MeasurementRecord
from hilnas.pipeline.store.schema import (
    KEY_COLUMNS,
    QUALITY_COLUMNS,
    QUALITY_VALUES,
    attempts_table,
    measurements_table,
)
from hilnas.profilers.base import EnergyMethod, Measurement, MeasurementStatus
from sqlalchemy import and_, bindparam, insert, select


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
