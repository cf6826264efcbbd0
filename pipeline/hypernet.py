"""The MetaHypernetwork and the architecture samplers.

``MetaHypernetwork`` maps a preference vector ``r`` (``M`` weights on the simplex, any
``M >= 2``, never binned) and a hardware embedding ``h`` (the target's normalised values on the
space's reference architectures, one block of 10 per hardware objective) to architecture
logits ``(decisions, options)``. It starts near uniform: the last layer is initialised at
(almost) zero, so every option of every decision is equally likely before training.

Samplers turn logits into a *hard* one-hot architecture whose gradient reaches the logits:

- :class:`ReinMaxSampler` (Liu et al., "Bridging Discrete and Backpropagation: Straight-Through
  and Beyond", NeurIPS 2023): a sample from ``softmax(logits)`` with ReinMax's second-order
  (Heun) straight-through gradient; temperature 1 by default.
- :class:`GDASSampler` (Dong & Yang, CVPR 2019): Gumbel-softmax, hard straight-through, the
  temperature annealed from ``tau_max`` to ``tau_min`` over training (10 -> 1).

Both take the training progress in [0, 1] so a schedule can depend on it, and an optional
``torch.Generator`` for reproducible draws. Options outside ``mask`` (decisions with fewer
options) are never sampled.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
from hilnas.devices.errors import InvalidInputError, check_number
from torch import nn


# ----------------------------------------------------------------------------------------------
# samplers
# ----------------------------------------------------------------------------------------------
def _softmax_vjp(p: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Vector-Jacobian product of softmax at probabilities ``p`` with upstream ``g``."""
    pg = p * g
    return pg - p * pg.sum(-1, keepdim=True)


class _ReinMax(torch.autograd.Function):
    """Hard sample from softmax(logits); ReinMax gradient in the backward pass.

    With ``D`` the one-hot sample, ``pi0 = softmax(logits)`` and
    ``pi1 = (softmax(logits / tau) + D) / 2``, the gradient for an upstream ``g = dL/dD`` is
    ``2 J(pi1)^T g - J(pi0)^T g / 2`` (J the softmax Jacobian): Heun's method applied to the
    straight-through estimator, second-order accurate.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, tau: float, generator: torch.Generator | None):
        probs = logits.softmax(-1)
        flat = probs.reshape(-1, probs.shape[-1])
        idx = torch.multinomial(flat, 1, replacement=True, generator=generator)
        hard = torch.zeros_like(flat).scatter_(-1, idx, 1.0).reshape(probs.shape)
        ctx.save_for_backward(logits, probs, hard)
        ctx.tau = tau
        return hard

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        logits, probs, hard = ctx.saved_tensors
        pi1 = 0.5 * ((logits / ctx.tau).softmax(-1) + hard)
        out = 2.0 * _softmax_vjp(pi1, grad) - 0.5 * _softmax_vjp(probs, grad)
        return out - out.mean(-1, keepdim=True), None, None


def _masked(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return logits
    return logits.masked_fill(~mask.to(logits.device), float("-inf"))


class ArchSampler(Protocol):
    """Turns logits ``(..., D, K)`` into a hard one-hot of the same shape, differentiably."""

    name: str

    def __call__(
        self,
        logits: torch.Tensor,
        *,
        progress: float = 0.0,
        mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor: ...

    def config(self) -> dict: ...


class ReinMaxSampler:
    """ReinMax straight-through sampling (temperature ``tau >= 1``, default 1)."""

    name = "reinmax"

    def __init__(self, tau: float = 1.0):
        if not tau >= 1.0:
            raise InvalidInputError(f"ReinMax needs a temperature >= 1, got {tau}")
        self.tau = float(tau)

    def __call__(self, logits, *, progress=0.0, mask=None, generator=None):
        return _ReinMax.apply(_masked(logits, mask), self.tau, generator)

    def config(self) -> dict:
        return {"name": self.name, "tau": self.tau}


class GDASSampler:
    """Gumbel-softmax, hard straight-through; ``tau`` annealed ``tau_max -> tau_min``.

    The schedule is geometric in the training progress ``p``:
    ``tau = tau_max * (tau_min / tau_max) ** p``.
    """

    name = "gdas"

    def __init__(self, tau_max: float = 10.0, tau_min: float = 1.0):
        if not 0 < tau_min <= tau_max:
            raise InvalidInputError(f"need 0 < tau_min <= tau_max, got {tau_min}, {tau_max}")
        self.tau_max, self.tau_min = float(tau_max), float(tau_min)

    def tau_at(self, progress: float) -> float:
        p = min(max(float(progress), 0.0), 1.0)
        return self.tau_max * (self.tau_min / self.tau_max) ** p

    def __call__(self, logits, *, progress=0.0, mask=None, generator=None):
        logits = _masked(logits, mask)
        u = torch.rand(logits.shape, generator=generator, dtype=logits.dtype, device=logits.device)
        gumbel = -torch.log(-torch.log(u.clamp(1e-10, 1.0 - 1e-7)))
        soft = ((logits.log_softmax(-1) + gumbel) / self.tau_at(progress)).softmax(-1)
        hard = torch.zeros_like(soft).scatter_(-1, soft.argmax(-1, keepdim=True), 1.0)
        return hard - soft.detach() + soft

    def config(self) -> dict:
        return {"name": self.name, "tau_max": self.tau_max, "tau_min": self.tau_min}


SAMPLERS = {"reinmax": ReinMaxSampler, "gdas": GDASSampler}


def make_sampler(name: str, **kwargs) -> ArchSampler:
    """A sampler by name (``reinmax`` or ``gdas``)."""
    try:
        return SAMPLERS[name](**kwargs)
    except KeyError:
        raise InvalidInputError(
            f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}"
        ) from None


# ----------------------------------------------------------------------------------------------
# the hypernetwork
# ----------------------------------------------------------------------------------------------
#: Size bounds of a MetaHypernetwork (checked on construction, so a search config and a saved
#: search's settings get them too): far above anything useful (the default is 2 x 256, a few
#: hundred kB), far below what would exhaust a machine's memory (8 x 4096 is ~0.5 GB).
MAX_HIDDEN = 4096
MAX_LAYERS = 8
MAX_FREQUENCIES = 16
MAX_OBJECTIVES = 8
MAX_EMBED_DIM = 10_000
MAX_DECISIONS = 10_000
MAX_OPTIONS = 1_000


class MetaHypernetwork(nn.Module):
    """``H(r, h) -> logits (B, decisions, options)``.

    An MLP on ``[r, log r, fourier(r), h]``. The Fourier features of the preference
    (``sin/cos(2^k pi r_m)``, ``k < frequencies``) let a small network switch architecture at
    sharp preference boundaries, which a front of dozens of architectures per device needs; the
    scaled ``log r_m`` (floored at ``1e-4``) resolves the preferences near a corner of the
    simplex, where the accurate end of an NB201 front lies. The last layer starts at
    ``init_scale`` (~0): the initial logits are ~0, i.e. uniform.
    """

    LOG_FLOOR = 1e-4

    def __init__(
        self,
        *,
        num_objectives: int,
        embed_dim: int,
        num_decisions: int,
        num_options: int,
        hidden: int = 256,
        layers: int = 2,
        frequencies: int = 4,
        init_scale: float = 1e-3,
    ):
        super().__init__()
        sizes = {
            name: int(
                check_number(
                    f"hypernetwork {name}",
                    value,
                    low=low,
                    high=high,
                    fix=f"{name} must be at least {low} and at most {high:,}",
                )
            )
            for name, value, (low, high) in (
                ("num_objectives", num_objectives, (2, MAX_OBJECTIVES)),
                ("embed_dim", embed_dim, (1, MAX_EMBED_DIM)),
                ("num_decisions", num_decisions, (1, MAX_DECISIONS)),
                ("num_options", num_options, (2, MAX_OPTIONS)),
                ("hidden", hidden, (1, MAX_HIDDEN)),
                ("layers", layers, (1, MAX_LAYERS)),
                ("frequencies", frequencies, (0, MAX_FREQUENCIES)),
            )
        }
        num_objectives, embed_dim = sizes["num_objectives"], sizes["embed_dim"]
        num_decisions, num_options = sizes["num_decisions"], sizes["num_options"]
        hidden, layers, frequencies = sizes["hidden"], sizes["layers"], sizes["frequencies"]
        init_scale = float(
            check_number("hypernetwork init_scale", init_scale, low=0.0, high=10.0, integer=False)
        )
        self.num_objectives = num_objectives
        self.embed_dim = embed_dim
        self.num_decisions = num_decisions
        self.num_options = num_options
        self.hidden = hidden
        self.layers = layers
        self.frequencies = frequencies
        self.init_scale = init_scale
        self.register_buffer(
            "freqs", (2.0 ** torch.arange(frequencies, dtype=torch.float32)) * math.pi
        )
        in_dim = num_objectives * (2 + 2 * frequencies) + embed_dim
        blocks: list[nn.Module] = []
        width = in_dim
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        self.body = nn.Sequential(*blocks)
        self.head = nn.Linear(width, num_decisions * num_options)
        nn.init.normal_(self.head.weight, std=init_scale)
        nn.init.zeros_(self.head.bias)

    def config(self) -> dict:
        return {
            "num_objectives": self.num_objectives,
            "embed_dim": self.embed_dim,
            "num_decisions": self.num_decisions,
            "num_options": self.num_options,
            "hidden": self.hidden,
            "layers": self.layers,
            "frequencies": self.frequencies,
            "init_scale": self.init_scale,
        }

    def forward(self, r: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        if r.dim() == 1:
            r = r.unsqueeze(0)
        if h.dim() == 1:
            h = h.unsqueeze(0).expand(r.shape[0], -1)
        if r.shape[-1] != self.num_objectives or h.shape[-1] != self.embed_dim:
            raise InvalidInputError(
                f"expected preferences (B, {self.num_objectives}) and embeddings "
                f"(B, {self.embed_dim}), got {tuple(r.shape)} and {tuple(h.shape)}"
            )
        log_r = torch.log(r.clamp_min(self.LOG_FLOOR)) / -math.log(self.LOG_FLOOR) + 1.0
        parts = [r, log_r]
        if self.frequencies:
            angles = r.unsqueeze(-1) * self.freqs
            parts += [angles.sin().flatten(1), angles.cos().flatten(1)]
        x = torch.cat(parts + [h.to(r.dtype)], dim=-1)
        out = self.head(self.body(x))
        return out.view(-1, self.num_decisions, self.num_options)
