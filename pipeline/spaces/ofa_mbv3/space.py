"""The OFA MobileNetV3 search space (``ofa_mbv3``): decisions, strings, geometry, costs.

The space of Once-for-All's MobileNetV3 (``ofa_mbv3_d234_e346_k357``), as HELP measured it
(../shared/data/ofa/README.md): a fixed stem (3x3 conv stride 2, hard-swish, then one 3x3
depthwise MBConv of expand ratio 1 with a residual), 5 elastic stages of 2, 3 or 4 MBConv
layers, and a fixed head (1x1 conv to the final expand width, hard-swish, global pooling, 1x1
feature-mix conv, hard-swish, classifier). Per active layer a depthwise kernel in {3, 5, 7} and
an expand ratio in {3, 4, 6}; the input resolution, 128..224 in steps of 4, is a decision too.
Stage strides 2, 2, 2, 1, 2 (first layer of a stage); squeeze-excite in stages 2, 4 and 5;
ReLU in the stem's MBConv and stages 1-2, hard-swish elsewhere; output widths 32, 48, 96, 136,
192 at the default width multiplier 1.2 (OFA's ``make_divisible(base * w, 8)`` rule on the
MobileNetV3 base widths 16, 16, 24, 40, 80, 112, 160, 960, 1280).

Decisions, in encoding order (46): ``resolution`` (25 options), ``depth_1..5`` (3 each),
``kernel_S_L`` and ``expand_S_L`` for stage S = 1..5 and layer L = 1..4 (3 each). Layer L of
stage S is *active* iff L <= depth_S; inactive kernels and expands do not change the network,
so the canonical code sets them to option 0 and the canonical string omits them:

    ``r<resolution>|d<d1,...,d5>|k<kernel of each active layer>|e<expand of each active layer>``

active layers listed stage by stage, layer by layer, e.g.
``r204|d2,2,2,2,3|k7,5,7,7,5,7,5,3,5,3,5|e6,4,6,3,3,6,3,6,6,4,3``. This is the string of
../shared/data/ofa/archs.csv, so HELP's 9 GPU latency tables join by string.

:func:`plan` turns an architecture and a config into the list of layers with their channels,
strides and activations: the torch module, the ONNX builder and the cost counts all read it,
so they cannot disagree about the network.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from hilnas.devices.errors import check_number
from hilnas.pipeline.spaces.base import (
    Architecture,
    ArchitectureError,
    SearchSpace,
    SpaceConfig,
    TensorSpec,
    Workload,
)

NUM_STAGES = 5
MAX_DEPTH = 4
DEPTHS: tuple[int, ...] = (2, 3, 4)
KERNELS: tuple[int, ...] = (3, 5, 7)
EXPANDS: tuple[int, ...] = (3, 4, 6)
RESOLUTIONS: tuple[int, ...] = tuple(range(128, 225, 4))

#: MobileNetV3 base widths: stem conv, stem MBConv, stages 1-5, final expand, feature mix.
BASE_WIDTHS: tuple[int, ...] = (16, 16, 24, 40, 80, 112, 160, 960, 1280)
STRIDES: tuple[int, ...] = (2, 2, 2, 1, 2)
SQUEEZE_EXCITE: tuple[bool, ...] = (False, True, False, True, True)
ACTIVATIONS: tuple[str, ...] = ("relu", "relu", "hswish", "hswish", "hswish")
SE_REDUCTION = 4
CHANNEL_DIVISOR = 8
BN_EPS = 1e-5

EXAMPLE = "r204|d2,2,2,2,3|k7,5,7,7,5,7,5,3,5,3,5|e6,4,6,3,3,6,3,6,6,4,3"
_STRING_RE = re.compile(r"^r(\d+)\|d(\d+(?:,\d+)*)\|k(\d+(?:,\d+)*)\|e(\d+(?:,\d+)*)$")

# positions of the decisions in a code
RES_POS = 0
DEPTH_POS = 1
KERNEL_POS = DEPTH_POS + NUM_STAGES
EXPAND_POS = KERNEL_POS + NUM_STAGES * MAX_DEPTH
NUM_DECISIONS = EXPAND_POS + NUM_STAGES * MAX_DEPTH


def make_divisible(value: float, divisor: int = CHANNEL_DIVISOR) -> int:
    """Round a channel count to a multiple of ``divisor``, never more than 10 % down (MobileNet)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


@dataclass(frozen=True, slots=True)
class OFAConfig(SpaceConfig):
    """The skeleton of an OFA MobileNetV3 network: width multiplier, input channels, classes.

    ``width_mult`` scales every width of the MobileNetV3 base (1.2, HELP's setting, gives the
    stage widths 32, 48, 96, 136, 192); a smaller value makes a CPU-trainable supernet. The
    input resolution is not here: it is a decision of the architecture.
    """

    width_mult: float = 1.2
    num_classes: int = 1000
    in_channels: int = 3

    def __post_init__(self) -> None:
        check_number("OFAConfig.width_mult", self.width_mult, low=0.1, high=4.0, integer=False)
        check_number("OFAConfig.num_classes", self.num_classes, low=1, high=100_000)
        check_number("OFAConfig.in_channels", self.in_channels, low=1, high=64)

    def key(self) -> str:
        return f"w{self.width_mult:g}-in{self.in_channels}-cls{self.num_classes}"


class Decoded(NamedTuple):
    """An OFA architecture in its own terms (values, not option indices)."""

    resolution: int
    depths: tuple[int, ...]
    #: kernel and expand of each active layer, per stage
    kernels: tuple[tuple[int, ...], ...]
    expands: tuple[tuple[int, ...], ...]


@dataclass(frozen=True, slots=True)
class MBConv:
    """One inverted-residual layer: [1x1 expand, act], kxk depthwise, act, [SE], 1x1 project."""

    path: str
    c_in: int
    c_mid: int
    c_out: int
    kernel: int
    stride: int
    act: str
    #: squeeze channels of the squeeze-excite, 0 when the layer has none
    squeeze: int
    #: whether a 1x1 expand conv exists (expand ratio > 1)
    expand: bool

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.c_in == self.c_out


@dataclass(frozen=True, slots=True)
class Plan:
    """Every layer of one network, in forward order."""

    resolution: int
    in_channels: int
    stem: int
    blocks: tuple[MBConv, ...]
    final_expand: int
    last_channel: int
    num_classes: int


def stage_widths(config: OFAConfig) -> tuple[int, ...]:
    """Output widths of stem conv, stem MBConv, stages 1-5, final expand and feature mix."""
    return tuple(make_divisible(w * config.width_mult) for w in BASE_WIDTHS)


def plan_decoded(d: Decoded, config: OFAConfig) -> Plan:
    widths = stage_widths(config)
    stem, first = widths[0], widths[1]
    blocks = [MBConv("first", stem, stem, first, 3, 1, "relu", 0, False)]
    c_in = first
    for s in range(NUM_STAGES):
        c_out = widths[2 + s]
        for layer in range(d.depths[s]):
            mid = make_divisible(round(c_in * d.expands[s][layer]))
            squeeze = make_divisible(mid // SE_REDUCTION) if SQUEEZE_EXCITE[s] else 0
            stride = STRIDES[s] if layer == 0 else 1
            k = d.kernels[s][layer]
            blocks.append(
                MBConv(
                    f"stages.{s}.{layer}",
                    c_in,
                    mid,
                    c_out,
                    k,
                    stride,
                    ACTIVATIONS[s],
                    squeeze,
                    True,
                )
            )
            c_in = c_out
    return Plan(
        d.resolution,
        config.in_channels,
        stem,
        tuple(blocks),
        widths[7],
        widths[8],
        config.num_classes,
    )


def _conv_out(size: int, kernel: int, stride: int) -> int:
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


def layer_costs(p: Plan) -> tuple[list[tuple[str, int, int]], int]:
    """``(part, MACs, params)`` per part (stem, stage1..5, head) and the final spatial size.

    MACs count the multiply-accumulates of convolutions and the classifier for one input;
    params count every trainable tensor of the torch module (conv and linear weights and
    biases, BN scale and shift).
    """
    parts: list[tuple[str, int, int]] = []
    size = _conv_out(p.resolution, 3, 2)
    macs = size * size * p.stem * p.in_channels * 9
    params = p.in_channels * p.stem * 9 + 2 * p.stem
    current = "stem"
    for b in p.blocks:
        part = "stem" if b.path == "first" else f"stage{int(b.path.split('.')[1]) + 1}"
        if part != current:
            parts.append((current, macs, params))
            current, macs, params = part, 0, 0
        if b.expand:
            macs += size * size * b.c_in * b.c_mid
            params += b.c_in * b.c_mid + 2 * b.c_mid
        size = _conv_out(size, b.kernel, b.stride)
        macs += size * size * b.c_mid * b.kernel * b.kernel
        params += b.c_mid * b.kernel * b.kernel + 2 * b.c_mid
        if b.squeeze:
            macs += 2 * b.c_mid * b.squeeze
            params += 2 * b.c_mid * b.squeeze + b.squeeze + b.c_mid
        macs += size * size * b.c_mid * b.c_out
        params += b.c_mid * b.c_out + 2 * b.c_out
    parts.append((current, macs, params))
    c_last = p.blocks[-1].c_out
    macs = size * size * c_last * p.final_expand + p.final_expand * p.last_channel
    macs += p.last_channel * p.num_classes
    params = c_last * p.final_expand + 2 * p.final_expand + p.final_expand * p.last_channel
    params += p.last_channel * p.num_classes + p.num_classes
    parts.append(("head", macs, params))
    return parts, size


class OFAMobileNetV3(SearchSpace):
    """Once-for-All MobileNetV3 (``ofa_mbv3_d234_e346_k357``), width 1.2 by default."""

    name = "ofa_mbv3"
    enumerable = False
    conditional = True
    example = EXAMPLE

    # ----- structure -------------------------------------------------------------------
    @property
    def decisions(self) -> tuple[str, ...]:
        names = ["resolution"] + [f"depth_{s + 1}" for s in range(NUM_STAGES)]
        for kind in ("kernel", "expand"):
            names += [
                f"{kind}_{s + 1}_{j + 1}" for s in range(NUM_STAGES) for j in range(MAX_DEPTH)
            ]
        return tuple(names)

    @property
    def options(self) -> tuple[tuple[str, ...], ...]:
        res = tuple(str(r) for r in RESOLUTIONS)
        per_layer = NUM_STAGES * MAX_DEPTH
        return (
            (res,)
            + (tuple(map(str, DEPTHS)),) * NUM_STAGES
            + (tuple(map(str, KERNELS)),) * per_layer
            + (tuple(map(str, EXPANDS)),) * per_layer
        )

    def size(self) -> int:
        per_stage = sum((len(KERNELS) * len(EXPANDS)) ** d for d in DEPTHS)
        return len(RESOLUTIONS) * per_stage**NUM_STAGES

    def active_mask(self, arch: Sequence[int]) -> np.ndarray:
        code = self.validate(arch)
        mask = np.ones(NUM_DECISIONS, dtype=bool)
        for s in range(NUM_STAGES):
            depth = DEPTHS[code[DEPTH_POS + s]]
            for layer in range(depth, MAX_DEPTH):
                mask[KERNEL_POS + s * MAX_DEPTH + layer] = False
                mask[EXPAND_POS + s * MAX_DEPTH + layer] = False
        return mask

    # ----- values <-> codes ---------------------------------------------------------------
    def decode(self, arch: Sequence[int]) -> Decoded:
        """The resolution, depths, and kernels and expands of the active layers of ``arch``."""
        code = self.validate(arch)
        depths = tuple(DEPTHS[code[DEPTH_POS + s]] for s in range(NUM_STAGES))
        ks = tuple(
            tuple(KERNELS[code[KERNEL_POS + s * MAX_DEPTH + j]] for j in range(depths[s]))
            for s in range(NUM_STAGES)
        )
        es = tuple(
            tuple(EXPANDS[code[EXPAND_POS + s * MAX_DEPTH + j]] for j in range(depths[s]))
            for s in range(NUM_STAGES)
        )
        return Decoded(RESOLUTIONS[code[RES_POS]], depths, ks, es)

    def encode(
        self,
        resolution: int,
        depths: Sequence[int],
        kernels: Sequence[int],
        expands: Sequence[int],
    ) -> Architecture:
        """Canonical code from values; ``kernels``/``expands`` list the active layers in order.

        Raises :class:`ArchitectureError` naming the value that is out of the space.
        """
        if resolution not in RESOLUTIONS:
            raise ArchitectureError(
                f"ofa_mbv3: resolution {resolution} is not in the space; use a multiple of 4 "
                f"from {RESOLUTIONS[0]} to {RESOLUTIONS[-1]}"
            )
        depths = tuple(depths)
        if len(depths) != NUM_STAGES:
            raise ArchitectureError(
                f"ofa_mbv3: {len(depths)} depths given, the space has {NUM_STAGES} stages; "
                "give one depth per stage, e.g. d2,2,2,2,3"
            )
        for s, d in enumerate(depths):
            if d not in DEPTHS:
                raise ArchitectureError(
                    f"ofa_mbv3: depth {d} of stage {s + 1} is out of range; each stage has "
                    f"{', '.join(map(str, DEPTHS))} layers"
                )
        active = sum(depths)
        for what, values, allowed in (("kernel", kernels, KERNELS), ("expand", expands, EXPANDS)):
            if len(values) != active:
                raise ArchitectureError(
                    f"ofa_mbv3: depths {','.join(map(str, depths))} have {active} active layers "
                    f"but {len(values)} {what}s are given; give one {what} per active layer"
                )
            bad = [v for v in values if v not in allowed]
            if bad:
                raise ArchitectureError(
                    f"ofa_mbv3: {what} {bad[0]} is not in the space; use one of "
                    f"{', '.join(map(str, allowed))}"
                )
        code = [0] * NUM_DECISIONS
        code[RES_POS] = RESOLUTIONS.index(resolution)
        i = 0
        for s, d in enumerate(depths):
            code[DEPTH_POS + s] = DEPTHS.index(d)
            for layer in range(d):
                code[KERNEL_POS + s * MAX_DEPTH + layer] = KERNELS.index(kernels[i])
                code[EXPAND_POS + s * MAX_DEPTH + layer] = EXPANDS.index(expands[i])
                i += 1
        return tuple(code)

    # ----- strings -------------------------------------------------------------------------
    def parse(self, text: str) -> Architecture:
        if not isinstance(text, str):
            raise ArchitectureError(
                f"ofa_mbv3: expected an architecture string, got {type(text).__name__}"
            )
        s = text.strip()
        if s.startswith("|") and "~" in s:
            raise ArchitectureError(
                f"ofa_mbv3: {text!r} is an NB201 cell string, not an OFA subnet; use --space "
                f"nb201 for it, or give an OFA string like {EXAMPLE}"
            )
        m = _STRING_RE.match(s)
        if m is None:
            raise ArchitectureError(
                f"ofa_mbv3: malformed architecture string {text!r}; expected "
                f"r<resolution>|d<5 depths>|k<kernels>|e<expands>, like {EXAMPLE}"
            )
        res, ds, ks, es = (tuple(int(v) for v in g.split(",")) for g in m.groups())
        return self.encode(res[0], ds, ks, es)

    def format(self, arch: Sequence[int]) -> str:
        d = self.decode(arch)
        ks = ",".join(str(k) for stage in d.kernels for k in stage)
        es = ",".join(str(e) for stage in d.expands for e in stage)
        return f"r{d.resolution}|d{','.join(map(str, d.depths))}|k{ks}|e{es}"

    def reference_architectures(self) -> list[Architecture]:
        """HELP's 10 hardware-embedding subnets (see :mod:`.reference`)."""
        from hilnas.pipeline.spaces.ofa_mbv3.reference import HELP_REFERENCE_ARCHS

        return [self.parse(s) for s in HELP_REFERENCE_ARCHS]

    # ----- configuration and workload ----------------------------------------------------------
    def default_model_config(self) -> OFAConfig:
        return OFAConfig()

    def plan(self, arch: Sequence[int], config: OFAConfig | None = None) -> Plan:
        """The layers of ``arch``'s network under ``config`` (default width 1.2)."""
        cfg = config or self.default_model_config()
        self.check_config(cfg)
        return plan_decoded(self.decode(arch), cfg)

    def workload(
        self, arch: Sequence[int], config: OFAConfig | None = None, batch_size: int = 1
    ) -> Workload:
        """One image input ``(batch, in_channels, r, r)`` at the architecture's resolution."""
        cfg = config or self.default_model_config()
        self.check_config(cfg)
        check_number("batch_size", batch_size, low=1, high=65_536)
        r = self.decode(arch).resolution
        return Workload(
            inputs=(TensorSpec("input", (batch_size, cfg.in_channels, r, r)),),
            outputs=(TensorSpec("logits", (batch_size, cfg.num_classes)),),
        )

    # ----- costs -----------------------------------------------------------------------------
    @property
    def cost_feature_names(self) -> tuple[str, ...]:
        stages = tuple(f"macs_stage{s + 1}_m" for s in range(NUM_STAGES))
        return (
            "macs_m",
            "params_m",
            "active_layers",
            "resolution",
            "macs_stem_m",
            *stages,
            "macs_head_m",
        )

    def cost_features(self, arch: Sequence[int], config: OFAConfig | None = None) -> np.ndarray:
        """MACs and parameters (millions) in total and MACs per part, of the full network."""
        p = self.plan(arch, config)
        parts, _ = layer_costs(p)
        macs = [m / 1e6 for _, m, _ in parts]
        params = sum(n for _, _, n in parts) / 1e6
        active = len(p.blocks) - 1
        return np.array([sum(macs), params, active, p.resolution, *macs], dtype=np.float32)

    def flops(self, arch: Sequence[int], config: OFAConfig | None = None) -> float:
        """Multiply-accumulates (millions) for one input at the architecture's resolution."""
        parts, _ = layer_costs(self.plan(arch, config))
        return sum(m for _, m, _ in parts) / 1e6

    def params(self, arch: Sequence[int], config: OFAConfig | None = None) -> int:
        """Trainable parameters of ``build_model(arch, config)``."""
        parts, _ = layer_costs(self.plan(arch, config))
        return sum(n for _, _, n in parts)

    # ----- models ----------------------------------------------------------------------------
    def build_model(self, arch: Sequence[int], config: OFAConfig | None = None):
        from hilnas.pipeline.spaces.ofa_mbv3.torch_model import OFANetwork

        return OFANetwork(self.plan(arch, config)).eval()

    def small_model_config(self) -> OFAConfig:
        """Width 0.5 and 10 classes: a subnet runs in milliseconds on a CPU."""
        return OFAConfig(width_mult=0.5, num_classes=10)

    @property
    def supports_supernet(self) -> bool:
        return True

    def build_supernet(self, config: OFAConfig | None = None, seed: int = 0):
        """:class:`~.supernet.OFASupernet` (elastic kernel, expand, depth); use a small
        ``width_mult`` on a CPU."""
        from hilnas.pipeline.spaces.ofa_mbv3.supernet import OFASupernet

        cfg = config or self.default_model_config()
        self.check_config(cfg)
        return OFASupernet(cfg, seed=seed)

    def build_onnx(self, arch: Sequence[int], config: OFAConfig, batch_size: int, opset: int):
        from hilnas.pipeline.spaces.ofa_mbv3.onnx_builder import build_onnx

        return build_onnx(self, arch, config, batch_size, opset)
