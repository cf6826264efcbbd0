"""Train the GPT-S weight-sharing supernet on Shakespeare and use it as a perplexity oracle.

:func:`train_gpt_supernet` trains a :class:`~.supernet.GPTSupernet` on the shipped
character-level Shakespeare corpus (:mod:`.text`) with the sandwich rule (Yu et al.,
"BigNAS", ECCV 2020; Yu and Huang, "Universally Slimmable Networks", ICCV 2019): every step
the same batch goes through the largest network, the smallest one and ``random_subnets``
uniformly sampled ones (``GPTSpace``'s per-decision sampling), and the averaged loss is
back-propagated once. AdamW (betas 0.9/0.95), linear warm-up over the first 10% of the steps, cosine decay to
10% of ``lr``, gradients clipped to norm 1.

:class:`GPTSupernetOracle` answers ``perplexity(codes)``: per architecture, the exponential of
the mean next-character cross-entropy (nats) over a fixed validation set (``val_tokens``
predicted characters in non-overlapping windows from held-out blocks of the text). A uniform
guess scores ``vocab_size``; the number is character-level, on Shakespeare, at
``1 / width_scale`` width, so it ranks architectures but is not comparable to HW-GPT-Bench's
OpenWebText token perplexity. Deterministic: the same weights and codes give the same numbers
in a process with the same torch thread count.

Saved as ``gpt_supernet.safetensors`` (weights and validation windows) and
``gpt_supernet.json`` (settings, vocabulary, description and the SHA-256 of the tensor file);
:meth:`GPTSupernetOracle.load` raises :class:`DataIntegrityError` for anything damaged.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hilnas.devices.errors import (
    DataIntegrityError,
    InvalidInputError,
    NotFoundError,
    check_number,
)
from hilnas.pipeline.spaces.gpt_s.space import EMBED_CHOICES, GPTSpace
from hilnas.pipeline.spaces.gpt_s.supernet import (
    WIDTH_SCALES,
    GPTSupernet,
    largest_arch,
    smallest_arch,
)
from hilnas.pipeline.spaces.gpt_s.surrogates import codes_array
from hilnas.pipeline.spaces.gpt_s.text import (
    CORPUS_NAME,
    CORPUS_SHA256,
    CharVocab,
    load_shakespeare,
)
from torch.nn import functional as F

FORMAT = "hilnas-gpt-supernet"
FORMAT_VERSION = 1
TENSORS_FILE = "gpt_supernet.safetensors"
META_FILE = "gpt_supernet.json"
_VAL_KEY = "data.val_windows"
_EVAL_BATCH = 64

#: ``progress(step, steps, loss)``: called after every optimiser step (1-based ``step``) with
#: the mean sandwich loss of that step (nats per character).
Progress = Callable[[int, int, float], None]


@dataclass(frozen=True)
class GPTTrainSettings:
    """How the supernet is trained; validated on construction (:class:`InvalidInputError`).

    ``width_scale``: widths divided by this (8: embeddings 24/48/96, head size 8); one of
    ``WIDTH_SCALES``. ``context``: characters per training window (and the supernet's
    context). ``steps`` optimiser steps of ``batch_size`` windows; ``lr`` AdamW's peak learning
    rate, ``weight_decay`` its decoupled decay (matrices and embeddings only). Sandwich rule:
    largest + smallest + ``random_subnets`` random sub-networks per step. ``val_tokens``:
    predicted characters in the validation set; ``val_fraction`` and ``block_len`` the block
    split of the corpus; ``seed`` fixes the split, the initialisation and the sampling.
    """

    width_scale: int = 8
    context: int = 64
    steps: int = 150
    batch_size: int = 16
    lr: float = 3e-3
    seed: int = 0
    random_subnets: int = 2
    weight_decay: float = 0.01
    val_tokens: int = 8192
    val_fraction: float = 0.1
    block_len: int = 2048

    def __post_init__(self) -> None:
        if isinstance(self.width_scale, bool) or self.width_scale not in WIDTH_SCALES:
            raise InvalidInputError(
                f"width_scale must be one of {', '.join(map(str, WIDTH_SCALES))}, got "
                f"{self.width_scale!r}; 8 suits a CPU"
            )
        check_number("block_len", self.block_len, low=16, high=1 << 20)
        check_number(
            "context",
            self.context,
            low=2,
            high=min(1024, self.block_len - 1),
            fix=f"pass 2..{min(1024, self.block_len - 1)} (a window must fit a block)",
        )
        check_number("steps", self.steps, low=1, high=10_000_000)
        check_number("batch_size", self.batch_size, low=1, high=65_536)
        check_number("lr", self.lr, low=1e-6, high=1.0, integer=False)
        check_number("seed", self.seed, low=0, high=2**32 - 1)
        check_number("random_subnets", self.random_subnets, low=0, high=64)
        check_number("weight_decay", self.weight_decay, low=0.0, high=1.0, integer=False)
        check_number("val_tokens", self.val_tokens, low=1, high=10_000_000)
        check_number("val_fraction", self.val_fraction, low=0.01, high=0.5, integer=False)


class GPTSupernetOracle:
    """A trained supernet and its fixed validation set: ``perplexity(codes)``."""

    def __init__(
        self,
        supernet: GPTSupernet,
        vocab: CharVocab,
        settings: GPTTrainSettings,
        val_windows: np.ndarray,
        info: dict[str, Any],
    ) -> None:
        self.supernet = supernet.eval()
        self.vocab = vocab
        self.settings = settings
        self.val_windows = np.ascontiguousarray(val_windows, dtype=np.int64)
        self.info = dict(info)
        self._space = GPTSpace()

    # ----- queries -----------------------------------------------------------------------
    def perplexity(self, codes: Sequence[Sequence[int]] | np.ndarray) -> np.ndarray:
        """``(n,)`` float64 validation perplexity (exp of mean cross-entropy in nats) of each
        canonical GPT-S code. Raises ``ArchitectureError`` for a malformed code."""
        arr = codes_array(codes)
        out = np.empty(len(arr), dtype=np.float64)
        for i, code in enumerate(arr):
            out[i] = math.exp(self.cross_entropy(tuple(int(v) for v in code)))
        return out

    @torch.no_grad()
    def cross_entropy(self, code: Sequence[int]) -> float:
        """Mean next-character cross-entropy (nats) of one architecture on the validation set."""
        arch = self._space.decode(code)
        wins = torch.from_numpy(self.val_windows)
        total, count = 0.0, 0
        for start in range(0, len(wins), _EVAL_BATCH):
            w = wins[start : start + _EVAL_BATCH]
            logits = self.supernet(w[:, :-1], arch)
            loss = F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1), reduction="sum"
            )
            total += float(loss)
            count += w[:, 1:].numel()
        return total / count

    def describe(self) -> dict[str, Any]:
        """Corpus, vocabulary size, width scale, context, steps, wall time and the rest of
        the training record (JSON-ready)."""
        s = self.settings
        return {
            **self.info,
            "vocab_size": self.vocab.size,
            "width_scale": s.width_scale,
            "scaled_embed_choices": [e // s.width_scale for e in EMBED_CHOICES],
            "head_size": self.supernet.head_size,
            "context": s.context,
            "steps": s.steps,
            "settings": asdict(s),
            "val_windows": len(self.val_windows),
            "val_predicted_chars": int(self.val_windows[:, 1:].size),
            "supernet_params": sum(p.numel() for p in self.supernet.parameters()),
        }

    # ----- persistence -------------------------------------------------------------------
    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``gpt_supernet.safetensors`` and ``gpt_supernet.json`` into ``directory``
        (created if needed; each file replaced atomically). Returns the directory."""
        from safetensors.torch import save

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tensors = {
            f"model.{k}": v.detach().contiguous() for k, v in self.supernet.state_dict().items()
        }
        tensors[_VAL_KEY] = torch.from_numpy(self.val_windows)
        blob = save(tensors)
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "settings": asdict(self.settings),
            "vocab_size": self.vocab.size,
            "vocab_chars": self.vocab.chars,
            "info": self.info,
            "tensors_sha256": hashlib.sha256(blob).hexdigest(),
        }
        _atomic_write(d / TENSORS_FILE, blob)
        _atomic_write(d / META_FILE, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())
        return d

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> GPTSupernetOracle:
        """Read what :meth:`save` wrote. Raises :class:`NotFoundError` if a file is missing,
        :class:`DataIntegrityError` if the metadata is unreadable, from another format or
        version, or the tensor file does not match its recorded SHA-256 or shapes."""
        from safetensors.torch import load

        d = Path(directory)
        st, js = d / TENSORS_FILE, d / META_FILE
        for f in (st, js):
            if not f.is_file():
                raise NotFoundError(
                    f"{f} is missing; save an oracle there with oracle.save(dir) or train one "
                    "with train_gpt_supernet()"
                )
        fix = "retrain it with train_gpt_supernet() and save it again"
        try:
            meta = json.loads(js.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataIntegrityError(f"{js} is not readable JSON ({exc}); {fix}") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise DataIntegrityError(f"{js} is not a saved GPT supernet oracle; {fix}")
        if meta.get("format_version") != FORMAT_VERSION:
            raise DataIntegrityError(
                f"{js} has format version {meta.get('format_version')!r}, this hilnas reads "
                f"{FORMAT_VERSION}; {fix}"
            )
        blob = st.read_bytes()
        if hashlib.sha256(blob).hexdigest() != meta.get("tensors_sha256"):
            raise DataIntegrityError(
                f"{st} does not match its metadata (sha256 differs): the file is damaged; {fix}"
            )
        try:
            settings = GPTTrainSettings(**meta["settings"])
            vocab = CharVocab(meta["vocab_chars"])
            if vocab.size != meta["vocab_size"]:
                raise ValueError("vocabulary size differs from its characters")
            tensors = load(blob)
            val = tensors.pop(_VAL_KEY).numpy()
            model = GPTSupernet(vocab.size, settings.context, settings.width_scale, settings.seed)
            state = {k.removeprefix("model."): v for k, v in tensors.items()}
            model.load_state_dict(state, strict=True)
            info = dict(meta.get("info", {}))
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise DataIntegrityError(f"{d} holds an inconsistent oracle ({exc}); {fix}") from None
        if val.ndim != 2 or val.shape[1] != settings.context + 1:
            raise DataIntegrityError(f"{st}: validation windows have shape {val.shape}; {fix}")
        return cls(model, vocab, settings, val, info)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class _AdamW:
    """AdamW (Loshchilov and Hutter, "Decoupled Weight Decay Regularization", ICLR 2019), as
    ``torch.optim.AdamW`` computes it. Written out because the first step of ``torch.optim``'s
    optimisers imports ``torch._dynamo`` (about 800 modules, seconds on a loaded machine)."""

    def __init__(
        self,
        groups: list[tuple[list[torch.nn.Parameter], float]],
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-8,
    ) -> None:
        self.groups = groups
        self.betas = betas
        self.eps = eps
        self.t = 0
        self.state = {
            id(p): (torch.zeros_like(p), torch.zeros_like(p)) for ps, _ in groups for p in ps
        }

    def zero_grad(self) -> None:
        for ps, _ in self.groups:
            for p in ps:
                p.grad = None

    @torch.no_grad()
    def step(self, lr: float) -> None:
        self.t += 1
        b1, b2 = self.betas
        bc1, bc2 = 1.0 - b1**self.t, 1.0 - b2**self.t
        for ps, wd in self.groups:
            for p in ps:
                if p.grad is None:
                    continue
                m, v = self.state[id(p)]
                if wd:
                    p.mul_(1.0 - lr * wd)
                m.lerp_(p.grad, 1.0 - b1)
                v.mul_(b2).addcmul_(p.grad, p.grad, value=1.0 - b2)
                denom = (v / bc2).sqrt_().add_(self.eps)
                p.addcdiv_(m, denom, value=-lr / bc1)


def _lr_at(step: int, steps: int, peak: float) -> float:
    """Linear warm-up over 10% of the steps, then cosine decay to 10% of ``peak``."""
    warm = max(1, steps // 10)
    if step < warm:
        return peak * (step + 1) / warm
    frac = (step - warm) / max(1, steps - warm)
    return peak * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * frac)))


def train_gpt_supernet(
    settings: GPTTrainSettings | None = None, progress: Progress | None = None
) -> GPTSupernetOracle:
    """Train a supernet on the shipped Shakespeare corpus with the sandwich rule.

    Deterministic for given settings and torch thread count (the seed fixes the split, the
    initialisation, the batches and the sampled sub-networks). Raises
    :class:`InvalidInputError` for bad settings (at construction of :class:`GPTTrainSettings`).
    """
    s = settings or GPTTrainSettings()
    if not isinstance(s, GPTTrainSettings):
        raise InvalidInputError(
            f"settings must be a GPTTrainSettings, got {type(s).__name__}; build one with "
            "GPTTrainSettings(...)"
        )
    t0 = time.perf_counter()
    vocab, split = load_shakespeare(block_len=s.block_len, val_fraction=s.val_fraction, seed=s.seed)
    model = GPTSupernet(vocab.size, s.context, s.width_scale, s.seed)
    decay = [p for n, p in model.named_parameters() if n.endswith("weight") and "ln_" not in n]
    decay += [model.wte, model.wpe]
    other = [p for p in model.parameters() if all(p is not q for q in decay)]
    opt = _AdamW([(decay, s.weight_decay), (other, 0.0)])
    space = GPTSpace()
    rng = np.random.default_rng(s.seed)
    sizes = space.option_counts
    fixed = [largest_arch(), smallest_arch()]
    n_sub = len(fixed) + s.random_subnets
    losses: list[float] = []
    model.train()
    for step in range(s.steps):
        x, y = split.train_batch(rng, s.batch_size, s.context)
        x, y = torch.from_numpy(x), torch.from_numpy(y).reshape(-1)
        randoms = [
            space.decode(tuple(int(rng.integers(k)) for k in sizes))
            for _ in range(s.random_subnets)
        ]
        opt.zero_grad()
        step_loss = 0.0
        for arch in (*fixed, *randoms):
            logits = model(x, arch)
            loss = F.cross_entropy(logits.reshape(-1, vocab.size), y)
            (loss / n_sub).backward()
            step_loss += float(loss.detach()) / n_sub
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step(_lr_at(step, s.steps, s.lr))
        losses.append(step_loss)
        if progress is not None:
            progress(step + 1, s.steps, step_loss)
    train_s = time.perf_counter() - t0
    tail = losses[-max(1, len(losses) // 10) :]
    info = {
        "corpus": CORPUS_NAME,
        "corpus_sha256": CORPUS_SHA256,
        "corpus_source": "shakespeare 0.6 (Open Shakespeare, Open Knowledge Foundation), "
        "Project Gutenberg texts: Hamlet, Macbeth, King Lear, Othello, Romeo and Juliet, "
        "The Tempest",
        "level": "character",
        "train_chars": split.train_chars,
        "val_chars": split.val_chars,
        "sandwich": f"largest + smallest + {s.random_subnets} random per step",
        "wall_s": round(train_s, 3),
        "torch_threads": torch.get_num_threads(),
        "first_loss": round(losses[0], 6),
        "final_train_loss": round(float(np.mean(tail)), 6),
    }
    val = split.val_windows(s.context, s.val_tokens)
    return GPTSupernetOracle(model, vocab, s, val, info)


__all__ = [
    "GPTSupernetOracle",
    "GPTTrainSettings",
    "Progress",
    "train_gpt_supernet",
]
