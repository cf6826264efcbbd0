"""Differentiable models the space search trains against: quality and cost networks.

Both read an architecture as the space's *masked one-hot*: the one-hot of every decision with
the rows of inactive decisions (layers beyond a stage's depth, GPT layers beyond ``layers``)
zeroed, flattened over the real options only (``space.option_mask``), the same layout as the
one-hot block of :func:`hilnas.pipeline.predictors.space.arch_features`. A hard straight-through
sample of the hypernetwork, masked the same way, flows through them with a gradient.

- :class:`QualityModel`: an ensemble of small MLPs fit on the quality oracle's answers (the
  architectures queried so far) to the log of the quality value (perplexity, or error in %);
  next to the one-hot it reads the space's cost features (:func:`cost_extras`: parameters,
  MACs, depth, width), which carry most of what quality depends on.
- :class:`CostNet`: one MLP per hardware metric with one output per training target, distilled
  from the frozen space predictor's (exact, but not differentiable through its cost features)
  log predictions on a pool of architectures. Its fidelity (Spearman on held-out architectures)
  is reported with the run.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from hilnas.pipeline.spaces.base import SearchSpace
from torch import nn


def masked_onehot(space: SearchSpace, codes: Sequence[Sequence[int]]) -> np.ndarray:
    """``(n, real options)`` float32 masked one-hot of canonical codes."""
    return space.one_hot_batch(codes)[:, space.option_mask].astype(np.float32)


def active_rows(space: SearchSpace, codes: np.ndarray) -> np.ndarray:
    """``(n, num_decisions)`` bool: which decisions are active in each code."""
    if not space.conditional:
        return np.ones(codes.shape, dtype=bool)
    return np.stack([space.active_mask(tuple(int(v) for v in c)) for c in codes])


def _mlp(d_in: int, hidden: int, d_out: int, layers: int = 2) -> nn.Sequential:
    blocks: list[nn.Module] = []
    width = d_in
    for _ in range(layers):
        blocks += [nn.Linear(width, hidden), nn.SiLU()]
        width = hidden
    blocks.append(nn.Linear(width, d_out))
    return nn.Sequential(*blocks)


def _fit(
    net: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    epochs: int,
    lr: float,
    wd: float,
    seed: int,
    batch: int = 512,
) -> float:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=wd)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
    n = len(x)
    loss = torch.zeros(())
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, batch):
            idx = order[i : i + batch]
            loss = (net(x[idx]) - y[idx]).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
    return float(loss.detach())


def cost_extras(space: SearchSpace, codes: Sequence[Sequence[int]]) -> np.ndarray:
    """``(n, len(space.cost_feature_names))`` float32 ``log1p`` of the space's cost features
    (GPT-S: MACs, parameters, KV-cache size, depth, attention width): what quality follows
    most, next to the one-hot, as in :func:`hilnas.pipeline.predictors.space.arch_features`."""
    cost = space.cost_features_batch([tuple(int(v) for v in c) for c in codes])
    return np.log1p(np.maximum(np.asarray(cost, dtype=np.float64), 0.0)).astype(np.float32)


class QualityModel(nn.Module):
    """``forward(x, extra) -> log quality (B,)``: the mean of ``members`` MLPs on the masked
    one-hot ``x``, with ``n_extra`` further per-architecture inputs ``extra`` (the space's cost
    features, :func:`cost_extras`) standardised by the statistics of the last fit.

    ``n_extra=0`` is the one-hot-only model (runs saved before the extras load as that). In
    the hypernetwork's training the extras are those of the sampled architecture, constants:
    the gradient flows through the one-hot only."""

    def __init__(self, d_in: int, *, members: int = 4, hidden: int = 64, n_extra: int = 0) -> None:
        super().__init__()
        self.d_in, self.num_members, self.hidden = int(d_in), int(members), int(hidden)
        self.n_extra = int(n_extra)
        width = self.d_in + self.n_extra
        self.members = nn.ModuleList(_mlp(width, hidden, 1) for _ in range(members))
        self.register_buffer("y_mean", torch.zeros(()))
        self.register_buffer("y_std", torch.ones(()))
        if self.n_extra:
            self.register_buffer("extra_mean", torch.zeros(self.n_extra))
            self.register_buffer("extra_std", torch.ones(self.n_extra))

    def config(self) -> dict:
        out = {"d_in": self.d_in, "members": self.num_members, "hidden": self.hidden}
        if self.n_extra:
            out["n_extra"] = self.n_extra
        return out

    def _inputs(self, x: torch.Tensor, extra: torch.Tensor | np.ndarray | None) -> torch.Tensor:
        if not self.n_extra:
            return x
        if extra is None:
            raise ValueError(f"this quality model needs {self.n_extra} extra inputs per row")
        e = torch.as_tensor(extra, dtype=x.dtype)
        return torch.cat([x, (e - self.extra_mean) / self.extra_std], dim=-1)

    def member_outputs(
        self, x: torch.Tensor, extra: torch.Tensor | np.ndarray | None = None
    ) -> torch.Tensor:
        z = self._inputs(x, extra)
        out = torch.stack([m(z).squeeze(-1) for m in self.members], dim=-1)
        return out * self.y_std + self.y_mean

    def forward(
        self, x: torch.Tensor, extra: torch.Tensor | np.ndarray | None = None
    ) -> torch.Tensor:
        return self.member_outputs(x, extra).mean(-1)

    def fit(
        self,
        x: np.ndarray,
        values: np.ndarray,
        *,
        seed: int,
        epochs: int = 300,
        extra: np.ndarray | None = None,
    ) -> None:
        """Refit every member from scratch on ``log(values)`` (bootstrap resamples)."""
        torch.manual_seed(seed)
        for m in self.members:
            for layer in m:
                if isinstance(layer, nn.Linear):
                    layer.reset_parameters()
        y = np.log(np.maximum(np.asarray(values, dtype=np.float64), 1e-6))
        self.y_mean.fill_(float(y.mean()))
        self.y_std.fill_(float(y.std() + 1e-6))
        xt = torch.as_tensor(x, dtype=torch.float32)
        if self.n_extra:
            e = np.asarray(extra, dtype=np.float64)
            self.extra_mean.copy_(torch.as_tensor(e.mean(0), dtype=torch.float32))
            self.extra_std.copy_(torch.as_tensor(np.maximum(e.std(0), 1e-6), dtype=torch.float32))
        xt = self._inputs(xt, extra)
        yt = torch.as_tensor((y - y.mean()) / (y.std() + 1e-6), dtype=torch.float32)
        rng = np.random.default_rng(seed)
        for k, m in enumerate(self.members):
            idx = torch.as_tensor(rng.integers(0, len(x), len(x)))
            _fit(m, xt[idx], yt[idx].unsqueeze(-1), epochs, 3e-3, 1e-3, seed + k, batch=256)

    @torch.no_grad()
    def predict(self, x: np.ndarray, extra: np.ndarray | None = None) -> np.ndarray:
        """Quality values (the oracle's unit), ``(n,)``."""
        return np.exp(self(torch.as_tensor(x, dtype=torch.float32), extra).double().numpy())

    @torch.no_grad()
    def uncertainty(self, x: np.ndarray, extra: np.ndarray | None = None) -> np.ndarray:
        """Spread (standard deviation) of the members' log-quality predictions, ``(n,)``."""
        out = self.member_outputs(torch.as_tensor(x, dtype=torch.float32), extra)
        return out.std(-1).double().numpy()


class CostNet(nn.Module):
    """``forward(x) -> log cost (B, targets)`` for one hardware metric, every training target."""

    def __init__(self, d_in: int, targets: int, *, hidden: int = 128) -> None:
        super().__init__()
        self.d_in, self.targets, self.hidden = int(d_in), int(targets), int(hidden)
        self.net = _mlp(d_in, hidden, targets)
        self.register_buffer("y_mean", torch.zeros(targets))
        self.register_buffer("y_std", torch.ones(targets))

    def config(self) -> dict:
        return {"d_in": self.d_in, "targets": self.targets, "hidden": self.hidden}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) * self.y_std + self.y_mean

    def fit(self, x: np.ndarray, log_costs: np.ndarray, *, seed: int, epochs: int = 60) -> None:
        y = np.asarray(log_costs, dtype=np.float64)
        self.y_mean.copy_(torch.as_tensor(y.mean(0), dtype=torch.float32))
        self.y_std.copy_(torch.as_tensor(y.std(0) + 1e-6, dtype=torch.float32))
        torch.manual_seed(seed)
        z = (y - y.mean(0)) / (y.std(0) + 1e-6)
        _fit(
            self.net,
            torch.as_tensor(x, dtype=torch.float32),
            torch.as_tensor(z, dtype=torch.float32),
            epochs,
            3e-3,
            1e-4,
            seed,
        )
