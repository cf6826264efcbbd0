"""Direct ONNX construction of OFA MobileNetV3 subnets, without tracing.

``build_onnx`` writes the graph of :class:`~hilnas.pipeline.spaces.ofa_mbv3.torch_model.OFANetwork`
layer by layer from the same :class:`~hilnas.pipeline.spaces.ofa_mbv3.space.Plan` and the same
tensors (by ``state_dict`` name): the deterministic weights of :mod:`.weights` by default, or
the tensors of a given module (``model=``, e.g. a trained or re-calibrated one). A traced
``torch.onnx.export`` of a MobileNetV3 takes seconds; this takes milliseconds.

What the graph contains, mirroring the module's ``forward``:

- every ``Conv2d -> BatchNorm2d (eval)`` pair becomes one ``Conv`` with the BN folded into its
  weight and bias (scale computed in float64, stored as float32), depthwise convs with
  ``group = channels``;
- hard-swish is ``HardSwish`` from opset 14, ``x * HardSigmoid(x)`` (alpha 1/6, beta 1/2)
  below it; the squeeze-excite gate is ``HardSigmoid`` with those constants;
- squeeze-excite and the head's pooling are ``GlobalAveragePool``; the residual is an ``Add``;
  the classifier a ``Gemm`` after ``Flatten``.

Input ``"input"`` has the static shape ``(batch_size, in_channels, r, r)`` at the
architecture's resolution ``r``; output ``"logits"`` is ``(batch_size, num_classes)``
(``space.workload`` declares the same).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from hilnas.devices.errors import InvalidInputError, check_number
from hilnas.pipeline.spaces.ofa_mbv3.space import BN_EPS, MBConv, OFAConfig
from hilnas.pipeline.spaces.ofa_mbv3.weights import WEIGHT_SEED, LazyState, fold_bn
from hilnas.pipeline.spaces.onnx_graph import GraphWriter

if TYPE_CHECKING:  # pragma: no cover
    import onnx
    from hilnas.pipeline.spaces.ofa_mbv3.space import OFAMobileNetV3

#: Bump when the graph this module writes changes (it is part of provenance).
BUILDER_VERSION = "1"
#: Lowest opset whose operator versions carry every attribute used here.
MIN_OPSET = 11
#: First opset with a ``HardSwish`` operator.
HARDSWISH_OPSET = 14

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


#: Initializer bytes of the default weights, by (seed, tensor name, shape): exporting many
#: subnets reuses the fixed stem and head and the few variants of each layer slot. Bounded
#: (least recently used go first); width 1.2 has 451 such tensors, 73 MB in all.
_RAW_CACHE: OrderedDict[tuple[int, str, tuple[int, ...]], tuple[bytes, bytes | None]] = (
    OrderedDict()
)
_RAW_CACHE_SIZE = 600


class _Builder:
    def __init__(
        self, g: GraphWriter, state: Mapping[str, np.ndarray], opset: int, seed: int | None
    ) -> None:
        self.g = g
        self.state = state
        self.opset = opset
        self.seed = seed  # the default weights of this seed (cacheable), None for a module

    def _cached(self, key: tuple, make) -> tuple[bytes, bytes | None]:
        if self.seed is None:
            return make()
        key = (self.seed, *key)
        hit = _RAW_CACHE.get(key)
        if hit is None:
            hit = _RAW_CACHE[key] = make()
            if len(_RAW_CACHE) > _RAW_CACHE_SIZE:
                _RAW_CACHE.popitem(last=False)
        else:
            _RAW_CACHE.move_to_end(key)
        return hit

    def tensor(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        try:
            value = self.state[name]
        except KeyError:
            raise ValueError(f"the module has no tensor {name!r}") from None
        if tuple(value.shape) != shape:
            raise ValueError(f"{name}: shape {tuple(value.shape)}, the graph needs {shape}")
        return value

    def conv_bn(
        self, x: str, prefix: str, c_in: int, c_out: int, k: int, stride: int, groups: int = 1
    ) -> str:
        shape = (c_out, c_in // groups, k, k)

        def make() -> tuple[bytes, bytes]:
            w = self.tensor(f"{prefix}.conv.weight", shape)
            bn = [self.tensor(f"{prefix}.bn.{n}", (c_out,)) for n in _BN_NAMES]
            w, b = fold_bn(w, *bn, eps=BN_EPS)
            return _raw(w), _raw(b)

        w_raw, b_raw = self._cached((prefix, shape), make)
        return self.conv(x, prefix, (shape, w_raw), ((c_out,), b_raw), k, stride, groups)

    def param(self, name: str, shape: tuple[int, ...]) -> tuple[tuple[int, ...], bytes]:
        """A tensor of the state as ``(shape, bytes)``, from the cache for default weights."""
        raw, _ = self._cached((name, shape), lambda: (_raw(self.tensor(name, shape)), None))
        return shape, raw

    def conv(
        self,
        x: str,
        prefix: str,
        w: tuple[tuple[int, ...], bytes],
        b: tuple[tuple[int, ...], bytes] | None,
        k: int,
        stride: int,
        groups: int = 1,
    ) -> str:
        inputs = [x, self.g.const_raw(f"{prefix}.weight", *w)]
        if b is not None:
            inputs.append(self.g.const_raw(f"{prefix}.bias", *b))
        return self.g.node(
            "Conv",
            inputs,
            prefix,
            kernel_shape=[k, k],
            strides=[stride, stride],
            pads=[k // 2] * 4,
            dilations=[1, 1],
            group=groups,
        )

    def act(self, x: str, kind: str, name: str) -> str:
        if kind == "relu":
            return self.g.node("Relu", [x], f"{name}.relu")
        if kind == "hswish":
            if self.opset >= HARDSWISH_OPSET:
                return self.g.node("HardSwish", [x], f"{name}.hswish")
            gate = self.g.node("HardSigmoid", [x], f"{name}.hsig", alpha=1 / 6, beta=0.5)
            return self.g.node("Mul", [x, gate], f"{name}.hswish")
        raise ValueError(f"no ONNX translation for activation {kind!r}")  # pragma: no cover

    def block(self, x: str, b: MBConv) -> str:
        p, y = b.path, x
        if b.expand:
            y = self.act(
                self.conv_bn(y, f"{p}.expand", b.c_in, b.c_mid, 1, 1), b.act, f"{p}.expand"
            )
        y = self.conv_bn(y, f"{p}.dw", b.c_mid, b.c_mid, b.kernel, b.stride, groups=b.c_mid)
        y = self.act(y, b.act, f"{p}.dw")
        if b.squeeze:
            s = self.g.node("GlobalAveragePool", [y], f"{p}.se.pool")
            for part, c_in, c_out in (
                ("reduce", b.c_mid, b.squeeze),
                ("expand", b.squeeze, b.c_mid),
            ):
                w = self.param(f"{p}.se.{part}.weight", (c_out, c_in, 1, 1))
                bias = self.param(f"{p}.se.{part}.bias", (c_out,))
                s = self.conv(s, f"{p}.se.{part}", w, bias, 1, 1)
                if part == "reduce":
                    s = self.g.node("Relu", [s], f"{p}.se.relu")
            gate = self.g.node("HardSigmoid", [s], f"{p}.se.gate", alpha=1 / 6, beta=0.5)
            y = self.g.node("Mul", [y, gate], f"{p}.se.mul")
        y = self.conv_bn(y, f"{p}.project", b.c_mid, b.c_out, 1, 1)
        return self.g.node("Add", [x, y], f"{p}.add") if b.residual else y


_BN_NAMES = ("weight", "bias", "running_mean", "running_var")


def _raw(array: np.ndarray) -> bytes:
    return np.ascontiguousarray(array, dtype="<f4").tobytes()


def _module_state(model: Any, plan) -> dict[str, np.ndarray]:
    from hilnas.pipeline.spaces.ofa_mbv3.torch_model import OFANetwork

    if not isinstance(model, OFANetwork):
        raise ValueError(f"expected an OFANetwork, got {type(model).__name__}")
    if model.training:
        raise ValueError("the module is in training mode; call .eval() before exporting it")
    if model.plan != plan:
        raise ValueError("the module is another architecture or config than the one exported")
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def build_onnx(
    space: OFAMobileNetV3,
    arch: Sequence[int],
    config: OFAConfig | None,
    batch_size: int,
    opset: int,
    model: Any | None = None,
    seed: int = WEIGHT_SEED,
) -> onnx.ModelProto:
    """The ONNX model of ``space.build_model(arch, config)``, or of ``model`` with its tensors.

    Raises ``InvalidInputError`` for a bad batch size or opset, ``ValueError`` for a module that
    is not the network of ``arch`` and ``config`` in eval mode.
    """
    import onnx
    from onnx import TensorProto, helper

    code = space.canonical(arch)
    cfg = config or space.default_model_config()
    plan = space.plan(code, cfg)
    check_number("batch_size", batch_size, low=1, high=65_536)
    max_opset = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= max_opset:
        raise InvalidInputError(
            f"opset must be an integer in {MIN_OPSET}..{max_opset} (onnx {onnx.__version__}), "
            f"got {opset!r}; pass one in that range"
        )
    if model is None:
        state, cache_seed = LazyState(plan, seed), seed
    else:
        state, cache_seed = _module_state(model, plan), None

    proto = onnx.ModelProto()
    bld = _Builder(GraphWriter(proto.graph), state, opset, cache_seed)
    x = bld.conv_bn(INPUT_NAME, "stem", plan.in_channels, plan.stem, 3, 2)
    x = bld.act(x, "hswish", "stem")
    for b in plan.blocks:
        x = bld.block(x, b)
    c_last = plan.blocks[-1].c_out
    x = bld.act(
        bld.conv_bn(x, "head.expand", c_last, plan.final_expand, 1, 1), "hswish", "head.expand"
    )
    x = bld.g.node("GlobalAveragePool", [x], "head.pool")
    w = bld.param("head.mix.weight", (plan.last_channel, plan.final_expand, 1, 1))
    x = bld.act(bld.conv(x, "head.mix", w, None, 1, 1), "hswish", "head.mix")
    x = bld.g.node("Flatten", [x], "flatten", axis=1)
    w = bld.param("classifier.weight", (plan.num_classes, plan.last_channel))
    b = bld.param("classifier.bias", (plan.num_classes,))
    bld.g.node(
        "Gemm",
        [x, bld.g.const_raw("classifier.weight", *w), bld.g.const_raw("classifier.bias", *b)],
        "classifier",
        output=OUTPUT_NAME,
        transB=1,
    )

    graph = proto.graph
    graph.name = space.name
    r = plan.resolution
    graph.input.append(
        helper.make_tensor_value_info(
            INPUT_NAME, TensorProto.FLOAT, [batch_size, plan.in_channels, r, r]
        )
    )
    graph.output.append(
        helper.make_tensor_value_info(
            OUTPUT_NAME, TensorProto.FLOAT, [batch_size, plan.num_classes]
        )
    )
    opsets = [helper.make_opsetid("", opset)]
    proto.ir_version = helper.find_min_ir_version_for(opsets)
    proto.opset_import.extend(opsets)
    proto.producer_name = "hilnas.ofa_mbv3_onnx"
    proto.producer_version = BUILDER_VERSION
    proto.doc_string = f"{space.format(code)} {cfg.key()} batch {batch_size}"
    return proto
