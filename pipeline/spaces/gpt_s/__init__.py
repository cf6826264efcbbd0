"""The GPT-S search space of HW-GPT-Bench: space, surrogate oracles, measurements, model.

torch is imported only by :mod:`.model` and :mod:`.onnx_export`; the space, the surrogates and
the measurement table need numpy alone.
"""

from __future__ import annotations

from hilnas.pipeline.spaces.gpt_s.measured import MeasuredTable, load_measured
from hilnas.pipeline.spaces.gpt_s.space import (
    SOURCE_BATCH,
    SOURCE_CONFIG,
    GPTArch,
    GPTConfig,
    GPTSpace,
    count_macs,
    count_params,
    count_params_hwgpt,
)
from hilnas.pipeline.spaces.gpt_s.surrogates import (
    CPU_DEVICES,
    DEVICES,
    GPU_DEVICES,
    MJ_PER_WH,
    GPTSurrogates,
    Prediction,
    load_surrogates,
)

__all__ = [
    "CPU_DEVICES",
    "DEVICES",
    "GPU_DEVICES",
    "MJ_PER_WH",
    "SOURCE_BATCH",
    "SOURCE_CONFIG",
    "GPTArch",
    "GPTConfig",
    "GPTSpace",
    "GPTSurrogates",
    "MeasuredTable",
    "Prediction",
    "count_macs",
    "count_params",
    "count_params_hwgpt",
    "load_measured",
    "load_surrogates",
]
