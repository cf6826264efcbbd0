"""The GPT decoder of a GPT-S architecture in PyTorch, with a key/value cache.

GPT-2 layout: token and learned position embeddings, ``layers`` pre-norm blocks (LayerNorm ->
causal self-attention with the block's own head count and head size 64 -> residual;
LayerNorm -> MLP of width ``mlp_ratio[i] * embed`` with GELU -> residual), a final LayerNorm and
an LM head tied to the token embedding. ``bias`` switches the biases of the attention and MLP
linear layers (LayerNorms always have theirs). The attention width ``64 * heads[i]`` differs
from ``embed`` in general, as in HW-GPT-Bench.

HW-GPT-Bench's own profiled network differed in details (rotary positions, parallel residual,
untied head, 50,254 tokens); hilnas measures this standard decoder. Weights are a fixed hash of
each entry's position (:mod:`.weights`): latency and energy do not depend on them, and the
directly written ONNX graph computes the same ones.

The cache of block ``i`` is a pair ``(key, value)`` of shape ``[batch, heads[i], past, 64]``.
"""

from __future__ import annotations

import math

import torch
from hilnas.pipeline.spaces.gpt_s.space import HEAD_SIZE, GPTArch, GPTConfig
from hilnas.pipeline.spaces.gpt_s.weights import generated_matrix
from torch import nn
from torch.nn import functional as F

KVCache = list[tuple[torch.Tensor, torch.Tensor]]

__all__ = ["GPT", "Block", "CausalSelfAttention", "GPTConfig", "KVCache", "PhaseModel"]


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with ``heads`` heads of size 64."""

    def __init__(self, embed: int, heads: int, bias: bool) -> None:
        super().__init__()
        self.heads = heads
        width = heads * HEAD_SIZE
        self.qkv = nn.Linear(embed, 3 * width, bias=bias)
        self.proj = nn.Linear(width, embed, bias=bias)

    def forward(
        self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        b, t, _ = x.shape
        q, k, v = self.qkv(x).split(self.heads * HEAD_SIZE, dim=2)
        q, k, v = (y.reshape(b, t, self.heads, HEAD_SIZE).transpose(1, 2) for y in (q, k, v))
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(HEAD_SIZE))
        if t > 1:  # one new token may attend to every cached position
            total = k.shape[2]
            q_pos = torch.arange(t, device=x.device).unsqueeze(1) + (total - t)
            k_pos = torch.arange(total, device=x.device).unsqueeze(0)
            att = att.masked_fill(k_pos > q_pos, torch.finfo(att.dtype).min)
        y = torch.softmax(att, dim=-1) @ v
        y = y.transpose(1, 2).reshape(b, t, self.heads * HEAD_SIZE)
        return self.proj(y), (k, v)


class Block(nn.Module):
    """Pre-norm transformer block: attention and MLP, each with a residual connection."""

    def __init__(self, embed: int, heads: int, mlp_ratio: int, bias: bool) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(embed)
        self.attn = CausalSelfAttention(embed, heads, bias)
        self.ln_2 = nn.LayerNorm(embed)
        self.mlp = nn.Sequential(
            nn.Linear(embed, mlp_ratio * embed, bias=bias),
            nn.GELU(),
            nn.Linear(mlp_ratio * embed, embed, bias=bias),
        )

    def forward(
        self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        a, present = self.attn(self.ln_1(x), past)
        x = x + a
        return x + self.mlp(self.ln_2(x)), present


class GPT(nn.Module):
    """A GPT-S decoder. ``forward(ids, past)`` returns logits ``[B, T, vocab]`` and the cache."""

    def __init__(self, arch: GPTArch, config: GPTConfig | None = None) -> None:
        super().__init__()
        self.arch = arch
        self.config = config or GPTConfig()
        e = arch.embed
        self.wte = nn.Embedding(self.config.vocab_size, e)
        self.wpe = nn.Embedding(self.config.context_length, e)
        self.blocks = nn.ModuleList(
            Block(e, h, r, arch.bias) for r, h in zip(arch.mlp_ratio, arch.heads, strict=True)
        )
        self.ln_f = nn.LayerNorm(e)
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        """The deterministic weights of :mod:`.weights` (bit-identical to the ONNX graph's):
        matrices hashed by name in ONNX layout (``nn.Linear`` stores the transpose), LayerNorm
        weights 1, biases 0."""
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif ".ln_" in name or name.startswith("ln_"):
                p.fill_(1.0)
            elif isinstance(self.get_submodule(name.rsplit(".", 1)[0]), nn.Linear):
                out_f, in_f = p.shape
                p.copy_(torch.from_numpy(generated_matrix(name, in_f, out_f)).T)
            else:  # embeddings: (rows, width) as stored
                p.copy_(torch.from_numpy(generated_matrix(name, *p.shape)))

    def num_params(self) -> int:
        """Parameters of this module (the tied head counted once)."""
        return sum(p.numel() for p in self.parameters())

    def forward(
        self, input_ids: torch.Tensor, past: KVCache | None = None
    ) -> tuple[torch.Tensor, KVCache]:
        t = input_ids.shape[1]
        start = 0 if past is None else past[0][0].shape[2]
        pos = torch.arange(t, device=input_ids.device) + start
        x = self.wte(input_ids) + self.wpe(pos)
        presents: KVCache = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, None if past is None else past[i])
            presents.append(kv)
        x = self.ln_f(x)
        return F.linear(x, self.wte.weight), presents


class PhaseModel(nn.Module):
    """The decoder as one phase's network: ``forward(*inputs) -> outputs``, flat, in the order
    of ``GPTSpace.workload`` (``input_ids`` [, ``past_key_0``, ``past_value_0``, ...] ->
    ``logits``, ``present_key_0``, ``present_value_0``, ...)."""

    def __init__(self, model: GPT, config: GPTConfig) -> None:
        super().__init__()
        self.model = model
        self.phase = config.phase
        self.all_logits = config.all_logits

    def forward(
        self, input_ids: torch.Tensor, *flat_past: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        past = None
        if self.phase == "decode":
            past = [(flat_past[2 * i], flat_past[2 * i + 1]) for i in range(len(flat_past) // 2)]
        logits, presents = self.model(input_ids, past)
        if self.phase == "prefill" and not self.all_logits:
            logits = logits[:, -1:, :]
        return (logits, *(t for kv in presents for t in kv))
