"""hilnas: profilers — measure an ONNX model on one device configuration (never imports torch).

onnxruntime is imported by the worker process and by ``validate_onnx_file``, not on import.
"""

from hilnas.profilers.base import (
    EnergyMethod,
    InvalidModelError,
    Measurement,
    MeasurementStatus,
    Profiler,
    ProfilerError,
    ProfileSettings,
)
from hilnas.profilers.ort import OrtProfiler, validate_onnx_file
from hilnas.profilers.quality import (
    DEFAULT_THRESHOLDS,
    MeasurementQuality,
    Quality,
    QualityThresholds,
    assess,
)
from hilnas.profilers.stats import LatencyStats, latency_stats

__all__ = [
    "DEFAULT_THRESHOLDS",
    "EnergyMethod",
    "InvalidModelError",
    "LatencyStats",
    "Measurement",
    "MeasurementQuality",
    "MeasurementStatus",
    "OrtProfiler",
    "ProfileSettings",
    "Profiler",
    "ProfilerError",
    "Quality",
    "QualityThresholds",
    "assess",
    "latency_stats",
    "validate_onnx_file",
]
