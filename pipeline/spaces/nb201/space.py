"""NAS-Bench-201: a cell of 4 nodes, 6 edges, 5 operations per edge (15,625 architectures).

String format (official): ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``; the six edges, in order, are
(1<-0), (2<-0), (2<-1), (3<-0), (3<-1), (3<-2). Indices follow the official benchmark order,
taken from the shipped reference data.

The network is the standard NB201 skeleton: a 3x3 conv stem, three stages of N cells joined by
two residual reduction blocks that double the channels and halve the resolution, then BN-ReLU,
global average pooling and a linear classifier. The discrete network skips ``none`` edges and
any computation that only feeds from nodes with no live input (what a deployment compiler does
for a known-zero tensor).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

import numpy as np
from hilnas.devices.errors import InvalidInputError
from hilnas.pipeline.spaces.base import Architecture, ArchitectureError, ModelConfig, SearchSpace

OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: (target node, source node) of each of the six edges, in string order.
EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))

_OFA_RE = re.compile(r"^r\d+\|d")
_NODE_RE = re.compile(r"^\|(?:[a-z0-9_]+~\d\|)+$")
_EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


def _looks_like_ofa(text: str) -> bool:
    return bool(_OFA_RE.match(text))


def live_edges(arch: Sequence[int]) -> tuple[bool, ...]:
    """Which edges carry computation in the pruned discrete network.

    A node is live if it is the input or has a live incoming non-``none`` edge; an edge is
    computed if its op is not ``none`` and its source is live.
    """
    live = [True, False, False, False]
    used = []
    for (dst, src), op in zip(EDGES, arch, strict=False):
        on = op != 0 and live[src]
        used.append(on)
        if on:
            live[dst] = True
    return tuple(used)


#: Blocks between the stages: NB201's residual block, or its shortcut branch alone. The second
#: leaves the cells most of the network's capacity, for small inputs where the residual
#: blocks alone already solve the task (8x8 digits: see pipeline/datasets.py).
REDUCTIONS: tuple[str, ...] = ("residual", "pool")


def check_config(config: ModelConfig) -> None:
    """Raise ``InvalidInputError`` (a ``ValueError``) for a skeleton the NB201 network cannot run.

    The two residual reductions add a stride-2 3x3 conv (output ``ceil(s/2)``) to a 2x2 average
    pool (output ``floor(s/2)``): both agree only on even sizes, so ``input_size`` must be a
    multiple of 4 (the torch module fails in ``forward`` otherwise). ``reduction`` is
    ``residual`` (the benchmark's block) or ``pool`` (its shortcut alone: 2x2 average pooling
    and a 1x1 convolution).
    """
    if not isinstance(config, ModelConfig):
        raise InvalidInputError(
            f"nb201 needs a ModelConfig, got {type(config).__name__}; build it with "
            "get_space('nb201').make_config(...)"
        )
    if config.reduction not in REDUCTIONS:
        raise InvalidInputError(
            f"nb201: unknown reduction {config.reduction!r}; use one of {', '.join(REDUCTIONS)}"
        )
    if config.input_size % 4:
        raise InvalidInputError(
            f"nb201: input_size {config.input_size} cannot pass the two stride-2 residual "
            "reductions (each needs an even size); use a multiple of 4, e.g. 32"
        )


class NB201(SearchSpace):
    """The NAS-Bench-201 cell search space."""

    name = "nb201"
    enumerable = True
    example = _EXAMPLE

    @property
    def decisions(self) -> tuple[str, ...]:
        return tuple(f"edge_{dst}<-{src}" for dst, src in EDGES)

    @property
    def options(self) -> tuple[tuple[str, ...], ...]:
        return (OPS,) * len(EDGES)

    def check_config(self, config: ModelConfig) -> None:
        check_config(config)

    def small_model_config(self) -> ModelConfig:
        return ModelConfig(channels=8, cells_per_stage=1)

    # ----- strings ------------------------------------------------------------------
    def parse(self, text: str) -> Architecture:
        if not isinstance(text, str):
            raise ArchitectureError(
                f"nb201: expected an architecture string, got {type(text).__name__}"
            )
        s = text.strip()
        if _looks_like_ofa(s):
            raise ArchitectureError(
                f"nb201: {text!r} is an OFA MobileNetV3 string (r<res>|d...|k...|e...), not an "
                f"NB201 cell; use --space ofa_mbv3 for it, or give an NB201 string like {_EXAMPLE}"
            )
        nodes = s.split("+")
        if len(nodes) != 3 or not all(_NODE_RE.match(n) for n in nodes):
            raise ArchitectureError(
                f"nb201: malformed architecture string {text!r}; expected three '+'-joined nodes "
                f"like {_EXAMPLE}"
            )
        code: list[int] = []
        for target, node in enumerate(nodes, start=1):
            parts = node.strip("|").split("|")
            if len(parts) != target:
                raise ArchitectureError(
                    f"nb201: node {target} of {text!r} has {len(parts)} inputs, expected {target}"
                )
            for src, part in enumerate(parts):
                op, _, idx = part.partition("~")
                if op not in OPS:
                    raise ArchitectureError(
                        f"nb201: unknown operation {op!r} in {text!r}; valid: {', '.join(OPS)}"
                    )
                if int(idx) != src:
                    raise ArchitectureError(
                        f"nb201: node {target} input {src} is written '~{idx}' in {text!r}; "
                        f"inputs must be numbered 0..{target - 1} in order"
                    )
                code.append(OPS.index(op))
        return tuple(code)

    def format(self, arch: Sequence[int]) -> str:
        c = self.validate(arch)
        ops = [OPS[i] for i in c]
        return f"|{ops[0]}~0|+|{ops[1]}~0|{ops[2]}~1|+|{ops[3]}~0|{ops[4]}~1|{ops[5]}~2|"

    # ----- official index order --------------------------------------------------------
    @functools.cached_property
    def _order(self) -> tuple[np.ndarray, np.ndarray]:
        from hilnas.pipeline.refdata import load_nb201

        codes = load_nb201().arch_codes.astype(np.int64)
        flat = codes @ (5 ** np.arange(5, -1, -1))
        inverse = np.empty(len(flat), dtype=np.int64)
        inverse[flat] = np.arange(len(flat))
        return codes, inverse

    def index(self, arch: Sequence[int]) -> int:
        c = self.validate(arch)
        flat = 0
        for v in c:
            flat = flat * 5 + v
        return int(self._order[1][flat])

    def from_index(self, index: int) -> Architecture:
        n = self.size()
        if not 0 <= int(index) < n:
            raise IndexError(f"nb201 index must be in 0..{n - 1}, got {index}")
        return tuple(int(v) for v in self._order[0][int(index)])

    def all_architectures(self) -> list[Architecture]:
        return [tuple(int(v) for v in row) for row in self._order[0]]

    def reference_architectures(self) -> list[Architecture]:
        from hilnas.pipeline.refdata import load_nb201

        return [self.from_index(i) for i in load_nb201().reference_indices]

    # ----- models ---------------------------------------------------------------------
    def build_model(self, arch: Sequence[int], config: ModelConfig | None = None):
        from hilnas.pipeline.spaces.nb201.torch_model import NB201Network

        config = config or self.default_model_config()
        check_config(config)
        return NB201Network(self.validate(arch), config).eval()

    def build_onnx(self, arch: Sequence[int], config: ModelConfig, batch_size: int, opset: int):
        from hilnas.pipeline.spaces.nb201.onnx_builder import build_onnx

        return build_onnx(self, self.validate(arch), config, batch_size, opset)

    def flops(self, arch: Sequence[int], config: ModelConfig | None = None) -> float:
        """Multiply-accumulates (millions) of the pruned network for one input."""
        cfg = config or self.default_model_config()
        code = self.validate(arch)
        used = live_edges(code)
        total = 0.0
        size, ch = cfg.input_size, cfg.channels
        total += size * size * ch * cfg.in_channels * 9  # stem
        for stage in range(3):
            if stage:
                c_in, ch, size_in = ch, ch * 2, size
                size = (size_in + 1) // 2
                if cfg.reduction == "residual":
                    total += size * size * ch * c_in * 9 + size * size * ch * ch * 9  # conv a, b
                total += size * size * ch * c_in  # 1x1 shortcut
            per_cell = 0.0
            for op, on in zip(code, used, strict=False):
                if on and op == 2:
                    per_cell += size * size * ch * ch
                elif on and op == 3:
                    per_cell += size * size * ch * ch * 9
            total += per_cell * cfg.cells_per_stage
        total += ch * cfg.num_classes
        return total / 1e6

    # ----- cost features and supernet ---------------------------------------------------
    @property
    def cost_feature_names(self) -> tuple[str, ...]:
        return ("macs_m", "params_m")

    def cost_features(self, arch: Sequence[int], config: ModelConfig | None = None) -> np.ndarray:
        """MACs (millions, one input) and trainable parameters (millions) of the pruned network."""
        cfg = config or self.default_model_config()
        check_config(cfg)
        return np.array([self.flops(arch, cfg), self.params(arch, cfg) / 1e6], dtype=np.float32)

    def params(self, arch: Sequence[int], config: ModelConfig | None = None) -> int:
        """Trainable parameters of ``build_model(arch, config)`` (convs, BN affine, classifier)."""
        cfg = config or self.default_model_config()
        used = live_edges(self.validate(arch))
        ch = cfg.channels
        total = cfg.in_channels * ch * 9 + 2 * ch  # stem conv + BN
        for stage in range(3):
            if stage:
                c_in, ch = ch, ch * 2
                if cfg.reduction == "residual":
                    total += 9 * c_in * ch + 2 * ch + 9 * ch * ch + 2 * ch  # conv a, conv b
                total += c_in * ch  # 1x1 shortcut
            per_cell = 0
            for op, on in zip(self.validate(arch), used, strict=False):
                if on and op == 2:
                    per_cell += ch * ch + 2 * ch
                elif on and op == 3:
                    per_cell += 9 * ch * ch + 2 * ch
            total += per_cell * cfg.cells_per_stage
        return total + 2 * ch + ch * cfg.num_classes + cfg.num_classes  # head BN, classifier

    @property
    def supports_supernet(self) -> bool:
        return True

    def build_supernet(self, config: ModelConfig | None = None, seed: int = 0):
        """:class:`~hilnas.pipeline.spaces.nb201.supernet.NB201Supernet`; ``forward(x, one_hot (6, 5))``."""
        from hilnas.pipeline.spaces.nb201.supernet import NB201Supernet

        cfg = config or self.default_model_config()
        check_config(cfg)
        return NB201Supernet(cfg, seed=seed)
