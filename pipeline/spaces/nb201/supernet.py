"""The NB201 weight-sharing supernet.

One network holds every operation of every edge (the NB201 ops of
:mod:`hilnas.pipeline.spaces.nb201.torch_model`); an architecture is passed at call time as a hard
one-hot ``(6, 5)`` (one row per edge), typically a straight-through sample of the
hypernetwork's logits. Only the selected operation of each edge runs. The other options enter
the edge's output as ``w_k * 0`` terms (their one-hot weights, which are zero in value), as in
GDAS: the output is unchanged but the graph reaches every weight, so the gradient of the loss
reaches all the logits through the sampler.

Batch normalisation uses the statistics of the current batch (no running statistics): the
weights are shared by thousands of architectures whose activations differ, so stored statistics
would fit none of them. Evaluate with batches of a reasonable size (the helpers below use 256).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from hilnas.devices.errors import InvalidInputError
from hilnas.pipeline.spaces.base import ModelConfig
from hilnas.pipeline.spaces.nb201 import EDGES, OPS
from hilnas.pipeline.spaces.nb201.torch_model import make_op, make_reduction
from hilnas.pipeline.supernet import train_epochs
from torch import nn


class _Zero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


def _batch_statistics_only(module: nn.Module) -> nn.Module:
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.track_running_stats = False
            m.running_mean = None
            m.running_var = None
            m.num_batches_tracked = None
    return module


class MixedEdge(nn.Module):
    """All five NB201 operations of one edge; runs only the one selected by ``weights``."""

    def __init__(self, channels: int):
        super().__init__()
        self.ops = nn.ModuleList(
            _Zero() if name == "none" else make_op(name, channels, affine=False) for name in OPS
        )

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        k = int(weights.detach().argmax())
        out = weights[k] * self.ops[k](x)
        others = torch.cat([weights[:k], weights[k + 1 :]]).sum()  # zero-valued, keeps the graph
        return out + others


class SupernetCell(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.edges = nn.ModuleList(MixedEdge(channels) for _ in EDGES)

    def forward(self, x: torch.Tensor, arch: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for dst in (1, 2, 3):
            total = None
            for e, (d, src) in enumerate(EDGES):
                if d == dst:
                    out = self.edges[e](nodes[src], arch[e])
                    total = out if total is None else total + out
            nodes.append(total)
        return nodes[3]


class NB201Supernet(nn.Module):
    """The NB201 skeleton (stem, 3 stages of N cells, 2 reductions, head) with
    weight-sharing cells. ``forward(x, arch)`` with ``arch`` a hard one-hot ``(6, 5)``."""

    def __init__(self, config: ModelConfig, seed: int = 0):
        super().__init__()
        state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            self.config = config
            c = config.channels
            self.stem = nn.Sequential(
                nn.Conv2d(config.in_channels, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
            )
            self.cells = nn.ModuleList()
            for stage in range(3):
                if stage:
                    self.cells.append(make_reduction(config.reduction, c, c * 2))
                    c *= 2
                self.cells.extend(SupernetCell(c) for _ in range(config.cells_per_stage))
            self.head = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU())
            self.classifier = nn.Linear(c, config.num_classes)
        finally:
            torch.random.set_rng_state(state)
        _batch_statistics_only(self)

    def forward(self, x: torch.Tensor, arch: torch.Tensor) -> torch.Tensor:
        if arch.shape != (len(EDGES), len(OPS)):
            raise InvalidInputError(
                f"arch must be a one-hot of shape ({len(EDGES)}, {len(OPS)}), got {tuple(arch.shape)}"
            )
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x, arch) if isinstance(cell, SupernetCell) else cell(x)
        x = self.head(x)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    @staticmethod
    def one_hot(arch: Sequence[int]) -> torch.Tensor:
        """Hard one-hot ``(6, 5)`` of an integer architecture code."""
        return F.one_hot(torch.as_tensor(list(arch)), len(OPS)).float()

    @torch.no_grad()
    def error_pct(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        arch: torch.Tensor | Sequence[int],
        batch_size: int = 256,
    ) -> float:
        """Top-1 error (%) of the sub-network ``arch`` on ``(x, y)``."""
        a = arch if isinstance(arch, torch.Tensor) else self.one_hot(arch)
        device = next(self.parameters()).device
        a = a.to(device)
        wrong = 0
        for i in range(0, len(y), batch_size):
            xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
            wrong += int((self(xb, a).argmax(1) != yb).sum())
        return 100.0 * wrong / max(1, len(y))


# ----------------------------------------------------------------------------------------------
# standalone retraining
# ----------------------------------------------------------------------------------------------
def train_standalone(
    arch: Sequence[int],
    data,
    config: ModelConfig,
    *,
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 0.05,
    seed: int = 0,
) -> dict[str, float]:
    """Train one architecture from scratch (no weight sharing) on ``data`` (a
    :class:`~hilnas.pipeline.datasets.DatasetSplits`); returns its validation and test error (%).

    The network is the supernet with ``arch`` fixed, so it is the same skeleton and the same
    batch-statistics normalisation the supernet's errors were measured with: the check of how
    far a supernet's ranking of architectures can be trusted.
    """
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        net = NB201Supernet(config, seed=seed)
        a = NB201Supernet.one_hot(arch)
        archs = a.unsqueeze(0)
        train_epochs(
            net,
            data.train_x,
            data.train_y,
            lambda: archs,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
        )
        net.eval()
        return {
            "val_error": net.error_pct(data.val_x, data.val_y, a),
            "test_error": net.error_pct(data.test_x, data.test_y, a),
        }
    finally:
        torch.random.set_rng_state(state)
