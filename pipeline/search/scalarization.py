"""Preferences and the scalarised loss: :func:`scalarize` (linear, Tchebycheff), the
preferences aimed at points of a front (:func:`preferences_for`) and the training preference
sampler that mixes them with a flat Dirichlet."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from hilnas.pipeline import mo
from hilnas.pipeline.search.config import SearchError

if TYPE_CHECKING:  # pragma: no cover
    import torch


#: Offset added to normalised costs inside the logarithmic Tchebycheff scalarisation.
COST_EPS = 1e-3


def scalarize(
    r: torch.Tensor, costs: torch.Tensor, kind: str, smoothing: float = 0.05
) -> torch.Tensor:
    """Scalarised loss ``(B,)`` of normalised costs ``(B, M)`` in [0, 1] under preferences ``(B, M)``.

    ``linear``: ``sum_m r_m c_m``. ``tchebycheff``: a smooth maximum of ``r_m (c_m + eps)`` taken
    in log space, ``mu * logsumexp_m(log(r_m (c_m + eps)) / mu)``: minimising it minimises
    ``max_m r_m (c_m + eps)`` (a weighted Tchebycheff distance to the ideal point, which reaches
    the non-convex parts of a front too) up to a relative error ``mu log M``, and the log keeps
    its resolution near the ideal point, where an accurate network's normalised error is 0.01.
    """
    import torch

    if kind == "linear":
        return (r * costs).sum(-1)
    if kind == "tchebycheff":
        z = torch.log(r.clamp_min(1e-12)) + torch.log(costs.clamp_min(0.0) + COST_EPS)
        return smoothing * torch.logsumexp(z / smoothing, dim=-1)
    raise SearchError(f"unknown scalarization {kind!r}")


def preferences_for(costs: np.ndarray) -> np.ndarray:
    """The Tchebycheff preferences ``(n, M)`` whose optimum is each normalised cost row ``(n, M)``:
    ``r_m`` proportional to ``1 / (c_m + eps)`` (where all ``r_m (c_m + eps)`` are equal)."""
    inv = 1.0 / (np.clip(np.asarray(costs, dtype=np.float64), 0.0, None) + COST_EPS)
    return inv / inv.sum(-1, keepdims=True)


def _fronts_and_sweep(values: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Each target's front among normalised costs ``(T, N, M)`` and the Tchebycheff
    preferences aiming at all their points (what a front's preference sweep is drawn from)."""
    fronts = [np.unique(v[mo.pareto_mask(v)], axis=0) for v in values]
    return fronts, np.concatenate([preferences_for(f) for f in fronts])


class _PreferenceSampler:
    """Training preferences: the flat Dirichlet, mixed (share ``share``) with preferences aimed
    at points of each target's predicted front (:func:`preferences_for`), jittered by a
    log-normal factor.

    On NB201 most of a front sits within a few percent of the accuracy corner of the
    normalised cost square, so a flat Dirichlet rarely asks the hypernetwork about it; aimed
    preferences do, without changing what any preference means.
    """

    def __init__(
        self,
        num_objectives: int,
        fronts: Sequence[np.ndarray] | None,
        share: float,
        seed: int,
        jitter: float = 0.2,
    ):
        import torch

        self.num_objectives = num_objectives
        self.dirichlet = torch.distributions.Dirichlet(torch.ones(num_objectives))
        self.share = share if fronts else 0.0
        self.aimed = [
            torch.as_tensor(preferences_for(f), dtype=torch.float32) for f in fronts or []
        ]
        self.jitter = jitter
        self.gen = torch.Generator().manual_seed(seed)

    def aim(self, fronts: Sequence[np.ndarray], share: float) -> None:
        """Aim at these (normalised) fronts from now on, with share ``share``."""
        import torch

        self.aimed = [torch.as_tensor(preferences_for(f), dtype=torch.float32) for f in fronts]
        self.share = share

    def sample(self, rows):
        import torch

        r = self.dirichlet.sample((len(rows),))
        if self.share <= 0:
            return r
        use = torch.rand(len(rows), generator=self.gen) < self.share
        for t in torch.unique(rows[use]).tolist():
            sel = (use & (rows == t)).nonzero().squeeze(1)
            bank = self.aimed[t]
            pick = bank[torch.randint(len(bank), (len(sel),), generator=self.gen)]
            noise = torch.exp(self.jitter * torch.randn(pick.shape, generator=self.gen))
            pick = pick * noise
            r[sel] = pick / pick.sum(-1, keepdim=True)
        return r
