"""PyTorch modules for NAS-Bench-201: operations, the discrete cell and the whole network."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from hilnas.pipeline.spaces.base import ModelConfig
from hilnas.pipeline.spaces.nb201.space import EDGES, OPS, live_edges
from torch import nn


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, affine: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


def make_op(name: str, channels: int, affine: bool = True) -> nn.Module:
    """One NB201 operation on ``channels`` channels at stride 1 (``none`` is not built)."""
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1, affine=affine)
    if name == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3, affine=affine)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"no module for NB201 op {name!r}")


class ResidualReduction(nn.Module):
    """NB201's residual block between stages: stride 2, channels c_in -> c_out."""

    def __init__(self, c_in: int, c_out: int, affine: bool = True):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride=2, affine=affine)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, affine=affine)
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(2, stride=2), nn.Conv2d(c_in, c_out, 1, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


class PooledReduction(nn.Module):
    """The residual block's shortcut alone: 2x2 average pooling, 1x1 conv c_in -> c_out."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(2, stride=2), nn.Conv2d(c_in, c_out, 1, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x)


def make_reduction(kind: str, c_in: int, c_out: int) -> nn.Module:
    """The block between two stages (``ModelConfig.reduction``)."""
    if kind == "residual":
        return ResidualReduction(c_in, c_out)
    if kind == "pool":
        return PooledReduction(c_in, c_out)
    raise ValueError(f"nb201: unknown reduction {kind!r}; use residual or pool")


class DiscreteCell(nn.Module):
    """One cell with a fixed choice per edge; dead computation is pruned."""

    def __init__(self, arch: Sequence[int], channels: int):
        super().__init__()
        self.arch = tuple(arch)
        self.used = live_edges(self.arch)
        self.edges = nn.ModuleDict()
        for e, (_edge, op) in enumerate(zip(EDGES, self.arch, strict=False)):
            if self.used[e]:
                self.edges[str(e)] = make_op(OPS[op], channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes: list[torch.Tensor | None] = [x, None, None, None]
        for e, (dst, src) in enumerate(EDGES):
            if not self.used[e]:
                continue
            out = self.edges[str(e)](nodes[src])
            nodes[dst] = out if nodes[dst] is None else nodes[dst] + out
        return nodes[3] if nodes[3] is not None else torch.zeros_like(x)


class NB201Network(nn.Module):
    """The NB201 skeleton around a discrete cell (``config.channels`` = C, ``cells_per_stage`` = N)."""

    def __init__(self, arch: Sequence[int], config: ModelConfig, seed: int = 0):
        super().__init__()
        gen_state = torch.random.get_rng_state()
        torch.manual_seed(seed)  # deterministic weights: the same architecture, the same file
        try:
            c = config.channels
            self.stem = nn.Sequential(
                nn.Conv2d(config.in_channels, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
            )
            layers: list[nn.Module] = []
            for stage in range(3):
                if stage:
                    layers.append(make_reduction(config.reduction, c, c * 2))
                    c *= 2
                layers.extend(DiscreteCell(arch, c) for _ in range(config.cells_per_stage))
            self.cells = nn.Sequential(*layers)
            self.head = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU())
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Linear(c, config.num_classes)
        finally:
            torch.random.set_rng_state(gen_state)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.cells(self.stem(x)))
        return self.classifier(torch.flatten(self.pool(x), 1))
