"""A :class:`~hilnas.profilers.base.Measurement` with plain defaults, for tests.

Tests of the store, the quality checks and the CLI need measurements without measuring
anything; :func:`fake_measurement` builds one that says so (``energy_reason``) and that the
store accepts. Nothing here is ever written by a profiler.
"""

from __future__ import annotations

from typing import Any

from hilnas.profilers.base import EnergyMethod, Measurement, MeasurementStatus

__all__ = ["fake_measurement"]


def fake_measurement(
    latency_ms: float = 1.0,
    *,
    ok: bool = True,
    error: str = "timed out after 0.001 s",
    cv: float = 0.01,
    warmup: int = 1,
    repetitions: int = 3,
    **fields: Any,
) -> Measurement:
    """An ok measurement of ``latency_ms`` (median; the other statistics derived from it), or
    with ``ok=False`` a failed one carrying ``error``. ``fields`` override any field of
    :class:`~hilnas.profilers.base.Measurement` (e.g. ``execution_provider``, ``energy_mj``)."""
    lat = latency_ms if ok else None
    values: dict[str, Any] = dict(
        status=MeasurementStatus.OK if ok else MeasurementStatus.FAILED,
        error=None if ok else error,
        latency_ms_median=lat,
        latency_ms_mean=lat,
        latency_ms_p90=lat,
        latency_ms_iqr=0.0 if ok else None,
        latency_ms_cv=cv if ok else None,
        latency_ms_min=lat,
        energy_mj=None,
        energy_method=EnergyMethod.UNKNOWN,
        energy_reason="no counter in tests",
        peak_memory_mb=None,
        memory_method=None,
        onnxruntime_version="1.0",
        execution_provider="CPUExecutionProvider",
        intra_op_threads=1,
        batch_size=1,
        warmup=warmup,
        repetitions=repetitions,
        session_create_s=0.01,
        timed_s=0.01 if ok else None,
        wall_s=0.05,
        started_at="2026-01-01T00:00:00+00:00",
        finished_at="2026-01-01T00:00:01+00:00",
    )
    values.update(fields)
    return Measurement(**values)
