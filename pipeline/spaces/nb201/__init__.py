"""NAS-Bench-201 (Dong & Yang, ICLR 2020): the cell space, its network and its ONNX graph.

- :mod:`.space`: :class:`NB201`, the registered space (strings, indices, encodings, reference
  architectures, the model configuration, cost features);
- :mod:`.torch_model`: the discrete network as a torch module (imports torch);
- :mod:`.onnx_builder`: a direct ONNX builder of the same network (no torch, no tracing);
- :mod:`.supernet`: the weight-sharing supernet and standalone retraining (imports torch).

Other packages use the space through :func:`hilnas.pipeline.spaces.get_space` and the names
re-exported here.
"""

from hilnas.pipeline.spaces.nb201.space import (
    EDGES,
    NB201,
    OPS,
    REDUCTIONS,
    check_config,
    live_edges,
)

__all__ = ["EDGES", "NB201", "OPS", "REDUCTIONS", "check_config", "live_edges"]
