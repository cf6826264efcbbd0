"""The search-space contract.

A search space is a fixed list of *decisions*, each with a finite list of *options*. An
architecture is one option index per decision, held as a tuple of ints. Everything outside a
space's own module talks to it through this interface only (string format, indexing, sampling,
one-hot encoding, model construction), so new spaces (MobileNetV3-style, transformers) plug in
without touching the profiler, the store, the predictors or the search.

Promises every implementation keeps:
- ``parse(format(a)) == a`` for every valid ``a``; ``parse`` raises :class:`ArchitectureError`
  naming what is wrong and what a valid string looks like.
- ``one_hot(a)`` has shape ``(num_decisions, max_options)``; rows of decisions with fewer options
  are zero-padded (``option_mask`` marks the real columns).
- ``sample(n, seed)`` is deterministic for a seed and returns distinct architectures.
- ``build_model`` needs torch; nothing else here does, so an agent without torch can still parse,
  index and format architectures.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from hilnas.devices.errors import InvalidInputError

if TYPE_CHECKING:  # pragma: no cover
    import torch

Architecture = tuple[int, ...]


class ArchitectureError(InvalidInputError):
    """An architecture string or code that does not belong to the search space."""


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """Shape of the network built around an architecture (the skeleton, not the choices).

    ``channels``, ``cells_per_stage`` and ``reduction`` mean what the space says (NB201: C, N
    and the block between stages: ``residual``, the benchmark's, or ``pool``).
    """

    channels: int = 16
    cells_per_stage: int = 5
    input_size: int = 32
    in_channels: int = 3
    num_classes: int = 10
    reduction: str = "residual"

    def __post_init__(self) -> None:
        for name in ("channels", "cells_per_stage", "input_size", "in_channels", "num_classes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ModelConfig.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.reduction, str) or not self.reduction.isidentifier():
            raise ValueError(f"ModelConfig.reduction must be a name, got {self.reduction!r}")

    def input_shape(self, batch_size: int = 1) -> tuple[int, int, int, int]:
        return (batch_size, self.in_channels, self.input_size, self.input_size)

    def key(self) -> str:
        """A short stable string for content addressing and provenance."""
        key = (
            f"C{self.channels}-N{self.cells_per_stage}-in{self.in_channels}x"
            f"{self.input_size}-cls{self.num_classes}"
        )
        # the default block keeps the keys that measurements were stored under
        return key if self.reduction == "residual" else f"{key}-r{self.reduction}"


class SearchSpace(ABC):
    """A discrete architecture search space (see the module docstring for the promises)."""

    #: Registry name, e.g. ``"nb201"``; stored with every measurement.
    name: str = ""

    # ----- structure -------------------------------------------------------------------
    @property
    @abstractmethod
    def decisions(self) -> tuple[str, ...]:
        """Human-readable names of the decisions, in encoding order."""

    @property
    @abstractmethod
    def options(self) -> tuple[tuple[str, ...], ...]:
        """Option names per decision."""

    @property
    def num_decisions(self) -> int:
        return len(self.decisions)

    @property
    def max_options(self) -> int:
        return max(len(o) for o in self.options)

    @property
    def option_mask(self) -> np.ndarray:
        """Boolean ``(num_decisions, max_options)``: which one-hot columns are real options."""
        mask = np.zeros((self.num_decisions, self.max_options), dtype=bool)
        for d, opts in enumerate(self.options):
            mask[d, : len(opts)] = True
        return mask

    def size(self) -> int:
        """Number of architectures in the space."""
        return int(np.prod([len(o) for o in self.options], dtype=object))

    # ----- codes, strings, indices --------------------------------------------------------
    def validate(self, arch: Sequence[int]) -> Architecture:
        """Return ``arch`` as a tuple after checking its length and option ranges."""
        try:
            code = tuple(int(v) for v in arch)
        except (TypeError, ValueError) as exc:
            raise ArchitectureError(
                f"{self.name}: an architecture is a sequence of {self.num_decisions} option "
                f"indices, got {arch!r}"
            ) from exc
        if len(code) != self.num_decisions:
            raise ArchitectureError(
                f"{self.name}: expected {self.num_decisions} decisions, got {len(code)} in {arch!r}"
            )
        for d, (v, opts) in enumerate(zip(code, self.options, strict=False)):
            if not 0 <= v < len(opts):
                raise ArchitectureError(
                    f"{self.name}: decision {self.decisions[d]!r} has options 0..{len(opts) - 1}, "
                    f"got {v}"
                )
        return code

    @abstractmethod
    def parse(self, text: str) -> Architecture:
        """Architecture from its canonical string; raises :class:`ArchitectureError`."""

    @abstractmethod
    def format(self, arch: Sequence[int]) -> str:
        """Canonical string of an architecture."""

    @abstractmethod
    def index(self, arch: Sequence[int]) -> int:
        """Position of an architecture in the space's canonical order."""

    @abstractmethod
    def from_index(self, index: int) -> Architecture:
        """Architecture at a position of the canonical order; raises ``IndexError``."""

    def coerce(self, value: str | int | Sequence[int]) -> Architecture:
        """Accept a string, an index or a code; return the code."""
        if isinstance(value, str):
            return self.parse(value)
        if isinstance(value, (int, np.integer)):
            return self.from_index(int(value))
        return self.validate(value)

    def all_architectures(self) -> list[Architecture]:
        """Every architecture in canonical order (only for enumerable spaces)."""
        return [self.from_index(i) for i in range(self.size())]

    # ----- sampling ---------------------------------------------------------------------
    def sample(
        self, n: int, seed: int | None = 0, exclude: Iterable[Sequence[int]] = ()
    ) -> list[Architecture]:
        """``n`` distinct architectures drawn uniformly, deterministic for ``seed``.

        Architectures in ``exclude`` are never returned.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        excluded = {self.validate(a) for a in exclude}
        available = self.size() - len(excluded)
        if n > available:
            raise ValueError(
                f"{self.name}: asked for {n} distinct architectures but only {available} remain"
            )
        rng = np.random.default_rng(seed)
        out: list[Architecture] = []
        seen = set(excluded)
        sizes = [len(o) for o in self.options]
        while len(out) < n:
            code = tuple(int(rng.integers(k)) for k in sizes)
            if code not in seen:
                seen.add(code)
                out.append(code)
        return out

    @abstractmethod
    def reference_architectures(self) -> list[Architecture]:
        """The fixed architectures whose latencies form a device's hardware embedding."""

    # ----- encodings ----------------------------------------------------------------------
    def one_hot(self, arch: Sequence[int]) -> np.ndarray:
        code = self.validate(arch)
        out = np.zeros((self.num_decisions, self.max_options), dtype=np.float32)
        out[np.arange(self.num_decisions), code] = 1.0
        return out

    def one_hot_batch(self, archs: Sequence[Sequence[int]]) -> np.ndarray:
        codes = np.asarray([self.validate(a) for a in archs], dtype=np.int64).reshape(
            -1, self.num_decisions
        )
        out = np.zeros((len(codes), self.num_decisions, self.max_options), dtype=np.float32)
        rows = np.arange(self.num_decisions)
        for i, code in enumerate(codes):
            out[i, rows, code] = 1.0
        return out

    # ----- models -------------------------------------------------------------------------
    def default_model_config(self) -> ModelConfig:
        return ModelConfig()

    @abstractmethod
    def build_model(
        self, arch: Sequence[int], config: ModelConfig | None = None
    ) -> torch.nn.Module:
        """A PyTorch module for one architecture (eval mode, deterministic weights)."""

    def build_onnx(
        self, arch: Sequence[int], config: ModelConfig, batch_size: int, opset: int
    ) -> Any | None:
        """Optionally build the ONNX ``ModelProto`` directly, much faster than tracing.

        Returning ``None`` (the default) makes the exporter fall back to ``torch.onnx.export``.
        An implementation must produce a graph numerically equivalent to ``build_model``.
        """
        return None

    def flops(self, arch: Sequence[int], config: ModelConfig | None = None) -> float:
        """Multiply-accumulate count in millions for one input (a cheap proxy)."""
        raise NotImplementedError(f"{self.name} does not count FLOPs")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
