"""The measurement record every profiler returns (no torch here)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any


class EnergyMethod(str, Enum):
    NVML_TOTAL_ENERGY = "nvml_total_energy"  # nvmlDeviceGetTotalEnergyConsumption delta
    RAPL_POWERCAP = "rapl_powercap"  # /sys/class/powercap intel-rapl energy_uj delta
    ESTIMATE_POWER_X_TIME = "estimate_power_x_time"  # labelled estimate, never mixed with measured
    UNKNOWN = "unknown"  # no counter; energy_mj is None and energy_reason says why


class MeasurementStatus(str, Enum):
    OK = "ok"
    FAILED = "failed"  # the model crashed, hung or was invalid; error says what happened


@dataclass(frozen=True, slots=True)
class ProfileSettings:
    """How one model is timed. Validated up front."""

    warmup: int = 10
    repetitions: int = 50
    timeout_s: float = 120.0

    def __post_init__(self) -> None:
        if self.repetitions < 1:
            raise ValueError(f"repetitions must be >= 1, got {self.repetitions}; use --reps 1 or more")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")


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
