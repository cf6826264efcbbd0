"""A small writer of ONNX graphs for the spaces' direct builders (no tracing, no copies).

Nodes and float32 initializers go straight into a ``GraphProto``; attributes are made once per
distinct value and reused. Shared by every space's ONNX builder so that they write graphs the
same way (the NB201 builder's files are byte-identical to those it wrote before this module).
"""

from __future__ import annotations

from typing import Any

import numpy as np


class GraphWriter:
    """Writes nodes and initializers straight into a ``GraphProto`` (no intermediate copies)."""

    def __init__(self, proto) -> None:
        from onnx import TensorProto, helper

        self._helper = helper
        self._float = TensorProto.FLOAT
        self.proto = proto
        self._attrs: dict[tuple[str, Any], Any] = {}
        self._zero: str | None = None

    def const(self, name: str, array: np.ndarray) -> str:
        arr = np.asarray(array, dtype="<f4")  # tobytes() writes C order whatever the layout
        t = self.proto.initializer.add()
        t.name = name
        t.data_type = self._float
        t.dims.extend(arr.shape)
        t.raw_data = arr.tobytes()
        return name

    def const_raw(self, name: str, dims: tuple[int, ...], raw: bytes) -> str:
        """An initializer from little-endian float32 bytes (e.g. cached between exports)."""
        t = self.proto.initializer.add()
        t.name = name
        t.data_type = self._float
        t.dims.extend(dims)
        t.raw_data = raw
        return name

    def node(
        self, op: str, inputs: list[str], name: str, output: str | None = None, **attrs
    ) -> str:
        out = output or f"{name}:out"
        n = self.proto.node.add()
        n.op_type = op
        n.name = name
        n.input.extend(inputs)
        n.output.append(out)
        for key in sorted(attrs):
            value = attrs[key]
            cache_key = (key, tuple(value) if isinstance(value, list) else value)
            attr = self._attrs.get(cache_key)
            if attr is None:
                attr = self._attrs[cache_key] = self._helper.make_attribute(key, value)
            n.attribute.append(attr)
        return out

    def zero(self) -> str:
        if self._zero is None:
            self._zero = self.const("zero", np.zeros((), dtype=np.float32))
        return self._zero
