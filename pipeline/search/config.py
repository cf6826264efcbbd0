"""What a search is asked for: the objectives, :class:`SearchConfig` with its bounds, and the
search's error classes."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hilnas.devices.errors import (
    DataIntegrityError,
    InvalidInputError,
    NotFoundError,
    check_number,
)
from hilnas.pipeline.objectives import HARDWARE, quality_objective
from hilnas.pipeline.objectives import OBJECTIVES as REGISTRY
from hilnas.pipeline.objectives import parse_objectives as _parse_objectives
from hilnas.pipeline.refdata import MODNAS_TRAIN_DEVICES

#: Objectives a search can minimise (:mod:`hilnas.pipeline.objectives`); ``error`` is top-1
#: error in %.
OBJECTIVES: tuple[str, ...] = (quality_objective("nb201"), *HARDWARE)
HARDWARE_OBJECTIVES: tuple[str, ...] = HARDWARE
OBJECTIVE_ALIASES: dict[str, str] = {
    key: name for name in OBJECTIVES for key in (name, *REGISTRY[name].aliases)
}
MODES: tuple[str, ...] = ("surrogate", "supernet")
#: Bounds of every integer size of a search (:class:`SearchConfig` checks them on
#: construction, so the CLI, TOML configs, the Python API and saved settings share them): far
#: above anything useful on this project's hardware, far below sizes that would exhaust memory
#: or run for days before failing.
INT_BOUNDS: dict[str, tuple[int, int]] = {
    "seed": (0, 2**32 - 1),
    "epochs": (1, 10_000),
    "steps_per_epoch": (1, 100_000),
    "preferences_per_target": (1, 1_024),
    "hidden": (1, 4_096),
    "layers": (1, 8),
    "frequencies": (0, 16),
    "accuracy_queries": (2, 50_000),
    "initial_queries": (1, 50_000),
    "query_rounds": (0, 100),
    "surrogate_members": (1, 64),
    "data_limit": (1, 10_000_000),
    "channels": (1, 128),
    "cells_per_stage": (1, 8),
    "batch_size": (2, 4_096),
    "val_batch_size": (2, 8_192),
    "hyper_every": (1, 1_000),
    "warmup_epochs": (0, 10_000),
    "supernet_epochs": (1, 10_000),
    "probe_archs": (2, 50_000),
    "threads": (1, 1_024),
}
#: The sizes above that may also be ``None`` (a default chosen by the mode).
OPTIONAL_INTS = frozenset(
    {"epochs", "preferences_per_target", "initial_queries", "threads", "data_limit"}
)
#: Front points one request may ask for (each is a hypernetwork pass plus a refinement).
MAX_FRONT_POINTS = 10_000
#: How supernet mode turns the supernet into the error term (see the package docstring).
SUPERNET_ERRORS: tuple[str, ...] = ("surrogate", "direct")
SCALARIZATIONS: tuple[str, ...] = ("tchebycheff", "linear")


class SearchError(InvalidInputError):
    """Bad search input or a run that cannot be used; the message says what to do."""


class SearchNotFoundError(SearchError, NotFoundError):
    """No saved search where one was asked for (none run yet, or a wrong run id or path)."""


class DamagedSearchError(SearchError, DataIntegrityError):
    """A saved search whose files are truncated, malformed or not written by hilnas."""

    def __init__(self, path: Path | str, what: str) -> None:
        super().__init__(
            f"this saved search is damaged or not from hilnas: {path}: {what}; rerun "
            "`hilnas search` (with the settings it was run with) or pick another run with --search"
        )


class SearchMismatchError(SearchError):
    """A saved search whose space or objectives differ from what was asked for."""


def _bound_fix(name: str, low: int, high: int) -> str:
    none = " (or leave it unset for the default)" if name in OPTIONAL_INTS else ""
    return f"set {name} to an integer from {low:,} to {high:,}{none}"


def parse_objectives(value: str | Sequence[str]) -> tuple[str, ...]:
    """``"error,latency"`` or a sequence -> canonical names, in the order given; at least two
    (:func:`hilnas.pipeline.objectives.parse_objectives` for NB201; aliases ``latency``,
    ``energy``, ``err``). Raises :class:`SearchError`."""
    return _parse_objectives(value, "nb201", error=SearchError)


@dataclass(frozen=True)
class SearchConfig:
    """Everything a search run depends on; validated on construction (``SearchError``).

    ``epochs``: ``None`` = 20 epochs of ``steps_per_epoch`` hypernetwork steps (surrogate mode
    and supernet mode's ``surrogate`` error), or 20 passes over the training split (supernet
    mode's ``direct`` error, the first ``warmup_epochs`` training only the supernet).
    ``preferences_per_target``: preference vectors drawn per target and step (``None``:
    surrogate 16, supernet 1: each one costs a supernet forward pass in supernet mode).
    ``accuracy_queries`` (surrogate mode) is the total budget of true accuracies read; the first
    ``initial_queries`` (default half) are random, the rest come in ``query_rounds`` rounds.
    Supernet mode: ``dataset`` (``digits``; ``cifar10`` from ``data_dir``, ``data_limit``
    training images at most); a skeleton of ``channels`` x ``cells_per_stage`` with ``reduction`` blocks
    between stages (``None``: the dataset's default, pooled on digits, see
    :data:`hilnas.pipeline.datasets.DEFAULT_REDUCTION`); ``batch_size`` images per weight
    step; ``weight_sampling`` ``fair`` (strict fairness) or ``uniform`` for the architectures
    not drawn from ``H``; ``supernet_error`` as the package docstring says (``surrogate``:
    ``supernet_epochs`` of supernet training, then surrogate-mode training; ``direct``: a
    hypernetwork step after every ``hyper_every``-th weight step, its error term on
    ``val_batch_size`` validation images, ``probe_archs`` probe architectures, a share
    ``uniform_share`` of the weight steps after the warm-up on random architectures so that the
    operations ``H`` stops choosing keep being trained).
    ``torch_device``: ``auto`` = CUDA when present in supernet mode, else CPU. ``threads``: torch
    CPU threads during the search (``None``: 1 for hypernetwork training from a surrogate,
    torch's default for supernet training).
    """

    mode: str = "surrogate"
    objectives: tuple[str, ...] = ("error", "latency_ms")
    train_targets: tuple[str, ...] = MODNAS_TRAIN_DEVICES
    space: str = "nb201"
    seed: int = 0
    epochs: int | None = None
    steps_per_epoch: int = 100
    sampler: str = "reinmax"
    scalarization: str = "tchebycheff"
    smoothing: float = 0.05
    front_preferences: float = 0.5
    preferences_per_target: int | None = None
    mgda: bool = True
    logit_scale: float | None = 2.0
    logit_scale_final: float | None = 4.0
    hidden: int = 256
    layers: int = 2
    frequencies: int = 4
    lr: float = 2e-3
    # surrogate mode
    accuracy_queries: int = 200
    initial_queries: int | None = None
    query_rounds: int = 5
    accuracy_column: str = "cifar10_test"
    surrogate_members: int = 5
    # supernet mode
    dataset: str = "digits"
    data_dir: str | None = None
    data_limit: int | None = None
    channels: int = 8
    cells_per_stage: int = 1
    reduction: str | None = None
    batch_size: int = 64
    val_batch_size: int = 128
    hyper_every: int = 2
    uniform_share: float = 0.5
    weight_lr: float = 0.05
    warmup_epochs: int = 5
    weight_sampling: str = "fair"
    supernet_error: str = "surrogate"
    supernet_epochs: int = 30
    probe_archs: int = 256
    # execution
    torch_device: str = "auto"
    threads: int | None = None
    predictor_source: str = "auto"

    def __post_init__(self) -> None:
        def fix(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        if self.mode not in MODES:
            raise SearchError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        fix("objectives", parse_objectives(self.objectives))
        if isinstance(self.train_targets, str):
            fix("train_targets", tuple(t for t in self.train_targets.split(",") if t.strip()))
        targets = tuple(str(t).strip() for t in self.train_targets)
        if not targets:
            raise SearchError("train_targets is empty; name at least one device with an embedding")
        if len(set(targets)) != len(targets):
            raise SearchError(f"train_targets repeat a name: {targets}")
        fix("train_targets", targets)
        if self.space != "nb201":
            raise SearchError(
                f"search space {self.space!r} is not supported by the search yet (nb201 only)"
            )
        for name, (low, high) in INT_BOUNDS.items():
            value = getattr(self, name)
            if value is None and name in OPTIONAL_INTS:
                continue
            try:
                fix(
                    name,
                    check_number(name, value, low=low, high=high, fix=_bound_fix(name, low, high)),
                )
            except InvalidInputError as exc:
                raise SearchError(str(exc)) from None
        if self.initial_queries is not None and self.initial_queries > self.accuracy_queries:
            raise SearchError(
                f"initial_queries ({self.initial_queries}) exceeds accuracy_queries "
                f"({self.accuracy_queries})"
            )
        for name in ("logit_scale", "logit_scale_final"):
            value = getattr(self, name)
            if value is not None and not (
                isinstance(value, (int, float))
                and not isinstance(value, bool)
                and math.isfinite(value)
                and 0 < value <= 1000
            ):
                raise SearchError(
                    f"{name} must be a positive number up to 1000 or None, got {value!r}"
                )
        for name in ("front_preferences", "uniform_share"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (isinstance(value, (int, float)) and 0 <= value <= 1):
                raise SearchError(f"{name} must be in [0, 1], got {value!r}")
        for name in ("lr", "weight_lr", "smoothing"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (
                isinstance(value, (int, float)) and math.isfinite(value) and 0 < value <= 10
            ):
                raise SearchError(f"{name} must be a positive number up to 10, got {value!r}")
        for name in ("mode", "sampler", "scalarization", "dataset", "supernet_error"):
            if not isinstance(getattr(self, name), str):
                raise SearchError(f"{name} must be a string, got {getattr(self, name)!r}")
        for name in ("torch_device", "predictor_source", "weight_sampling", "accuracy_column"):
            if not isinstance(getattr(self, name), str):
                raise SearchError(f"{name} must be a string, got {getattr(self, name)!r}")
        if not isinstance(self.mgda, bool):
            raise SearchError(f"mgda must be true or false, got {self.mgda!r}")
        from hilnas.pipeline.refdata import load_nb201

        columns = load_nb201().accuracy_columns
        if self.accuracy_column not in columns:
            raise SearchError(
                f"accuracy_column {self.accuracy_column!r} is not in the NB201 table; choose "
                f"one of {', '.join(columns)}"
            )
        from hilnas.pipeline.spaces.nb201 import REDUCTIONS

        if self.reduction is not None and self.reduction not in REDUCTIONS:
            raise SearchError(
                f"reduction must be {', '.join(REDUCTIONS)} or None (the dataset's default), "
                f"got {self.reduction!r}"
            )
        if self.supernet_error not in SUPERNET_ERRORS:
            raise SearchError(
                f"supernet_error must be one of {', '.join(SUPERNET_ERRORS)}, got {self.supernet_error!r}"
            )
        if self.weight_sampling not in ("fair", "uniform"):
            raise SearchError(
                f"weight_sampling must be fair or uniform, got {self.weight_sampling!r}"
            )
        if self.sampler not in ("reinmax", "gdas"):
            raise SearchError(f"sampler must be reinmax or gdas, got {self.sampler!r}")
        if self.scalarization not in SCALARIZATIONS:
            raise SearchError(
                f"scalarization must be one of {', '.join(SCALARIZATIONS)}, got {self.scalarization!r}"
            )
        if self.dataset not in ("digits", "cifar10"):
            raise SearchError(f"dataset must be digits or cifar10, got {self.dataset!r}")
        if self.mode == "supernet" and self.dataset == "cifar10" and not self.data_dir:
            raise SearchError(
                "CIFAR-10 is read from a local directory: set data_dir to the folder holding "
                "cifar-10-batches-bin (the binary version)"
            )
        if self.torch_device not in ("auto", "cpu", "cuda") and not self.torch_device.startswith(
            "cuda:"
        ):
            raise SearchError(
                f"torch_device must be auto, cpu or cuda[:N], got {self.torch_device!r}"
            )
        if self.predictor_source not in ("auto", "shipped", "home"):
            raise SearchError(
                f"predictor_source must be auto, shipped or home, got {self.predictor_source!r}"
            )

    @property
    def hardware_objectives(self) -> tuple[str, ...]:
        return tuple(o for o in self.objectives if o in HARDWARE_OBJECTIVES)

    @property
    def total_epochs(self) -> int:
        if self.epochs is not None:
            return self.epochs
        return 20

    @property
    def prefs_per_target(self) -> int:
        if self.preferences_per_target is not None:
            return self.preferences_per_target
        return 16 if self.mode == "surrogate" else 1

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise SearchError(f"unknown search settings {sorted(unknown)}")
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**kwargs)


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    return value
