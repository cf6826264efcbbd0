"""The search-space contract.

A search space is a fixed list of *decisions*, each with its own finite list of *options*
(decisions may have different numbers of options). An architecture is one option index per
decision, held as a tuple of ints (its *code*). Everything outside a space's own package talks to
it through this interface only, so a new space (OFA MobileNetV3, a transformer) is one new
subpackage that registers itself by name (:func:`hilnas.pipeline.spaces.get_space`).

What a space owns, and what callers may rely on:

- **Decisions and options** (``decisions``, ``options``, ``option_mask``): the mask
  ``(num_decisions, max_options)`` marks the real options of each decision; every sampler,
  encoder, hypernetwork output and baseline must draw only where it is ``True``.
- **Conditional decisions and the canonical form** (``active_mask``, ``canonical``): a
  decision may have no effect given others (OFA: layers beyond a stage's depth). ``canonical``
  sets every inactive decision to option 0, so two codes of the same network have one canonical
  code and one string. ``format`` writes the canonical string of any valid code; ``parse``
  returns canonical codes; ``sample`` returns canonical, distinct networks; ``one_hot`` zeroes
  the rows of inactive decisions. Spaces without conditional decisions (NB201) keep every
  decision active and ``canonical`` is the identity.
- **Strings**: ``parse(format(a)) == canonical(a)`` for every valid ``a``; ``parse`` ignores
  surrounding whitespace and raises :class:`ArchitectureError` (an ``InvalidInputError``)
  naming what is wrong and the fix, also for a string of another registered space.
- **Enumeration** (``enumerable``): only an enumerable space has ``index``/``from_index``/
  ``all_architectures``; the others raise :class:`CapabilityError`. Nothing else may rely on
  enumeration: ``sample`` draws option by option, and ``size()`` counts canonical networks
  (an exact ``int``, possibly huge).
- **Model configuration** (``default_model_config``, ``make_config``, ``check_config``): the
  skeleton around an architecture (widths, classes), a frozen record with a stable ``key()``.
  NB201 uses :class:`ModelConfig`; another space brings its own :class:`SpaceConfig` subclass.
  ``small_model_config`` is one that runs in well under a second on a CPU (tests, CPU
  supernet training).
- **Workload** (``workload(arch, config, batch_size)``): the names, shapes and dtypes of the
  network's inputs and outputs. It can depend on the architecture (OFA: the input resolution is
  a decision). ``Workload.key()`` is the string a measurement key needs besides the space name,
  the canonical string and ``config.key()``; for NB201 it is implied by ``config.key()`` (the
  stored keys do not include it), for OFA by the string (``r<res>``). A caller that wants one
  rule for all spaces can add ``workload.key()`` to keys of spaces other than ``nb201``.
- **Models** (``build_model``, ``build_onnx``): a PyTorch module in eval mode with weights that
  are a deterministic function of the architecture and config; ``build_onnx`` may return the
  ONNX ``ModelProto`` built directly (numerically equivalent to ``build_model``), ``None`` to let
  the exporter trace ``build_model``. Only these need torch/onnx; an agent without them can
  still parse, format and sample.
- **Cost features** (``cost_feature_names``, ``cost_features``): a fixed-length float32 vector
  per architecture, for predictors and proxies; it includes ``macs_m`` (equal to ``flops``) and
  ``params_m`` (the trainable parameters of ``build_model``, in millions), per-stage MACs where
  the space has stages. The network of the given config (by default the full-size one) at the
  architecture's own input is what is counted. They are functions of the discrete code; a
  relaxed (differentiable) version is the hypernetwork's business, e.g. the expectation of a
  per-decision cost table under its option probabilities.
- **Reference architectures** (``reference_architectures``): the architectures whose
  latencies form a device's hardware embedding, any number of them.
- **Supernet** (``supports_supernet``, ``build_supernet``): a weight-sharing module whose
  ``forward(*inputs, arch)`` takes the workload's inputs and ``arch`` as a hard
  ``(num_decisions, max_options)`` one-hot (what ``one_hot`` gives), so a hypernetwork's
  straight-through sample can be passed in directly. Optional: a space without one raises
  :class:`CapabilityError`. NB201: :class:`~hilnas.pipeline.spaces.nb201.supernet.NB201Supernet`; OFA:
  :class:`~hilnas.pipeline.spaces.ofa_mbv3.supernet.OFASupernet`.
- ``describe()`` is the plain-data summary (decisions, options, size, references) that
  ``hilnas space show --json`` prints.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from hilnas.devices.errors import InvalidInputError, PreconditionError

if TYPE_CHECKING:  # pragma: no cover
    import torch

Architecture = tuple[int, ...]


class ArchitectureError(InvalidInputError):
    """An architecture string or code that does not belong to the search space."""


class CapabilityError(PreconditionError):
    """The space does not offer what was asked (an index of a non-enumerable space, a supernet)."""


class SpaceConfig:
    """Base of a space's model configuration: a frozen record with a stable ``key()``."""

    __slots__ = ()

    def key(self) -> str:
        """A short stable string for content addressing and provenance."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class ModelConfig(SpaceConfig):
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
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidInputError(
                    f"ModelConfig.{name} must be a positive integer, got {value!r}; pass one"
                )
        if not isinstance(self.reduction, str) or not self.reduction.isidentifier():
            raise InvalidInputError(
                f"ModelConfig.reduction must be a name, got {self.reduction!r}; e.g. 'residual'"
            )

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


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One input or output of a network: name, static shape and dtype (numpy name)."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    def key(self) -> str:
        return f"{self.name}:{self.dtype}[{'x'.join(str(d) for d in self.shape)}]"


@dataclass(frozen=True, slots=True)
class Workload:
    """What one forward pass consumes and produces (the ONNX graph's inputs and outputs)."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def key(self) -> str:
        """Inputs only: the outputs follow from the network."""
        return ";".join(spec.key() for spec in self.inputs)

    def zeros(self) -> dict[str, np.ndarray]:
        """An all-zero feed for every input (for warm-up runs and tests)."""
        return {s.name: np.zeros(s.shape, dtype=s.dtype) for s in self.inputs}


class SearchSpace(ABC):
    """A discrete architecture search space (see the module docstring for the promises)."""

    #: Registry name, e.g. ``"nb201"``; stored with every measurement.
    name: str = ""
    #: Whether ``index``/``from_index``/``all_architectures`` exist (a small, ordered space).
    enumerable: bool = False
    #: Whether some decisions can be inactive (``active_mask`` overridden); False skips masking.
    conditional: bool = False
    #: A valid architecture string, quoted in error messages.
    example: str = ""

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
    def option_counts(self) -> tuple[int, ...]:
        return tuple(len(o) for o in self.options)

    @property
    def option_mask(self) -> np.ndarray:
        """Boolean ``(num_decisions, max_options)``: which one-hot columns are real options."""
        mask = np.zeros((self.num_decisions, self.max_options), dtype=bool)
        for d, opts in enumerate(self.options):
            mask[d, : len(opts)] = True
        return mask

    def size(self) -> int:
        """Number of distinct networks (canonical architectures) in the space."""
        return int(np.prod([len(o) for o in self.options], dtype=object))

    # ----- conditional decisions --------------------------------------------------------
    def active_mask(self, arch: Sequence[int]) -> np.ndarray:
        """Boolean ``(num_decisions,)``: which decisions affect the network of ``arch``."""
        self.validate(arch)
        return np.ones(self.num_decisions, dtype=bool)

    def canonical(self, arch: Sequence[int]) -> Architecture:
        """``arch`` with every inactive decision set to option 0 (one code per network)."""
        code = self.validate(arch)
        if not self.conditional:
            return code
        active = self.active_mask(code)
        if active.all():
            return code
        return tuple(v if on else 0 for v, on in zip(code, active, strict=True))

    # ----- codes, strings, indices --------------------------------------------------------
    def validate(self, arch: Sequence[int]) -> Architecture:
        """Return ``arch`` as a tuple after checking its length and option ranges."""
        if isinstance(arch, str):
            raise ArchitectureError(
                f"{self.name}: expected an architecture code, got the string {arch!r}; "
                "use parse() for strings"
            )
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
        """Canonical architecture from its string; raises :class:`ArchitectureError`."""

    @abstractmethod
    def format(self, arch: Sequence[int]) -> str:
        """Canonical string of an architecture (inactive decisions are not written)."""

    def _not_enumerable(self, what: str) -> CapabilityError:
        return CapabilityError(
            f"{self.name} is too large to enumerate, so it has no {what}; address its "
            f"architectures by string (e.g. {self.example or 'see hilnas space show'})"
        )

    def index(self, arch: Sequence[int]) -> int:
        """Position of an architecture in the space's canonical order (enumerable spaces)."""
        raise self._not_enumerable("architecture index")

    def from_index(self, index: int) -> Architecture:
        """Architecture at a position of the canonical order; raises ``IndexError``."""
        raise self._not_enumerable("architecture index")

    def index_or_none(self, arch: Sequence[int]) -> int | None:
        """``index(arch)`` in an enumerable space, else None (what a stored row records)."""
        return self.index(arch) if self.enumerable else None

    def coerce(self, value: str | int | Sequence[int]) -> Architecture:
        """Accept a string, an index (enumerable spaces) or a code; return the canonical code."""
        if isinstance(value, str):
            return self.parse(value)
        if isinstance(value, (int, np.integer)):
            return self.from_index(int(value))
        return self.canonical(value)

    def all_architectures(self) -> list[Architecture]:
        """Every architecture in canonical order (only for enumerable spaces)."""
        if not self.enumerable:
            raise self._not_enumerable("list of all architectures")
        return [self.from_index(i) for i in range(self.size())]

    # ----- sampling ---------------------------------------------------------------------
    def sample(
        self, n: int, seed: int | None = 0, exclude: Iterable[Sequence[int]] = ()
    ) -> list[Architecture]:
        """``n`` distinct canonical architectures, deterministic for ``seed``.

        Each decision's option is drawn uniformly among its real options (``option_mask``),
        then the code is made canonical; repeats of a network are drawn again. This is uniform
        over networks for spaces without conditional decisions, and OFA's own sampling rule
        (uniform per decision) for those with them. Architectures in ``exclude`` (any code of
        theirs) are never returned.
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise InvalidInputError(f"n must be an integer >= 0, got {n!r}; pass a count")
        excluded = {self.canonical(a) for a in exclude}
        available = self.size() - len(excluded)
        if n > available:
            raise InvalidInputError(
                f"{self.name}: asked for {n} distinct architectures but only {available} remain; "
                "ask for fewer"
            )
        rng = np.random.default_rng(seed)
        out: list[Architecture] = []
        seen = set(excluded)
        sizes = self.option_counts
        while len(out) < n:
            code = self.canonical(tuple(int(rng.integers(k)) for k in sizes))
            if code not in seen:
                seen.add(code)
                out.append(code)
        return out

    @abstractmethod
    def reference_architectures(self) -> list[Architecture]:
        """The fixed architectures whose latencies form a device's hardware embedding."""

    def reference_strings(self) -> list[str]:
        """``reference_architectures`` as canonical strings (what another tool measures)."""
        return [self.format(a) for a in self.reference_architectures()]

    # ----- encodings ----------------------------------------------------------------------
    @property
    def encoding_shape(self) -> tuple[int, int]:
        return (self.num_decisions, self.max_options)

    def one_hot(self, arch: Sequence[int]) -> np.ndarray:
        """``(num_decisions, max_options)`` float32; rows of inactive decisions are zero."""
        code = self.canonical(arch)
        out = np.zeros(self.encoding_shape, dtype=np.float32)
        out[np.arange(self.num_decisions), code] = 1.0
        if self.conditional:
            out[~self.active_mask(code)] = 0.0
        return out

    def one_hot_batch(self, archs: Sequence[Sequence[int]]) -> np.ndarray:
        """``one_hot`` of each architecture, stacked: ``(n, num_decisions, max_options)``."""
        codes = [self.canonical(a) for a in archs]
        out = np.zeros((len(codes), *self.encoding_shape), dtype=np.float32)
        rows = np.arange(self.num_decisions)
        for i, code in enumerate(codes):
            out[i, rows, code] = 1.0
            if self.conditional:
                out[i, ~self.active_mask(code)] = 0.0
        return out

    # ----- model configuration and workload -------------------------------------------------
    def default_model_config(self) -> SpaceConfig:
        return ModelConfig()

    def small_model_config(self) -> SpaceConfig:
        """A configuration that builds and runs in well under a second on a CPU (for tests)."""
        return self.default_model_config()

    def check_config(self, config: SpaceConfig) -> None:
        """Raise ``InvalidInputError`` for a configuration this space cannot build."""
        want = type(self.default_model_config())
        if not isinstance(config, want):
            raise InvalidInputError(
                f"{self.name} needs a {want.__name__}, got {type(config).__name__}; build it "
                f"with get_space({self.name!r}).make_config(...)"
            )

    def make_config(self, **fields: Any) -> SpaceConfig:
        """The default configuration with ``fields`` replaced (unknown names are an error)."""
        base = self.default_model_config()
        known = [f.name for f in dataclasses.fields(base)]  # type: ignore[arg-type]
        unknown = sorted(set(fields) - set(known))
        if unknown:
            raise InvalidInputError(
                f"{self.name}: unknown model setting(s) {', '.join(unknown)}; "
                f"known: {', '.join(known)}"
            )
        config = dataclasses.replace(base, **fields)  # type: ignore[type-var]
        self.check_config(config)
        return config

    def workload(
        self, arch: Sequence[int], config: SpaceConfig | None = None, batch_size: int = 1
    ) -> Workload:
        """Inputs and outputs of ``arch``'s network (default: one image tensor, logits)."""
        self.validate(arch)
        cfg = config or self.default_model_config()
        if not isinstance(cfg, ModelConfig):  # pragma: no cover - spaces with their own override
            raise NotImplementedError(f"{self.name} must define workload()")
        return Workload(
            inputs=(TensorSpec("input", cfg.input_shape(batch_size)),),
            outputs=(TensorSpec("logits", (batch_size, cfg.num_classes)),),
        )

    # ----- models -------------------------------------------------------------------------
    @abstractmethod
    def build_model(
        self, arch: Sequence[int], config: SpaceConfig | None = None
    ) -> torch.nn.Module:
        """A PyTorch module for one architecture (eval mode, deterministic weights)."""

    def build_onnx(
        self, arch: Sequence[int], config: SpaceConfig, batch_size: int, opset: int
    ) -> Any | None:
        """Optionally build the ONNX ``ModelProto`` directly, much faster than tracing.

        Returning ``None`` (the default) makes the exporter fall back to ``torch.onnx.export``.
        An implementation must produce a graph numerically equivalent to ``build_model``, with
        the inputs and outputs of ``workload``.
        """
        return None

    def flops(self, arch: Sequence[int], config: SpaceConfig | None = None) -> float:
        """Multiply-accumulate count in millions for one input (a cheap proxy)."""
        raise NotImplementedError(f"{self.name} does not count FLOPs")

    # ----- cost features ----------------------------------------------------------------------
    @property
    def cost_feature_names(self) -> tuple[str, ...]:
        """Names of the ``cost_features`` entries, with units (``_m``: millions)."""
        return ()

    def cost_features(self, arch: Sequence[int], config: SpaceConfig | None = None) -> np.ndarray:
        """Float32 ``(len(cost_feature_names),)`` of the full-size network of ``arch``."""
        raise CapabilityError(f"{self.name} defines no cost features; use one_hot encodings")

    def cost_features_batch(
        self, archs: Sequence[Sequence[int]], config: SpaceConfig | None = None
    ) -> np.ndarray:
        """``cost_features`` of each architecture, stacked: ``(n, len(cost_feature_names))``."""
        out = np.zeros((len(archs), len(self.cost_feature_names)), dtype=np.float32)
        for i, a in enumerate(archs):
            out[i] = self.cost_features(a, config)
        return out

    # ----- supernet -----------------------------------------------------------------------------
    @property
    def supports_supernet(self) -> bool:
        return False

    def build_supernet(self, config: SpaceConfig | None = None, seed: int = 0) -> torch.nn.Module:
        """A weight-sharing supernet; ``forward(x, one_hot)`` with a ``one_hot`` of ``arch``."""
        raise CapabilityError(
            f"{self.name} has no weight-sharing supernet yet; use a predictor-only objective"
        )

    # ----- summary ------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """Plain data for ``hilnas space show --json``: decisions, options, size, references."""
        return {
            "name": self.name,
            "enumerable": self.enumerable,
            "size": str(self.size()),
            "decisions": [
                {"name": d, "options": list(o)}
                for d, o in zip(self.decisions, self.options, strict=True)
            ],
            "encoding_shape": list(self.encoding_shape),
            "model_config": self.default_model_config().key(),
            "cost_features": list(self.cost_feature_names),
            "supernet": self.supports_supernet,
            "example": self.example,
            "reference_architectures": self.reference_strings(),
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
