"""The measurement record every profiler returns, and the profiler contract (no torch here)."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any

# Defined next to the counters (devices/ may not import profilers/); re-exported here so that
# ``hilnas.profilers.base.EnergyMethod`` is the one enum used by records and the store.
from hilnas.devices.energy import EnergyMethod
from hilnas.devices.errors import HilnasError, InvalidInputError, check_number

#: Bounds of :class:`ProfileSettings` (a day of timing per model is already absurd).
MAX_REPETITIONS = 1_000_000
MAX_WARMUP = 10_000
MIN_TIMEOUT_S = 0.001
MAX_TIMEOUT_S = 86_400.0

__all__ = [
    "MAX_REPETITIONS",
    "MAX_TIMEOUT_S",
    "MAX_WARMUP",
    "MIN_TIMEOUT_S",
    "EnergyMethod",
    "InvalidModelError",
    "Measurement",
    "MeasurementStatus",
    "ProfileSettings",
    "Profiler",
    "ProfilerError",
]


class ProfilerError(HilnasError, RuntimeError):
    """The profiler itself cannot work here (worker cannot start, provider missing...).

    Never raised for a fault of the model being measured: that is a FAILED Measurement.
    """


class InvalidModelError(ProfilerError, InvalidInputError):
    """A file that is not a loadable ONNX model (raised by ``validate_onnx_file``)."""


class MeasurementStatus(str, Enum):
    OK = "ok"
    FAILED = "failed"  # the model crashed, hung or was invalid; error says what happened


@dataclass(frozen=True, slots=True)
class ProfileSettings:
    """How one model is timed. Validated up front.

    Defaults: ``warmup=5`` untimed runs after session creation (the first run allocates the
    arena and, on CUDA, picks kernels; a few more settle caches), ``repetitions=50`` timed runs
    (enough for a stable median/p90 of a millisecond model at a fraction of a second), and
    ``timeout_s=120`` per model for session creation + warm-up + timed runs together.
    """

    warmup: int = 5
    repetitions: int = 50
    timeout_s: float = 120.0

    def __post_init__(self) -> None:
        # The one bound check of these sizes: the CLI, the flows and the Python API all pass
        # through here before a worker starts or anything is stored.
        check_number(
            "repetitions (--reps)",
            self.repetitions,
            low=1,
            high=MAX_REPETITIONS,
            fix=f"use --reps from 1 to {MAX_REPETITIONS:,} (30 gives a stable median)",
        )
        check_number(
            "warmup (--warmup)",
            self.warmup,
            low=0,
            high=MAX_WARMUP,
            fix=f"use --warmup from 0 to {MAX_WARMUP:,} (5 is plenty)",
        )
        check_number(
            "timeout_s (--timeout)",
            self.timeout_s,
            low=MIN_TIMEOUT_S,
            high=MAX_TIMEOUT_S,
            integer=False,
            fix=f"use --timeout from {MIN_TIMEOUT_S:g} to {MAX_TIMEOUT_S:g} seconds (default 120)",
        )


@dataclass(frozen=True, slots=True)
class Measurement:
    """One model measured on one device configuration, with how it was obtained."""

    status: MeasurementStatus
    error: str | None
    # latency over `repetitions` timed runs, milliseconds per run of one batch
    latency_ms_median: float | None
    latency_ms_mean: float | None
    latency_ms_p90: float | None
    latency_ms_iqr: float | None
    latency_ms_cv: float | None  # coefficient of variation (std / mean), unitless
    latency_ms_min: float | None
    # energy per run of one batch, millijoules; None when unknown (never 0 for unknown)
    energy_mj: float | None
    energy_method: EnergyMethod
    energy_reason: str | None
    peak_memory_mb: float | None
    memory_method: str | None
    # provenance
    onnxruntime_version: str
    execution_provider: str
    intra_op_threads: int
    batch_size: int
    warmup: int
    repetitions: int
    # timing of the measurement itself (seconds)
    session_create_s: float | None
    timed_s: float | None  # sum of timed inference runs
    wall_s: float
    started_at: str  # UTC ISO-8601
    finished_at: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = self.status.value
        d["energy_method"] = self.energy_method.value
        return d


class Profiler(ABC):
    """Measures ONNX models on one device configuration.

    Promises every implementation keeps:
    - :meth:`measure` returns a :class:`Measurement` for every path; a model that is missing,
      invalid, crashes or hangs the runtime gives ``status=FAILED`` with ``error`` saying what
      happened and what to do; it never raises for a fault of the model. It raises
      :class:`ProfilerError` only when the profiler itself cannot work (and the next call may
      succeed again).
    - Latencies are milliseconds per run of one batch; energy is millijoules per run with its
      method, or None with ``EnergyMethod.UNKNOWN`` and a reason (never 0 for unknown).
    - One measurement at a time: not thread-safe. Use as a context manager (``close`` frees
      worker processes).
    """

    @abstractmethod
    def measure(self, onnx_path: str | os.PathLike[str]) -> Measurement:
        """Measure one ONNX file (see the class promises)."""

    def close(self) -> None:  # noqa: B027 - an optional hook, a no-op by default
        """Release resources (worker processes); the profiler may not be used afterwards."""

    def __enter__(self) -> Profiler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
