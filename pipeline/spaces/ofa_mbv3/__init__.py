"""The OFA MobileNetV3 search space (``ofa_mbv3``); see :mod:`.space` for its definition.

Modules: :mod:`.space` (decisions, canonical strings, geometry, costs; numpy only),
:mod:`.reference` (HELP's 10 reference architectures), :mod:`.weights` (deterministic initial
weights, numpy only), :mod:`.torch_model` (the PyTorch subnet), :mod:`.onnx_builder` (direct
ONNX export).
"""

from __future__ import annotations

from hilnas.pipeline.spaces.ofa_mbv3.space import OFAConfig, OFAMobileNetV3

__all__ = ["OFAConfig", "OFAMobileNetV3"]
