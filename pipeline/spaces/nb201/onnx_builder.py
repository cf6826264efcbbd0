"""Direct ONNX construction of the NB201 network, without tracing.

``build_onnx`` writes the ONNX graph of :class:`~hilnas.pipeline.spaces.nb201.torch_model.NB201Network`
node by node, so the file is the same network as ``space.build_model(arch, config)`` (same
deterministic weights) at a fraction of the cost of ``torch.onnx.export`` (milliseconds instead
of 0.2-1.5 s).

The builder walks the NB201 skeleton as ``NB201Network`` lays it out and asks a *parameter
source* for each layer's tensors, in the order the module constructs them:

- :class:`ModuleSource` reads them from a given module (``build_onnx(..., model=m)``), checking
  that every layer has the type and hyper-parameters the graph assumes (so a change to
  ``torch_model`` fails loudly instead of exporting a different network);
- :class:`ReplaySource` (the default) draws them without building the module: ``NB201Network``
  seeds torch's generator with 0 and initialises each ``Conv2d``/``Linear`` in construction
  order with torch's own ``reset_parameters`` rule; replaying the same draws on a private
  ``torch.Generator`` gives bit-identical tensors about 8x faster than constructing the
  ``nn.Module`` tree (whose Python overhead dominates a cold export). BN layers are at their
  defaults (ones, zeros, running mean 0, var 1). The tests check that both sources give
  byte-identical files for many architectures and skeletons.

What the graph contains, mirroring the module's ``forward``:

- every ``Conv2d -> BatchNorm2d (eval)`` pair becomes one ``Conv`` with the BN folded into its
  weight and bias (stem, the ``ReLUConvBN`` blocks of the cells and of the reductions), computed
  in float64 and stored as float32;
- a BN that does not follow a conv (the head's) stays a ``BatchNormalization`` node with the
  running statistics;
- edges are computed exactly where :func:`~hilnas.pipeline.spaces.nb201.space.live_edges` says, in edge
  order, summed with ``Add`` in the same order as ``DiscreteCell.forward``; ``skip_connect`` is a
  plain rename (no node);
- a cell whose output node has no live input returns zeros with its input's shape, as
  ``torch.zeros_like`` does; here one ``Mul`` by a scalar 0 keeps the data dependence so the rest
  of the network (stem, reductions, head) is still computed at run time, as in the module
  (``torch.onnx.export`` instead constant-folds such a network into a constant).

Input ``"input"`` has the static shape ``(batch_size, in_channels, input_size, input_size)``;
output ``"logits"`` is ``(batch_size, num_classes)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from hilnas.devices.errors import InvalidInputError
from hilnas.pipeline.spaces.base import ModelConfig
from hilnas.pipeline.spaces.nb201.space import EDGES, OPS, check_config, live_edges
from hilnas.pipeline.spaces.onnx_graph import GraphWriter as _Graph

if TYPE_CHECKING:  # pragma: no cover
    import onnx
    from hilnas.pipeline.spaces.base import SearchSpace

#: Bump when the graph this module writes changes (it is part of provenance).
BUILDER_VERSION = "1"
#: Lowest opset whose operator versions carry every attribute used here.
MIN_OPSET = 11
#: The seed ``NB201Network`` initialises its weights with (``space.build_model`` uses it).
WEIGHT_SEED = 0
BN_EPS = 1e-5

INPUT_NAME = "input"
OUTPUT_NAME = "logits"

#: (kernel, stride, padding, count_include_pad) of the pools, as torch_model builds them.
_CELL_POOL = (3, 1, 1, False)
_SHORTCUT_POOL = (2, 2, 0, True)


# ----- parameter sources ---------------------------------------------------------------------

#: (gamma, beta, running_mean, running_var, eps) of one BatchNorm2d, float32 arrays.
BNParams = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]


class ReplaySource:
    """The weights ``NB201Network(arch, config, seed)`` gets, drawn without building it.

    Calls must come in the module's construction order (the builder guarantees it).
    """

    def __init__(self, seed: int = WEIGHT_SEED) -> None:
        import torch
        from torch.nn import init

        self._torch = torch
        self._init = init
        self._gen = torch.Generator().manual_seed(seed)

    def conv(self, path: str, c_in: int, c_out: int, k: int, stride: int) -> np.ndarray:
        # Conv2d.reset_parameters: kaiming_uniform_(weight, a=sqrt(5)); bias=False: nothing else
        w = self._torch.empty(c_out, c_in, k, k)
        self._init.kaiming_uniform_(w, a=math.sqrt(5), generator=self._gen)
        return w.numpy()

    def bn(self, path: str, c: int) -> BNParams:
        ones, zeros = np.ones(c, np.float32), np.zeros(c, np.float32)
        return ones, zeros, zeros, ones, BN_EPS

    def linear(self, path: str, c_in: int, c_out: int) -> tuple[np.ndarray, np.ndarray]:
        # Linear.reset_parameters: kaiming_uniform_(weight, a=sqrt(5)), bias U(+-1/sqrt(fan_in))
        w = self._torch.empty(c_out, c_in)
        self._init.kaiming_uniform_(w, a=math.sqrt(5), generator=self._gen)
        b = self._torch.empty(c_out)
        bound = 1 / math.sqrt(c_in)
        self._init.uniform_(b, -bound, bound, generator=self._gen)
        return w.numpy(), b.numpy()

    def expect(self, path: str, kind: str, **attrs: Any) -> None:
        """Structure checks only apply to a real module."""

    def cell(self, path: str, code: tuple[int, ...]) -> None:
        pass

    def finish(self, num_layers: int) -> None:
        pass


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy()


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else tuple(int(x) for x in v)  # type: ignore[return-value]


class ModuleSource:
    """Tensors read from an ``NB201Network`` (eval mode), with its structure checked."""

    def __init__(self, model: Any) -> None:
        if model.training:
            raise ValueError("the module is in training mode; call .eval() before exporting it")
        self.model = model

    def _get(self, path: str, kind: str):
        try:
            module = self.model.get_submodule(path)
        except AttributeError:
            raise ValueError(f"the module has no {path!r} ({kind} expected)") from None
        if type(module).__name__ != kind:
            raise ValueError(f"{path}: expected {kind}, found {type(module).__name__}")
        return module

    def expect(self, path: str, kind: str, **attrs: Any) -> None:
        module = self._get(path, kind)
        for name, want in attrs.items():
            got = getattr(module, name)
            if name in ("kernel_size", "stride", "padding", "output_size"):
                got = _pair(got)
                want = _pair(want)
            if got != want:
                raise ValueError(f"{path}: {name} is {got!r}, the NB201 graph needs {want!r}")

    def conv(self, path: str, c_in: int, c_out: int, k: int, stride: int) -> np.ndarray:
        conv = self._get(path, "Conv2d")
        want = {
            "in_channels": c_in,
            "out_channels": c_out,
            "kernel_size": (k, k),
            "stride": (stride, stride),
            "padding": (k // 2, k // 2),
            "dilation": (1, 1),
            "groups": 1,
            "padding_mode": "zeros",
        }
        for name, value in want.items():
            got = getattr(conv, name)
            if got != value:
                raise ValueError(f"{path}: {name} is {got!r}, the NB201 graph needs {value!r}")
        if conv.bias is not None:
            raise ValueError(f"{path}: the NB201 convs have no bias, this one has")
        return _np(conv.weight)

    def bn(self, path: str, c: int) -> BNParams:
        bn = self._get(path, "BatchNorm2d")
        if bn.num_features != c:
            raise ValueError(f"{path}: {bn.num_features} features, the NB201 graph needs {c}")
        if bn.running_mean is None or bn.running_var is None:
            raise ValueError(f"{path}: tracks no running statistics; cannot export it in eval mode")
        gamma = _np(bn.weight) if bn.weight is not None else np.ones(c, np.float32)
        beta = _np(bn.bias) if bn.bias is not None else np.zeros(c, np.float32)
        return gamma, beta, _np(bn.running_mean), _np(bn.running_var), float(bn.eps)

    def linear(self, path: str, c_in: int, c_out: int) -> tuple[np.ndarray, np.ndarray]:
        fc = self._get(path, "Linear")
        if (fc.in_features, fc.out_features) != (c_in, c_out) or fc.bias is None:
            raise ValueError(f"{path}: expected Linear({c_in}, {c_out}) with bias, found {fc!r}")
        return _np(fc.weight), _np(fc.bias)

    def cell(self, path: str, code: tuple[int, ...]) -> None:
        cell = self._get(path, "DiscreteCell")
        used = live_edges(code)
        if tuple(cell.arch) != code or tuple(cell.used) != used:
            raise ValueError(
                f"{path}: the module's cell {tuple(cell.arch)} is not the architecture {code}"
            )
        built = set(cell.edges.keys())
        if built != {str(e) for e, on in enumerate(used) if on}:
            raise ValueError(
                f"{path}: the module builds edges {sorted(built)}, expected the live ones"
            )

    def finish(self, num_layers: int) -> None:
        if len(self.model.cells) != num_layers:
            raise ValueError(
                f"the module has {len(self.model.cells)} cell/reduction layers, the config needs "
                f"{num_layers}"
            )


# ----- the graph -----------------------------------------------------------------------------


def _conv_bn(
    g: _Graph,
    src,
    x: str,
    path: str,
    conv: str,
    bn: str | None,
    c_in: int,
    c_out: int,
    k: int,
    stride: int,
) -> str:
    """One Conv of ``bn(conv(x))`` with the BN folded (or a plain conv when ``bn`` is None)."""
    w = src.conv(f"{path}{conv}", c_in, c_out, k, stride)
    inputs = [x, ""]
    if bn is not None:
        gamma, beta, mean, var, eps = src.bn(f"{path}{bn}", c_out)
        scale = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps)
        w = w.astype(np.float64) * scale[:, None, None, None]
        inputs.append(g.const(f"{path}.bias", beta - mean.astype(np.float64) * scale))
    inputs[1] = g.const(f"{path}.weight", w)
    pad = k // 2
    return g.node(
        "Conv",
        inputs,
        path,
        kernel_shape=[k, k],
        strides=[stride, stride],
        pads=[pad] * 4,
        dilations=[1, 1],
        group=1,
    )


def _relu_conv_bn(
    g: _Graph, src, x: str, path: str, c_in: int, c_out: int, k: int, stride: int
) -> str:
    """``ReLUConvBN``: children 0 (ReLU), 1 (Conv2d), 2 (BatchNorm2d)."""
    src.expect(f"{path}.0", "ReLU")
    x = g.node("Relu", [x], f"{path}.relu")
    return _conv_bn(g, src, x, path, ".1", ".2", c_in, c_out, k, stride)


def _avg_pool(g: _Graph, src, x: str, path: str, spec: tuple[int, int, int, bool]) -> str:
    k, stride, pad, include = spec
    src.expect(
        path, "AvgPool2d", kernel_size=k, stride=stride, padding=pad,
        count_include_pad=include, ceil_mode=False,
    )  # fmt: skip
    return g.node(
        "AveragePool",
        [x],
        path,
        kernel_shape=[k, k],
        strides=[stride, stride],
        pads=[pad] * 4,
        count_include_pad=int(include),
        ceil_mode=0,
    )


def _cell(g: _Graph, src, code: tuple[int, ...], x: str, path: str, c: int) -> str:
    src.cell(path, code)
    used = live_edges(code)
    nodes: list[str | None] = [x, None, None, None]
    for e, (dst, s) in enumerate(EDGES):
        if not used[e]:
            continue
        inp = nodes[s]
        assert inp is not None  # live_edges only marks edges from live nodes
        op, where = OPS[code[e]], f"{path}.edges.{e}"
        if op == "skip_connect":
            src.expect(where, "Identity")
            out = inp
        elif op in ("nor_conv_1x1", "nor_conv_3x3"):
            out = _relu_conv_bn(g, src, inp, where, c, c, 1 if op == "nor_conv_1x1" else 3, 1)
        elif op == "avg_pool_3x3":
            out = _avg_pool(g, src, inp, where, _CELL_POOL)
        else:  # pragma: no cover - "none" edges are never live
            raise ValueError(f"{where}: no ONNX translation for {op}")
        prev = nodes[dst]
        nodes[dst] = out if prev is None else g.node("Add", [prev, out], f"{path}.node{dst}.add{e}")
    if nodes[3] is None:  # no live path to the output: torch.zeros_like(x)
        return g.node("Mul", [x, g.zero()], f"{path}.zeros")
    return nodes[3]


def _reduction(g: _Graph, src, x: str, path: str, c_in: int, c_out: int, kind: str) -> str:
    """``ResidualReduction``: shortcut(x) + conv_b(conv_a(x)), or ``PooledReduction``:
    shortcut(x); parameters in construction order."""
    if kind == "pool":
        src.expect(path, "PooledReduction")
        pooled = _avg_pool(g, src, x, f"{path}.shortcut.0", _SHORTCUT_POOL)
        return _conv_bn(g, src, pooled, f"{path}.shortcut", ".1", None, c_in, c_out, 1, 1)
    src.expect(path, "ResidualReduction")
    a = _relu_conv_bn(g, src, x, f"{path}.conv_a", c_in, c_out, 3, 2)
    b = _relu_conv_bn(g, src, a, f"{path}.conv_b", c_out, c_out, 3, 1)
    pooled = _avg_pool(g, src, x, f"{path}.shortcut.0", _SHORTCUT_POOL)
    short = _conv_bn(g, src, pooled, f"{path}.shortcut", ".1", None, c_in, c_out, 1, 1)
    return g.node("Add", [short, b], f"{path}.add")


def build_onnx(
    space: SearchSpace,
    arch: Sequence[int],
    config: ModelConfig | None,
    batch_size: int,
    opset: int,
    model: Any | None = None,
) -> onnx.ModelProto:
    """The ONNX model of ``space.build_model(arch, config)``, or of ``model`` with its weights.

    Without ``model`` the weights are replayed (:class:`ReplaySource`), bit-identical to those of
    ``space.build_model(arch, config)``. ``model`` lets a caller export a module whose weights or
    BN statistics it changed; it must be an ``NB201Network`` of ``arch`` and ``config`` in eval
    mode. Raises ``ValueError`` for an unsupported opset, batch size or skeleton, or a module
    that does not match.
    """
    import onnx
    from onnx import TensorProto, helper

    code = space.validate(arch)
    cfg = config or space.default_model_config()
    check_config(cfg)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise InvalidInputError(
            f"batch_size must be a positive integer, got {batch_size!r}; pass e.g. 1"
        )
    max_opset = onnx.defs.onnx_opset_version()
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= max_opset:
        raise InvalidInputError(
            f"opset must be an integer in {MIN_OPSET}..{max_opset} (onnx {onnx.__version__}), "
            f"got {opset!r}; pass one in that range"
        )
    src = ReplaySource() if model is None else ModuleSource(model)

    proto = onnx.ModelProto()
    g = _Graph(proto.graph)
    c = cfg.channels
    x = _conv_bn(g, src, INPUT_NAME, "stem", ".0", ".1", cfg.in_channels, c, 3, 1)
    layer = 0
    for stage in range(3):
        if stage:
            x = _reduction(g, src, x, f"cells.{layer}", c, 2 * c, cfg.reduction)
            c, layer = 2 * c, layer + 1
        for _ in range(cfg.cells_per_stage):
            x = _cell(g, src, code, x, f"cells.{layer}", c)
            layer += 1
    src.finish(layer)

    gamma, beta, mean, var, eps = src.bn("head.0", c)
    x = g.node(
        "BatchNormalization",
        [
            x,
            g.const("head.bn.scale", gamma),
            g.const("head.bn.bias", beta),
            g.const("head.bn.mean", mean),
            g.const("head.bn.var", var),
        ],
        "head.bn",
        epsilon=eps,
    )
    src.expect("head.1", "ReLU")
    x = g.node("Relu", [x], "head.relu")
    src.expect("pool", "AdaptiveAvgPool2d", output_size=1)
    x = g.node("GlobalAveragePool", [x], "pool")
    x = g.node("Flatten", [x], "flatten", axis=1)
    w, b = src.linear("classifier", c, cfg.num_classes)
    g.node(
        "Gemm",
        [x, g.const("classifier.weight", w), g.const("classifier.bias", b)],
        "classifier",
        output=OUTPUT_NAME,
        transB=1,
    )

    graph = proto.graph
    graph.name = space.name
    graph.input.append(
        helper.make_tensor_value_info(
            INPUT_NAME, TensorProto.FLOAT, list(cfg.input_shape(batch_size))
        )
    )
    graph.output.append(
        helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [batch_size, cfg.num_classes])
    )
    opsets = [helper.make_opsetid("", opset)]
    proto.ir_version = helper.find_min_ir_version_for(opsets)
    proto.opset_import.extend(opsets)
    proto.producer_name = "hilnas.nb201_onnx"
    proto.producer_version = BUILDER_VERSION
    proto.doc_string = f"{space.format(code)} {cfg.key()} batch {batch_size}"
    return proto
