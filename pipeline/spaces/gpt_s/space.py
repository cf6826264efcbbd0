"""HW-GPT-Bench's GPT-S space: a decoder-only transformer with per-layer MLP ratio and heads.

Decisions: ``embed`` in {192, 384, 768}, ``layers`` in {10, 11, 12}, for each of the ``layers``
blocks ``mlp_ratio[i]`` in {2, 3, 4} and ``heads[i]`` in {4, 8, 12} (head size 64), ``bias`` in
{true, false}: 1,903,784,282,946 networks, too many to enumerate (address them by string).

The canonical string is HW-GPT-Bench's compact JSON, keys in this order and lists of length
``layers`` (blocks beyond ``layers`` do not exist)::

    {"embed":384,"layers":10,"mlp_ratio":[2,3,4,2,3,4,2,3,4,2],"heads":[4,8,12,4,8,12,4,8,12,4],"bias":true}

Inside hilnas an architecture is the contract's tuple of option indices, 27 of them: ``embed``,
``layers``, ``mlp_ratio_0..11``, ``heads_0..11``, ``bias``. The per-layer decisions of blocks
``i >= layers`` are *inactive* (``active_mask``); ``canonical`` sets them to 0 and ``one_hot``
zeroes their rows. Flattened over the real options, that one-hot is exactly the perplexity
surrogate's ``ppl_onehot_80`` encoding.

The workload is part of the configuration (:class:`GPTConfig`): the phase (``prefill``: the
whole prompt of ``seq_len`` tokens; ``decode``: one new token against a key/value cache of
``seq_len`` tokens), the sequence length, vocabulary and context; the batch size is the
contract's ``batch_size``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from hilnas.devices.errors import InvalidInputError, check_number
from hilnas.pipeline.spaces.base import (
    Architecture,
    ArchitectureError,
    SearchSpace,
    SpaceConfig,
    TensorSpec,
    Workload,
)

EMBED_CHOICES: tuple[int, ...] = (192, 384, 768)
LAYER_CHOICES: tuple[int, ...] = (10, 11, 12)
MLP_RATIO_CHOICES: tuple[int, ...] = (2, 3, 4)
HEAD_CHOICES: tuple[int, ...] = (4, 8, 12)
BIAS_CHOICES: tuple[bool, ...] = (True, False)
MAX_LAYERS: int = max(LAYER_CHOICES)
HEAD_SIZE: int = 64
#: Vocabulary HW-GPT-Bench's parameter count uses (its tokenizer's 50,254 ids).
HWGPT_VOCAB_SIZE: int = 50254
#: Number of networks: 3 widths x 2 bias x sum over L of 9**L per-layer combinations.
SPACE_SIZE: int = len(EMBED_CHOICES) * len(BIAS_CHOICES) * sum(9**n for n in LAYER_CHOICES)
PHASES: tuple[str, ...] = ("prefill", "decode")

#: Decision positions in an architecture code.
EMBED, LAYERS = 0, 1
MLP0 = 2
HEADS0 = MLP0 + MAX_LAYERS
BIAS = HEADS0 + MAX_LAYERS
NUM_DECISIONS = BIAS + 1

_KEYS: tuple[str, ...] = ("embed", "layers", "mlp_ratio", "heads", "bias")
EXAMPLE = (
    '{"embed":384,"layers":10,"mlp_ratio":[2,3,4,2,3,4,2,3,4,2],'
    '"heads":[4,8,12,4,8,12,4,8,12,4],"bias":true}'
)
_EXAMPLE = EXAMPLE


@dataclass(frozen=True, slots=True)
class GPTArch:
    """One GPT-S architecture in its natural units (what the canonical JSON says)."""

    embed: int
    layers: int
    mlp_ratio: tuple[int, ...]
    heads: tuple[int, ...]
    bias: bool

    def to_json(self) -> str:
        """The canonical compact JSON string."""
        return json.dumps(
            {
                "embed": self.embed,
                "layers": self.layers,
                "mlp_ratio": list(self.mlp_ratio),
                "heads": list(self.heads),
                "bias": self.bias,
            },
            separators=(",", ":"),
        )


def count_params_hwgpt(arch: GPTArch) -> int:
    """Parameter count as HW-GPT-Bench's API reports it (the ``params`` column of its tables).

    50,254-token embedding and a separate (untied) LM head without bias, two LayerNorms per
    block and a final one (weight and bias), qkv and output projections of width
    ``64 * heads[i]``, the MLP's two projections, and the linear layers' biases if ``bias``.
    This is *not* the size of hilnas's own model (tied head, learned positions): see
    :func:`count_params`.
    """
    e = arch.embed
    n = 2 * HWGPT_VOCAB_SIZE * e + 2 * e
    for ratio, heads in zip(arch.mlp_ratio, arch.heads, strict=True):
        width = HEAD_SIZE * heads
        n += e * 3 * width + width * e + 2 * e * ratio * e + 4 * e
        if arch.bias:
            n += 3 * width + e + ratio * e + e
    return n


@dataclass(frozen=True, slots=True)
class GPTConfig(SpaceConfig):
    """What surrounds an architecture and what one measured pass computes.

    ``vocab_size`` and ``context_length`` size the network (GPT-2's by default). ``phase`` and
    ``seq_len`` are the workload: ``prefill`` runs the whole prompt of ``seq_len`` tokens per
    sequence (and returns the key/value cache); ``decode`` runs one new token per sequence
    against a cache of ``seq_len`` earlier tokens (the time per generated token).
    ``all_logits`` makes a prefill return the logits of every position (as HW-GPT-Bench
    measured) instead of the last one (what a generator needs). The batch size is not here: it
    is the contract's ``batch_size``.
    """

    vocab_size: int = 50257
    context_length: int = 1024
    phase: str = "prefill"
    seq_len: int = 128
    all_logits: bool = False

    def __post_init__(self) -> None:
        check_number("vocab_size", self.vocab_size, low=2, high=1_000_000)
        check_number("context_length", self.context_length, low=1, high=1 << 20)
        if self.phase not in PHASES:
            raise InvalidInputError(
                f"unknown workload phase {self.phase!r}; use one of {', '.join(PHASES)}"
            )
        most = self.context_length - (1 if self.phase == "decode" else 0)
        fix = (
            f"the model's context is {self.context_length}, so a {self.phase} takes a seq_len "
            f"from 1 to {most}"
            if most >= 1
            else "raise context_length"
        )
        check_number("seq_len", self.seq_len, low=1, high=max(most, 0), fix=fix)
        if not isinstance(self.all_logits, bool):
            raise InvalidInputError(f"all_logits must be true or false, got {self.all_logits!r}")

    @property
    def new_tokens(self) -> int:
        """Tokens per sequence the pass computes (``seq_len`` for prefill, 1 for decode)."""
        return self.seq_len if self.phase == "prefill" else 1

    @property
    def past_len(self) -> int:
        """Length of the key/value cache the pass reads (0 for prefill)."""
        return 0 if self.phase == "prefill" else self.seq_len

    @property
    def logit_positions(self) -> int:
        return self.seq_len if self.phase == "prefill" and self.all_logits else 1

    def key(self) -> str:
        """A short stable string, e.g. ``gpt-v50257-ctx1024-prefill-s128``."""
        key = f"gpt-v{self.vocab_size}-ctx{self.context_length}-{self.phase}-s{self.seq_len}"
        return key + ("-all" if self.phase == "prefill" and self.all_logits else "")


#: The pass behind HW-GPT-Bench's measurements and surrogates: 8 sequences x 1,024 tokens,
#: logits at every position, no cache (a prefill), with batch size :data:`SOURCE_BATCH`.
SOURCE_CONFIG = GPTConfig(phase="prefill", seq_len=1024, all_logits=True)
SOURCE_BATCH = 8


def count_params(arch: GPTArch, config: GPTConfig | None = None) -> int:
    """Parameters of hilnas's decoder (``build_model``): tied head counted once."""
    cfg = config or GPTConfig()
    e = arch.embed
    n = cfg.vocab_size * e + cfg.context_length * e + 2 * e
    for ratio, heads in zip(arch.mlp_ratio, arch.heads, strict=True):
        width = HEAD_SIZE * heads
        n += 4 * e + e * 3 * width + width * e + 2 * e * ratio * e
        if arch.bias:
            n += 3 * width + e + ratio * e + e
    return n


def count_macs(arch: GPTArch, config: GPTConfig | None = None, batch_size: int = 1) -> int:
    """Multiply-accumulates of one pass of hilnas's decoder under a configuration's workload.

    Per new token: the linear layers of every block, attention scores and the weighted sum over
    the ``past + position`` keys it sees (causal), and the tied LM head for the positions that
    produce logits. LayerNorm, softmax and GELU are left out (linear in the width, small next
    to the matrix products).
    """
    cfg = config or GPTConfig()
    new, past, e = cfg.new_tokens, cfg.past_len, arch.embed
    keys = sum(past + t + 1 for t in range(new))  # keys seen, summed over the new tokens
    total = 0
    for ratio, heads in zip(arch.mlp_ratio, arch.heads, strict=True):
        width = HEAD_SIZE * heads
        total += new * (e * 3 * width + width * e + 2 * e * ratio * e)
        total += 2 * keys * width
    total += cfg.logit_positions * e * cfg.vocab_size
    return batch_size * total


def kv_cache_bytes(arch: GPTArch, config: GPTConfig | None = None, batch_size: int = 1) -> int:
    """Bytes of the float32 key/value cache the pass returns (``past + new`` positions)."""
    cfg = config or GPTConfig()
    positions = cfg.past_len + cfg.new_tokens
    return batch_size * sum(2 * h * HEAD_SIZE * positions * 4 for h in arch.heads)


class GPTSpace(SearchSpace):
    """The GPT-S space of HW-GPT-Bench (see the module docstring for the code layout)."""

    name = "gpt_s"
    enumerable = False
    conditional = True
    example = EXAMPLE

    # ----- structure -------------------------------------------------------------------
    @property
    def decisions(self) -> tuple[str, ...]:
        return (
            "embed",
            "layers",
            *(f"mlp_ratio_{i}" for i in range(MAX_LAYERS)),
            *(f"heads_{i}" for i in range(MAX_LAYERS)),
            "bias",
        )

    @property
    def options(self) -> tuple[tuple[str, ...], ...]:
        return (
            tuple(str(v) for v in EMBED_CHOICES),
            tuple(str(v) for v in LAYER_CHOICES),
            *((tuple(str(v) for v in MLP_RATIO_CHOICES),) * MAX_LAYERS),
            *((tuple(str(v) for v in HEAD_CHOICES),) * MAX_LAYERS),
            ("true", "false"),
        )

    def size(self) -> int:
        return SPACE_SIZE

    def active_mask(self, arch: Sequence[int]) -> np.ndarray:
        """Boolean ``(27,)``: which decisions exist in this architecture (blocks < layers)."""
        code = self.validate(arch)
        return _active(code[LAYERS])

    # ----- codes and natural units ------------------------------------------------------------
    def decode(self, arch: Sequence[int]) -> GPTArch:
        """The architecture in natural units (inactive decisions are ignored)."""
        c = self.validate(arch)
        n = LAYER_CHOICES[c[LAYERS]]
        return GPTArch(
            embed=EMBED_CHOICES[c[EMBED]],
            layers=n,
            mlp_ratio=tuple(MLP_RATIO_CHOICES[c[MLP0 + i]] for i in range(n)),
            heads=tuple(HEAD_CHOICES[c[HEADS0 + i]] for i in range(n)),
            bias=BIAS_CHOICES[c[BIAS]],
        )

    def encode(self, arch: GPTArch | dict[str, Any]) -> Architecture:
        """The canonical code of an architecture given in natural units (a GPTArch or a dict)."""
        if isinstance(arch, GPTArch):
            arch = {k: getattr(arch, k) for k in _KEYS}
        if not isinstance(arch, dict):
            raise ArchitectureError(
                f"gpt_s: an architecture is a JSON object like {_EXAMPLE}, got {arch!r}"
            )
        missing = [k for k in _KEYS if k not in arch]
        unknown = [k for k in arch if k not in _KEYS]
        if unknown or missing:
            what = []
            if unknown:
                what.append(f"unknown keys {', '.join(map(repr, unknown))}")
            if missing:
                what.append(f"missing keys {', '.join(map(repr, missing))}")
            raise ArchitectureError(
                f"gpt_s: {' and '.join(what)}; an architecture has exactly the keys "
                f"{', '.join(_KEYS)}, e.g. {_EXAMPLE}"
            )
        embed = _choice("embed", arch["embed"], EMBED_CHOICES)
        layers = _choice("layers", arch["layers"], LAYER_CHOICES)
        n = LAYER_CHOICES[layers]
        code = [0] * NUM_DECISIONS
        code[EMBED], code[LAYERS] = embed, layers
        for key, start, choices in (
            ("mlp_ratio", MLP0, MLP_RATIO_CHOICES),
            ("heads", HEADS0, HEAD_CHOICES),
        ):
            values = arch[key]
            if not isinstance(values, (list, tuple)):
                raise ArchitectureError(
                    f"gpt_s: {key} must be a list of {n} integers (one per block), got {values!r}"
                )
            if len(values) != n:
                raise ArchitectureError(
                    f"gpt_s: {key} has {len(values)} entries but layers is {n}; give exactly one "
                    "per block (blocks beyond layers do not exist)"
                )
            for i, v in enumerate(values):
                code[start + i] = _choice(f"{key}[{i}]", v, choices)
        bias = arch["bias"]
        if not isinstance(bias, bool):
            raise ArchitectureError(f"gpt_s: bias must be true or false, got {bias!r}")
        code[BIAS] = BIAS_CHOICES.index(bias)
        return tuple(code)

    def parse(self, text: str) -> Architecture:
        if not isinstance(text, str):
            raise ArchitectureError(
                f"gpt_s: expected an architecture JSON string, got {type(text).__name__}"
            )
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArchitectureError(
                f"gpt_s: {text[:80]!r} is not JSON ({exc.msg}); write an architecture like "
                f"{_EXAMPLE}"
            ) from None
        return self.encode(obj)

    def format(self, arch: Sequence[int]) -> str:
        return self.decode(arch).to_json()

    def reference_architectures(self) -> list[Architecture]:
        """Ten measured architectures spread over model size.

        The 0th, 11th, ..., 100th percentile rows by parameter count (``params_m``) of
        HW-GPT-Bench's 10,000 measured architectures (``load_measured()``): they have real
        latencies and energies on the 10 reference devices, and no device's measurements enter
        the choice (it is decided by size alone, before any device is looked at).
        """
        return [tuple(int(v) for v in c) for c in _reference_codes()]

    def params_hwgpt(self, arch: Sequence[int]) -> int:
        """HW-GPT-Bench's parameter count of an architecture (see :func:`count_params_hwgpt`)."""
        return count_params_hwgpt(self.decode(arch))

    # ----- configuration and workload ---------------------------------------------------------
    def default_model_config(self) -> GPTConfig:
        """GPT-2's vocabulary and context; a prefill of 128 tokens."""
        return GPTConfig()

    def small_model_config(self) -> GPTConfig:
        """A 64-token vocabulary and a 16-token context: a subnet runs in milliseconds."""
        return GPTConfig(vocab_size=64, context_length=16, seq_len=6)

    def workload(
        self, arch: Sequence[int], config: GPTConfig | None = None, batch_size: int = 1
    ) -> Workload:
        """int64 ``input_ids`` (and, for decode, the cache ``past_key_i``/``past_value_i``);
        ``logits`` and the updated cache ``present_key_i``/``present_value_i``."""
        cfg = config or self.default_model_config()
        self.check_config(cfg)
        b = check_number("batch_size", batch_size, low=1, high=65_536)
        a = self.decode(arch)
        inputs = [TensorSpec("input_ids", (b, cfg.new_tokens), "int64")]
        outputs = [TensorSpec("logits", (b, cfg.logit_positions, cfg.vocab_size))]
        for i, h in enumerate(a.heads):
            for kind in ("key", "value"):
                if cfg.phase == "decode":
                    inputs.append(TensorSpec(f"past_{kind}_{i}", (b, h, cfg.past_len, HEAD_SIZE)))
                outputs.append(
                    TensorSpec(
                        f"present_{kind}_{i}", (b, h, cfg.past_len + cfg.new_tokens, HEAD_SIZE)
                    )
                )
        return Workload(inputs=tuple(inputs), outputs=tuple(outputs))

    # ----- costs ------------------------------------------------------------------------------
    @property
    def cost_feature_names(self) -> tuple[str, ...]:
        return ("macs_m", "params_m", "hwgpt_params_m", "kv_cache_mb", "layers", "attn_width")

    def cost_features(self, arch: Sequence[int], config: GPTConfig | None = None) -> np.ndarray:
        """For one sequence of the configuration's workload: MACs, parameters of the model
        and as HW-GPT-Bench counts them, cache size, depth and the summed attention width."""
        cfg = config or self.default_model_config()
        a = self.decode(arch)
        return np.array(
            [
                count_macs(a, cfg) / 1e6,
                count_params(a, cfg) / 1e6,
                count_params_hwgpt(a) / 1e6,
                kv_cache_bytes(a, cfg) / 1e6,
                a.layers,
                sum(HEAD_SIZE * h for h in a.heads),
            ],
            dtype=np.float32,
        )

    def flops(self, arch: Sequence[int], config: GPTConfig | None = None) -> float:
        """Multiply-accumulates (millions) of one sequence's pass (see :func:`count_macs`)."""
        return count_macs(self.decode(arch), config or self.default_model_config()) / 1e6

    def params(self, arch: Sequence[int], config: GPTConfig | None = None) -> int:
        """Trainable parameters of ``build_model(arch, config)``."""
        return count_params(self.decode(arch), config)

    # ----- models -------------------------------------------------------------------------
    def build_model(self, arch: Sequence[int], config: GPTConfig | None = None):
        """The decoder wrapped for the configuration's phase (eval mode, deterministic weights).

        ``forward(*inputs)`` takes the workload's inputs in order and returns its outputs in
        order; the bare decoder (``forward(ids, past)``) is its ``.model``.
        """
        from hilnas.pipeline.spaces.gpt_s.model import GPT, PhaseModel

        cfg = config or self.default_model_config()
        self.check_config(cfg)
        return PhaseModel(GPT(self.decode(arch), cfg), cfg).eval()

    def build_onnx(self, arch: Sequence[int], config: GPTConfig, batch_size: int, opset: int):
        """The ONNX graph of ``build_model`` with the workload's static shapes, written directly
        (milliseconds, a few kB: the weights are computed in the graph, bit-identical to the
        torch module's; see :mod:`hilnas.pipeline.spaces.gpt_s.onnx_direct`)."""
        from hilnas.pipeline.spaces.gpt_s.onnx_direct import build_gpt_onnx

        cfg = config or self.default_model_config()
        self.check_config(cfg)
        b = check_number("batch_size", batch_size, low=1, high=65_536)
        return build_gpt_onnx(self.decode(arch), cfg, batch_size=b, opset=opset)

    def build_phase_onnx(
        self, arch: Sequence[int], config: GPTConfig | None = None, *, weights: str = "generated"
    ) -> Any:
        """The ONNX graph of a configuration's phase with dynamic batch and lengths (one file
        serves every batch size and ``seq_len``)."""
        from hilnas.pipeline.spaces.gpt_s.onnx_direct import build_gpt_onnx

        cfg = config or self.default_model_config()
        self.check_config(cfg)
        return build_gpt_onnx(self.decode(arch), cfg, weights=weights, dynamic=True)


def _active(layers_option: int) -> np.ndarray:
    n = LAYER_CHOICES[int(layers_option)]
    mask = np.ones(NUM_DECISIONS, dtype=bool)
    mask[MLP0 + n : HEADS0] = False
    mask[HEADS0 + n : BIAS] = False
    return mask


def _choice(name: str, value: object, choices: tuple[int, ...]) -> int:
    """Option index of an integer value; JSON booleans and floats like 2.5 are refused."""
    if isinstance(value, bool) or not isinstance(value, int) or value not in choices:
        raise ArchitectureError(
            f"gpt_s: {name} must be one of {', '.join(map(str, choices))}, got {value!r}"
        )
    return choices.index(value)


@functools.cache
def _reference_codes() -> tuple[tuple[int, ...], ...]:
    """Computed once per process (every ``get_space`` call makes a new instance, so the cache
    must not be keyed on it); parameter counts do not depend on the model configuration."""
    from hilnas.pipeline.spaces.gpt_s.measured import load_measured

    space = GPTSpace()
    codes = [tuple(int(v) for v in c) for c in load_measured().arch_codes]
    params = space.cost_features_batch(codes)[:, space.cost_feature_names.index("params_m")]
    order = np.argsort(params, kind="stable")
    picks = np.linspace(0, len(codes) - 1, 10).round().astype(int)
    return tuple(codes[int(order[p])] for p in picks)
