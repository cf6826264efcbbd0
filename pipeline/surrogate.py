"""A differentiable accuracy surrogate for the fast (tabular) search mode.

Accuracy does not depend on the device, so ``B`` architectures whose true accuracy is queried
once serve every device of a search. The surrogate predicts top-1 *error* in percent from the
architecture one-hot ``(batch, decisions, options)``; it is differentiable in that input, so a
straight-through or relaxed sample from the hypernetwork's logits can be fed to it and the
gradient reaches the logits.

Inputs are the one-hot plus, for NB201, a *path encoding*: for each of the four input-to-output
paths through the cell, the outer product of the (non-``none``) op indicators along the path.
The products are multilinear in the one-hot, hence differentiable, and they expose which paths
carry computation (an architecture with no live path sits at 10% accuracy) to a small model
fit on a few hundred points. The model is a seeded ensemble of small MLPs fit on the logarithm of
the error (the error spans 5 % to 90 % and is heavy-tailed; in log space the good
architectures, where the front lies, are not drowned by the few dead ones); fitting takes a few
seconds on a CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from hilnas.devices.errors import InvalidInputError, check_number
from hilnas.pipeline.spaces import SearchSpace
from torch import nn

#: Size bounds of an AccuracySurrogate (checked on construction, so a saved search's settings
#: get them too): far above the defaults (5 members x 64), far below exhausting memory.
MAX_MEMBERS = 64
MAX_HIDDEN = 4096
MAX_IN_DIM = 100_000

#: Edge indices of the four input-to-output paths of the NB201 cell (edges in string order).
NB201_PATHS: tuple[tuple[int, ...], ...] = ((3,), (0, 4), (1, 5), (0, 2, 5))


def path_features(onehot: torch.Tensor) -> torch.Tensor:
    """NB201 path encoding of ``onehot`` ``(B, 6, 5)`` -> ``(B, 100)`` (ops other than none)."""
    ops = onehot[..., 1:]  # drop `none`: a path through it carries nothing
    feats = []
    for path in NB201_PATHS:
        acc = ops[:, path[0], :]
        for e in path[1:]:
            acc = (acc.unsqueeze(-1) * ops[:, e, :].unsqueeze(1)).flatten(1)
        feats.append(acc)
    return torch.cat(feats, dim=1)


def encode(onehot: torch.Tensor, space_name: str) -> torch.Tensor:
    """Surrogate input features: the flat one-hot, plus path features for NB201."""
    flat = onehot.flatten(1)
    if space_name == "nb201":
        return torch.cat([flat, path_features(onehot)], dim=1)
    return flat


class AccuracySurrogate(nn.Module):
    """Ensemble of small MLPs: one-hot ``(B, D, K)`` -> predicted top-1 error (%) ``(B,)``.

    Each member predicts the standardised log error; ``forward`` returns ``exp`` of the members'
    mean, ``members(onehot)`` every member's error ``(members, B)`` (their spread is a rough
    uncertainty).
    """

    def __init__(
        self,
        *,
        space_name: str,
        in_dim: int,
        members: int = 5,
        hidden: int = 64,
        target_mean: float = 0.0,
        target_std: float = 1.0,
    ):
        super().__init__()
        members = int(check_number("surrogate members", members, low=1, high=MAX_MEMBERS))
        hidden = int(check_number("surrogate hidden", hidden, low=1, high=MAX_HIDDEN))
        in_dim = int(check_number("surrogate in_dim", in_dim, low=1, high=MAX_IN_DIM))
        if not isinstance(space_name, str):
            raise InvalidInputError(f"surrogate space_name must be a name, got {space_name!r}")
        self.space_name = space_name
        self.in_dim = in_dim
        self.num_members = members
        self.hidden = hidden
        self.register_buffer("target_mean", torch.tensor(float(target_mean)))
        self.register_buffer("target_std", torch.tensor(float(target_std)))
        self.nets = nn.ModuleList(
            nn.Sequential(
                nn.Linear(in_dim, hidden),
                nn.SiLU(),
                nn.Linear(hidden, hidden),
                nn.SiLU(),
                nn.Linear(hidden, 1),
            )
            for _ in range(members)
        )

    def config(self) -> dict:
        return {
            "space_name": self.space_name,
            "in_dim": self.in_dim,
            "members": self.num_members,
            "hidden": self.hidden,
        }

    def _standardised(self, onehot: torch.Tensor) -> torch.Tensor:
        x = encode(onehot, self.space_name)
        return torch.stack([net(x).squeeze(-1) for net in self.nets])

    def members(self, onehot: torch.Tensor) -> torch.Tensor:
        return torch.exp(self._standardised(onehot) * self.target_std + self.target_mean)

    def forward(self, onehot: torch.Tensor) -> torch.Tensor:
        return torch.exp(self._standardised(onehot).mean(0) * self.target_std + self.target_mean)

    predict = forward


@dataclass(frozen=True, slots=True)
class AccuracyQueries:
    """Architectures whose true accuracy was read, and the error (%) read for each."""

    archs: tuple[tuple[int, ...], ...]
    error_pct: np.ndarray
    column: str

    def __len__(self) -> int:
        return len(self.archs)


def query_accuracy(
    space: SearchSpace,
    archs: Sequence[Sequence[int]],
    *,
    column: str = "cifar10_test",
) -> AccuracyQueries:
    """Read the true top-1 error (%) of ``archs`` from the shipped NB201 table (one query each)."""
    if space.name != "nb201":
        raise InvalidInputError(
            f"tabular accuracy is only available for nb201, not {space.name!r}; use supernet mode"
        )
    from hilnas.pipeline.refdata import load_nb201

    acc = load_nb201().accuracy_of(column)
    codes = tuple(space.validate(a) for a in archs)
    err = np.asarray([100.0 - float(acc[space.index(a)]) for a in codes], dtype=np.float64)
    return AccuracyQueries(codes, err, column)


def fit_accuracy_surrogate(
    space: SearchSpace,
    queries: AccuracyQueries,
    *,
    seed: int = 0,
    members: int = 5,
    hidden: int = 64,
    epochs: int = 400,
    lr: float = 3e-3,
    weight_decay: float = 1e-4,
) -> AccuracySurrogate:
    """Fit the ensemble on the queried errors (full-batch Adam, MSE on the standardised log
    error); the members differ by their seeded initialisation. Deterministic for ``seed``.
    """
    if len(queries) < 2:
        raise InvalidInputError(
            f"need at least 2 accuracy queries to fit a surrogate, got {len(queries)}"
        )
    x = torch.as_tensor(space.one_hot_batch(queries.archs))
    if np.any(queries.error_pct <= 0):
        raise InvalidInputError("accuracy queries must have an error above 0 %")
    y = torch.log(torch.as_tensor(queries.error_pct, dtype=torch.float32))
    mean, std = float(y.mean()), float(y.std().clamp_min(1e-6))
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = AccuracySurrogate(
            space_name=space.name,
            in_dim=int(encode(x[:1], space.name).shape[1]),
            members=members,
            hidden=hidden,
            target_mean=mean,
            target_std=std,
        )
        feats = encode(x, space.name)
        target = (y - mean) / std
        opt = torch.optim.Adam(model.nets.parameters(), lr=lr, weight_decay=weight_decay)
        for _ in range(epochs):
            opt.zero_grad()
            pred = torch.stack([net(feats).squeeze(-1) for net in model.nets])
            loss = ((pred - target) ** 2).mean()
            loss.backward()
            opt.step()
    finally:
        torch.random.set_rng_state(state)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
