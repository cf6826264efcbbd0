"""A weight-sharing supernet of the GPT-S space, at a reduced width for training on a CPU.

:class:`GPTSupernet` holds the weights of the largest GPT-S network (embedding 768, 12 blocks,
MLP ratio 4, 12 heads of size 64, biases) with every width divided by ``width_scale``: with
the default 8, embedding choices 192/384/768 become **24/48/96**, the head size 64 becomes 8
(so 4/8/12 heads are 32/64/96 channels of attention), the MLP hidden width ``ratio * embed``
scales with the embedding. Depth (10/11/12 blocks), head counts and MLP ratios are not scaled.
The context is short (set by the caller). The scale changes what the supernet can *learn*, not
what the architecture code means: latency and energy objectives stay those of the full-size
network the code names.

Weight sharing (every sub-network is a slice of the same tensors, the layout of
:mod:`.model`, pre-norm GPT-2 blocks with a tied LM head):

- embedding ``E`` (scaled): the first ``E`` channels of the token and position embeddings, of
  every LayerNorm's weight and bias (normalised over those ``E`` channels), of the attention
  and MLP projections' inputs and outputs, and of the tied LM head (the token embedding);
- depth ``L``: the first ``L`` blocks;
- heads ``H`` in block ``i``: heads ``0..H-1`` of fixed size ``64 / width_scale``; the query,
  key and value projections each use their first ``H`` heads' rows, the output projection
  their columns. The head size is the same in every sub-network (as in :mod:`.model`, where it
  is always 64), so a head's weights mean the same thing in every network that has it;
- MLP ratio ``r`` in block ``i``: the first ``r * E`` hidden units;
- ``bias`` false: the attention and MLP linear layers' biases are skipped (the LayerNorms keep
  theirs, as in :mod:`.model`).

Changing any weight outside a sub-network's slice leaves its output bit-identical.
Initialisation is deterministic by ``seed`` (GPT-2's: normal with std 0.02, the two residual
output projections 0.02 / sqrt(2 * 12), biases 0, LayerNorm weights 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from hilnas.devices.errors import InvalidInputError, check_number
from hilnas.pipeline.spaces.gpt_s.space import (
    EMBED_CHOICES,
    HEAD_CHOICES,
    HEAD_SIZE,
    LAYER_CHOICES,
    MAX_LAYERS,
    MLP_RATIO_CHOICES,
    GPTArch,
    GPTSpace,
)
from torch import nn
from torch.nn import functional as F

#: Width divisors a supernet accepts (each divides the head size 64 and the embedding 192).
WIDTH_SCALES: tuple[int, ...] = (1, 2, 4, 8, 16)
MAX_EMBED = max(EMBED_CHOICES)
MAX_HEADS = max(HEAD_CHOICES)
MAX_RATIO = max(MLP_RATIO_CHOICES)
_INIT_STD = 0.02


@dataclass(frozen=True, slots=True)
class SubnetSpec:
    """A sub-network in the supernet's (scaled) units."""

    embed: int
    layers: int
    mlp_hidden: tuple[int, ...]
    heads: tuple[int, ...]
    bias: bool


def scale_arch(arch: GPTArch, width_scale: int) -> SubnetSpec:
    """The slice sizes of a full-size architecture in a supernet of ``width_scale``."""
    e = arch.embed // width_scale
    return SubnetSpec(
        embed=e,
        layers=arch.layers,
        mlp_hidden=tuple(r * e for r in arch.mlp_ratio),
        heads=tuple(arch.heads),
        bias=arch.bias,
    )


def largest_arch() -> GPTArch:
    """Embedding 768, 12 blocks of MLP ratio 4 and 12 heads, biases."""
    n = MAX_LAYERS
    return GPTArch(MAX_EMBED, n, (MAX_RATIO,) * n, (MAX_HEADS,) * n, True)


def smallest_arch() -> GPTArch:
    """Embedding 192, 10 blocks of MLP ratio 2 and 4 heads, no biases."""
    n = min(LAYER_CHOICES)
    return GPTArch(
        min(EMBED_CHOICES), n, (min(MLP_RATIO_CHOICES),) * n, (min(HEAD_CHOICES),) * n, False
    )


class _SharedBlock(nn.Module):
    """The largest block's weights; ``forward`` computes any slice of it."""

    def __init__(self, embed: int, head_size: int) -> None:
        super().__init__()
        att = MAX_HEADS * head_size
        hidden = MAX_RATIO * embed
        self.head_size = head_size
        self.ln_1_weight = nn.Parameter(torch.ones(embed))
        self.ln_1_bias = nn.Parameter(torch.zeros(embed))
        self.qkv_weight = nn.Parameter(torch.zeros(3 * att, embed))  # [q | k | v] rows
        self.qkv_bias = nn.Parameter(torch.zeros(3 * att))
        self.proj_weight = nn.Parameter(torch.zeros(embed, att))
        self.proj_bias = nn.Parameter(torch.zeros(embed))
        self.ln_2_weight = nn.Parameter(torch.ones(embed))
        self.ln_2_bias = nn.Parameter(torch.zeros(embed))
        self.fc_weight = nn.Parameter(torch.zeros(hidden, embed))
        self.fc_bias = nn.Parameter(torch.zeros(hidden))
        self.out_weight = nn.Parameter(torch.zeros(embed, hidden))
        self.out_bias = nn.Parameter(torch.zeros(embed))

    def forward(self, x: torch.Tensor, heads: int, hidden: int, bias: bool) -> torch.Tensor:
        b, t, e = x.shape
        hs = self.head_size
        width = heads * hs
        full = MAX_HEADS * hs
        h = F.layer_norm(x, (e,), self.ln_1_weight[:e], self.ln_1_bias[:e])
        w_qkv = self.qkv_weight.view(3, full, -1)[:, :width, :e].reshape(3 * width, e)
        b_qkv = self.qkv_bias.view(3, full)[:, :width].reshape(3 * width) if bias else None
        q, k, v = F.linear(h, w_qkv, b_qkv).split(width, dim=2)
        q, k, v = (y.view(b, t, heads, hs).transpose(1, 2) for y in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.transpose(1, 2).reshape(b, t, width)
        x = x + F.linear(y, self.proj_weight[:e, :width], self.proj_bias[:e] if bias else None)
        h = F.layer_norm(x, (e,), self.ln_2_weight[:e], self.ln_2_bias[:e])
        h = F.gelu(
            F.linear(h, self.fc_weight[:hidden, :e], self.fc_bias[:hidden] if bias else None)
        )
        return x + F.linear(h, self.out_weight[:e, :hidden], self.out_bias[:e] if bias else None)


class GPTSupernet(nn.Module):
    """The shared weights of every GPT-S network at ``1 / width_scale`` width.

    ``forward(tokens, arch)`` takes int64 ``(B, T)`` token ids (``T <= context``) and a
    canonical GPT-S code (27 option indices), a :class:`GPTArch` or a :class:`SubnetSpec`, and
    returns the ``(B, T, vocab_size)`` float32 logits of that sub-network. Raises
    :class:`InvalidInputError` for a bad scale, a too-long input or out-of-vocabulary ids.
    """

    def __init__(self, vocab_size: int, context: int, width_scale: int = 8, seed: int = 0) -> None:
        super().__init__()
        if width_scale not in WIDTH_SCALES or isinstance(width_scale, bool):
            raise InvalidInputError(
                f"width_scale must be one of {', '.join(map(str, WIDTH_SCALES))}, got "
                f"{width_scale!r}; 8 (embeddings 24/48/96) suits a CPU"
            )
        self.vocab_size = check_number("vocab_size", vocab_size, low=2, high=1_000_000)
        self.context = check_number("context", context, low=1, high=1 << 16)
        self.width_scale = width_scale
        self.seed = check_number("seed", seed, low=0, high=2**63 - 1)
        self.max_embed = MAX_EMBED // width_scale
        self.head_size = HEAD_SIZE // width_scale
        self.wte = nn.Parameter(torch.zeros(vocab_size, self.max_embed))
        self.wpe = nn.Parameter(torch.zeros(context, self.max_embed))
        self.blocks = nn.ModuleList(
            _SharedBlock(self.max_embed, self.head_size) for _ in range(MAX_LAYERS)
        )
        self.ln_f_weight = nn.Parameter(torch.ones(self.max_embed))
        self.ln_f_bias = nn.Parameter(torch.zeros(self.max_embed))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """GPT-2's initialisation from a generator seeded with ``seed`` (fixed order)."""
        gen = torch.Generator().manual_seed(int(self.seed))
        resid_std = _INIT_STD / math.sqrt(2 * MAX_LAYERS)
        for name, p in self.named_parameters():
            if name.endswith("_bias"):
                p.zero_()
            elif ".ln_" in name or name.startswith("ln_"):
                p.fill_(1.0)
            else:
                std = resid_std if name.endswith(("proj_weight", "out_weight")) else _INIT_STD
                p.copy_(torch.randn(p.shape, generator=gen) * std)

    def spec(self, arch: Sequence[int] | GPTArch | SubnetSpec) -> SubnetSpec:
        """The slice sizes of an architecture (a canonical code, a GPTArch or a SubnetSpec)."""
        if isinstance(arch, SubnetSpec):
            return arch
        if not isinstance(arch, GPTArch):
            arch = GPTSpace().decode(arch)
        return scale_arch(arch, self.width_scale)

    def forward(
        self, tokens: torch.Tensor, arch: Sequence[int] | GPTArch | SubnetSpec
    ) -> torch.Tensor:
        s = self.spec(arch)
        if tokens.ndim != 2 or tokens.dtype != torch.int64:
            raise InvalidInputError(
                f"tokens must be a (batch, time) int64 tensor, got {tuple(tokens.shape)} "
                f"{tokens.dtype}"
            )
        t = tokens.shape[1]
        if not 1 <= t <= self.context:
            raise InvalidInputError(
                f"{t} tokens per sequence do not fit the supernet's context of {self.context}; "
                "pass 1..context tokens"
            )
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.vocab_size):
            raise InvalidInputError(
                f"token ids must be in 0..{self.vocab_size - 1}; encode text with the "
                "supernet's vocabulary"
            )
        e = s.embed
        pos = torch.arange(t, device=tokens.device)
        x = F.embedding(tokens, self.wte[:, :e]) + self.wpe[pos, :e]
        for i in range(s.layers):
            x = self.blocks[i](x, s.heads[i], s.mlp_hidden[i], s.bias)
        x = F.layer_norm(x, (e,), self.ln_f_weight[:e], self.ln_f_bias[:e])
        return F.linear(x, self.wte[:, :e])

    def subnet_params(self, arch: Sequence[int] | GPTArch | SubnetSpec) -> int:
        """Parameters a sub-network uses (its slices; the tied head counted once)."""
        s = self.spec(arch)
        e, hs = s.embed, self.head_size
        n = (self.vocab_size + self.context) * e + 2 * e
        for heads, hidden in zip(s.heads[: s.layers], s.mlp_hidden[: s.layers], strict=True):
            w = heads * hs
            n += 4 * e + 3 * w * e + w * e + 2 * hidden * e
            if s.bias:
                n += 3 * w + e + hidden + e
        return n


__all__ = [
    "WIDTH_SCALES",
    "GPTSupernet",
    "SubnetSpec",
    "largest_arch",
    "scale_arch",
    "smallest_arch",
]
