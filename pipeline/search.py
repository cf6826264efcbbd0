"""One search, Pareto fronts for every device: the MetaHypernetwork search (MODNAS).

``run_search(SearchConfig(...))`` trains a :class:`~hilnas.pipeline.hypernet.MetaHypernetwork`
``H(r, h) -> architecture logits`` and saves it with its settings under
``HILNAS_HOME/search/<run-id>/`` (a ``latest`` file names the newest run).
``TrainedSearch.load(path).front(target, points=K)`` then returns, for any target with a hardware
embedding (a training device, a device profiled or imported after the search: zero-shot), the
architectures the hypernetwork picks over a sweep of preferences, with predicted objectives,
non-dominated filtered.

One training step (``docs/method.md``), for every training target ``d``:
1. draw preferences ``r`` (``preferences_per_target`` of them): a flat Dirichlet, half of them
   (``front_preferences``) replaced by preferences aimed at points of ``d``'s predicted front
   (see :class:`_PreferenceSampler`); ``alpha = H(r, h_d)``; sample a hard one-hot
   architecture ``a`` from ``alpha`` (ReinMax or GDAS, straight-through; the logits the sampler
   sees are standardised and scaled, annealed 2 -> 4, so sampling keeps exploring);
2. costs: the error term and, for each hardware objective, the frozen meta-predictor's cost
   ``P(a, h_d)``, each normalised to [0, 1] by its predicted min/max over the whole space for
   that target (the error as the modes say);
3. ``loss_d`` = scalarisation of the costs by ``r`` (``linear``: ``r . c``; ``tchebycheff``,
   the default: a smooth maximum of ``r_m (c_m + eps)`` in log space, which also reaches the
   non-convex parts of a front); ``g_d`` = gradient of ``loss_d`` for the hypernetwork's
   parameters, normalised.
The hypernetwork gradient is the min-norm point of the convex hull of the ``g_d``
(:func:`hilnas.pipeline.mo.min_norm_solver`, multiple gradient descent), applied with Adam.

Reading a front (:meth:`TrainedSearch.front`): the hypernetwork's argmax architecture for each
preference of the sweep and, when the objectives are cheap to predict (surrogate mode), a
greedy refinement of it on the same predicted, scalarised objectives plus the architectures
that refinement evaluated; the non-dominated ones on the predicted objectives are returned.

Two ways to get the error term, the same code path otherwise:

- ``surrogate`` (NB201 benchmarks, seconds on a CPU): a differentiable accuracy model
  (:mod:`hilnas.pipeline.surrogate`) fit on ``accuracy_queries`` architectures whose true
  CIFAR-10 accuracy is read from the reference table. Accuracy does not depend on the device,
  so the queries serve every device. They are chosen in rounds: a random half first, then,
  round by round, the architectures that the current surrogate and the predictors place on the
  predicted fronts of the most training targets (where the search needs accuracy to be right).
- ``supernet`` (real data): a weight-sharing NB201 supernet (:mod:`hilnas.pipeline.supernet`)
  trained on a dataset (digits by default, CIFAR-10 from a local directory). Two ways to use it
  (``supernet_error``):

  - ``surrogate`` (default): the supernet is trained first, alone, for ``supernet_epochs``
    with strict-fairness sampling (each weight step trains, on one batch, K architectures
    that together use every option of every edge once: FairNAS); its top-1 validation error
    is then the oracle that labels the ``accuracy_queries`` architectures (chosen in rounds as
    above) the surrogate is fit on, and training proceeds exactly as in surrogate mode. Fronts
    report the supernet's own validation error of each chosen architecture.
  - ``direct`` (MODNAS as written): the error term is the supernet's cross-entropy with the
    sampled architecture on a validation batch, straight-through to the logits, normalised by
    its range over a probe set of architectures re-measured every epoch (whose fronts also
    aim the preferences); the supernet's weights take an SGD step per training batch with
    architectures sampled from ``H`` (or, for a share ``uniform_share`` of the batches, at
    random, fairly), after ``warmup_epochs`` of random architectures only.

  Measured on digits (``python -m hilnas.pipeline.benchmarks.supernet``: 3 seeds, 13 MODNAS
  training devices plus the local CPU, 15 preferences per device): ``direct`` picks 1-4
  distinct architectures over the 15 preferences (often one for all of them), the likely
  reasons being that the straight-through error gradient of one sampled architecture per
  device and step is noisy next to the predictors' exact latency gradient, and that the
  hypernetwork's own samples get the most weight updates; ``surrogate`` picks about 11, and the
  measured latency of the chosen architectures rises with the weight on the error (Spearman
  0.98 on the 27 reference devices, 0.94 on the local CPU).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from hilnas.devices.errors import (
    DataIntegrityError,
    InvalidInputError,
    NotFoundError,
    check_number,
)
from hilnas.pipeline import mo
from hilnas.pipeline.home import home_dir
from hilnas.pipeline.refdata import MODNAS_TRAIN_DEVICES

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from hilnas.pipeline.predictors import MetaPredictor, TargetEmbedding
    from hilnas.pipeline.store import MeasurementStore

log = logging.getLogger(__name__)

#: Objectives a search can minimise; ``error`` is top-1 error in %.
OBJECTIVES: tuple[str, ...] = ("error", "latency_ms", "energy_mj")
HARDWARE_OBJECTIVES: tuple[str, ...] = ("latency_ms", "energy_mj")
OBJECTIVE_ALIASES: dict[str, str] = {
    "err": "error",
    "error": "error",
    "latency": "latency_ms",
    "latency_ms": "latency_ms",
    "energy": "energy_mj",
    "energy_mj": "energy_mj",
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
#: How supernet mode turns the supernet into the error term (see the module docstring).
SUPERNET_ERRORS: tuple[str, ...] = ("surrogate", "direct")
SCALARIZATIONS: tuple[str, ...] = ("tchebycheff", "linear")
FORMAT = "hilnas.search/1"
SETTINGS_FILE = "settings.json"
HYPERNET_FILE = "hypernet.safetensors"
SURROGATE_FILE = "surrogate.safetensors"
SUPERNET_FILE = "supernet.safetensors"
LATEST = "latest"
#: Validation images on which supernet mode measures its probe architectures.
PROBE_IMAGES = 512
#: Candidate pool for normalisation and query selection: the whole space up to this size.
POOL_LIMIT = 50_000


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


def search_root() -> Path:
    """``HILNAS_HOME/search`` (created)."""
    path = home_dir() / "search"
    path.mkdir(parents=True, exist_ok=True)
    return path


def parse_objectives(value: str | Sequence[str]) -> tuple[str, ...]:
    """``"error,latency"`` or a sequence -> canonical names, in the order given; at least two.

    Aliases: ``latency`` = ``latency_ms``, ``energy`` = ``energy_mj``, ``err`` = ``error``.
    """
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in items:
        key = str(item).strip().lower()
        if key not in OBJECTIVE_ALIASES:
            raise SearchError(
                f"unknown objective {item!r}; choose from error, latency (latency_ms), "
                "energy (energy_mj)"
            )
        name = OBJECTIVE_ALIASES[key]
        if name in out:
            raise SearchError(f"objective {name!r} is given twice in {value!r}")
        out.append(name)
    if len(out) < 2:
        raise SearchError(f"a search needs at least two objectives, got {out or value!r}")
    return tuple(out)


# ----------------------------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------------------------
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
    not drawn from ``H``; ``supernet_error`` as the module docstring says (``surrogate``:
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


@dataclass(frozen=True, slots=True)
class SearchProgress:
    """One progress report: ``stage`` (queries, surrogate, warmup, train, save), ``done`` of
    ``total`` units of that stage, and a short human-readable ``message``."""

    stage: str
    done: int
    total: int
    message: str = ""


ProgressCallback = Callable[[SearchProgress], None]


@dataclass(frozen=True)
class FrontPoint:
    """One architecture of a front: its string, the preference that selected it and the
    predicted objective values (error in %, latency in ms, energy in mJ).

    ``error_source`` says where the error came from: ``surrogate`` (predicted), ``queried``
    (the true value read during the search) or ``supernet`` (the supernet's validation error).
    ``refined``: the architecture came from the greedy refinement of the hypernetwork's choice
    (see :meth:`TrainedSearch.front`), not from the argmax itself. ``preference`` is ``None``
    for an architecture no preference chose: one the refinement evaluated on its way (a
    neighbour of a chosen one) that turned out non-dominated.
    """

    arch: str
    preference: tuple[float, ...] | None
    objectives: dict[str, float]
    index: int | None = None
    error_source: str | None = None
    refined: bool = False


# ----------------------------------------------------------------------------------------------
# helpers shared by training and inference
# ----------------------------------------------------------------------------------------------
def _torch_device(name: str, mode: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if (mode == "supernet" and torch.cuda.is_available()) else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SearchError(f"torch_device {name!r} asked for but no CUDA device is available")
    return name


def _hardware_embeddings(
    name: str, metrics: Sequence[str], store: MeasurementStore | None
) -> dict[str, TargetEmbedding]:
    from hilnas.pipeline.predictors import embedding_for

    return {m: embedding_for(name, m, store) for m in metrics}


def _embedding_vector(embs: Mapping[str, TargetEmbedding], metrics: Sequence[str]) -> np.ndarray:
    return np.concatenate([np.asarray(embs[m].normalized, dtype=np.float32) for m in metrics])


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


def _predictor_fingerprint(model: MetaPredictor) -> str:
    meta = json.dumps(getattr(model, "metadata", {}), sort_keys=True, default=str)
    return hashlib.sha256(meta.encode()).hexdigest()[:16]


def _pool(space, seed: int) -> np.ndarray:
    """Integer codes of the candidate pool: the whole space when small enough."""
    if space.size() <= POOL_LIMIT:
        return np.asarray(space.all_architectures(), dtype=np.int64)
    return np.asarray(space.sample(POOL_LIMIT, seed=seed), dtype=np.int64)


def _onehot(space, codes: np.ndarray) -> np.ndarray:
    out = np.zeros((len(codes), space.num_decisions, space.max_options), dtype=np.float32)
    out[np.arange(len(codes))[:, None], np.arange(space.num_decisions)[None, :], codes] = 1.0
    return out


def _state_dict_bytes(module) -> bytes:
    from safetensors.torch import save

    return save({k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()})


# ----------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------
@dataclass
class _Target:
    name: str
    embeddings: dict[str, Any]
    h: Any  # tensor (embed_dim,)


def _report(
    progress: ProgressCallback | None, stage: str, done: int, total: int, message: str = ""
) -> None:
    if progress is not None:
        progress(SearchProgress(stage, done, total, message))
    log.debug("%s %d/%d %s", stage, done, total, message)


def _select_queries(
    cfg: SearchConfig,
    space,
    pool: np.ndarray,
    pool_hw: np.ndarray,
    progress: ProgressCallback | None,
    oracle: Callable[[list[tuple[int, ...]]], Any] | None = None,
):
    """Query accuracies in rounds and fit the surrogate (see the module docstring).

    ``pool_hw``: ``(targets, N, H)`` predicted hardware costs of the pool. ``oracle``: codes ->
    :class:`~hilnas.pipeline.surrogate.AccuracyQueries` (default: the reference table's
    ``accuracy_column``). Returns the queries and the surrogate fit on all of them.
    """
    import torch
    from hilnas.pipeline.surrogate import AccuracyQueries, fit_accuracy_surrogate, query_accuracy

    budget = cfg.accuracy_queries
    initial = cfg.initial_queries if cfg.initial_queries is not None else max(2, budget // 2)
    rounds = cfg.query_rounds if initial < budget else 0
    rng = np.random.default_rng(cfg.seed)
    chosen = [int(i) for i in rng.choice(len(pool), size=min(initial, len(pool)), replace=False)]
    seen = set(chosen)
    pool_x = torch.from_numpy(_onehot(space, pool))

    known: dict[tuple[int, ...], float] = {}

    def ask(codes: list[tuple[int, ...]]):
        if oracle is None:
            return query_accuracy(space, codes, column=cfg.accuracy_column)
        new = [c for c in codes if c not in known]
        if new:
            known.update(zip(new, oracle(new).error_pct.tolist(), strict=False))
        return AccuracyQueries(tuple(codes), np.array([known[c] for c in codes]), "supernet")

    def fit(indices: list[int], round_no: int):
        q = ask([tuple(int(v) for v in pool[i]) for i in indices])
        model = fit_accuracy_surrogate(
            space, q, seed=cfg.seed + round_no, members=cfg.surrogate_members
        )
        return q, model

    _report(progress, "queries", len(chosen), budget, "random initial design")
    for round_no in range(rounds):
        _, model = fit(chosen, round_no)
        with torch.no_grad():
            err = model(pool_x).numpy().astype(np.float64)
        left = budget - len(chosen)
        take = math.ceil(left / (rounds - round_no))
        counts: dict[int, int] = {}
        for t in range(pool_hw.shape[0]):
            F = np.concatenate([err[:, None], pool_hw[t]], axis=1)
            for i in np.flatnonzero(mo.pareto_mask(F)):
                if int(i) not in seen:
                    counts[int(i)] = counts.get(int(i), 0) + 1
        ranked = sorted(counts, key=lambda i: (-counts[i], err[i]))[:take]
        if len(ranked) < take:  # fronts exhausted: fill with random unseen architectures
            rest = [
                i for i in rng.permutation(len(pool)) if int(i) not in seen and int(i) not in ranked
            ]
            ranked += [int(i) for i in rest[: take - len(ranked)]]
        chosen += ranked
        seen.update(ranked)
        _report(progress, "queries", len(chosen), budget, f"round {round_no + 1}/{rounds}")
    queries, model = fit(chosen, rounds)
    return queries, model


class _HardwareCosts:
    """Raw hardware costs (ms, mJ) ``(B, H)`` of a batch whose row ``i`` is for target ``rows[i]``.

    Targets known by their reference values alone (no further measurements) go through the
    predictor's batched path, one call per network kind (``predict`` with ``(B, 10)`` raw
    embeddings conditions on each distinct target once per call); targets with a few-shot
    support set are predicted one by one. The batched path is checked against ``predict`` with
    the embedding itself on a few architectures; where they disagree, every target goes one
    by one (correct, slower).
    """

    def __init__(self, predictors, targets: Sequence[_Target], metrics: Sequence[str], space):
        import torch

        self.metrics = tuple(metrics)
        self.predictors = predictors
        self.targets = list(targets)
        self.groups: dict[str, list[tuple[str | None, list[int]]]] = {}
        probe = torch.from_numpy(
            _onehot(space, np.asarray(space.sample(8, seed=1), dtype=np.int64))
        )
        for m in metrics:
            embs = [t.embeddings[m] for t in targets]
            batched: dict[str, list[int]] = {}
            single: list[int] = []
            for i, e in enumerate(embs):
                if len(e.support_values) == 0 and getattr(e, "network", None) is not None:
                    batched.setdefault(e.network, []).append(i)
                else:
                    single.append(i)
            groups = [(net, idx) for net, idx in batched.items()] + [(None, [i]) for i in single]
            if not self._agrees(predictors[m], embs, groups, probe):
                log.info("%s costs per target through predict()", m)
                groups = [(None, [i]) for i in range(len(embs))]
            self.groups[m] = groups
        self.raw = {
            m: torch.stack(
                [torch.as_tensor(t.embeddings[m].raw, dtype=torch.float64) for t in targets]
            )
            for m in metrics
        }

    @staticmethod
    def _agrees(model, embs, groups, probe) -> bool:
        import torch

        with torch.no_grad():
            for net, idx in groups:
                if net is None:
                    continue
                for i in idx:
                    raw = torch.as_tensor(embs[i].raw, dtype=torch.float64).expand(len(probe), -1)
                    got = model.predict(probe, raw, network=net)
                    want = model.predict(probe, embs[i])
                    if not torch.allclose(got, want, rtol=1e-5, atol=1e-7):
                        return False
        return True

    def to(self, device) -> _HardwareCosts:
        self.raw = {m: r.to(device) for m, r in self.raw.items()}
        return self

    def __call__(self, arch, rows):
        import torch

        cols = []
        for m in self.metrics:
            model = self.predictors[m]
            out = torch.zeros(arch.shape[0], dtype=arch.dtype, device=arch.device)
            for net, idx in self.groups[m]:
                sel = (
                    torch.isin(rows, torch.as_tensor(idx, device=rows.device)).nonzero().squeeze(1)
                )
                if len(sel) == 0:
                    continue
                if net is None:
                    vals = model.predict(arch[sel], self.targets[idx[0]].embeddings[m])
                else:
                    vals = model.predict(arch[sel], self.raw[m][rows[sel]], network=net)
                out = out.index_put((sel,), vals.to(arch.dtype))
            cols.append(out)
        return torch.stack(cols, dim=-1)


class _Normalizer:
    """Per-target, per-objective monotone piecewise-linear maps of raw costs onto [0, 1]; as
    built by :meth:`minmax`, the line through the (predicted) min and max over the space."""

    def __init__(self, knots_x, knots_y):
        self.x, self.y = knots_x, knots_y  # (T, M, L) each, x non-decreasing along L

    @classmethod
    def minmax(cls, lo: np.ndarray, hi: np.ndarray) -> _Normalizer:
        import torch

        x = np.stack([lo, np.maximum(hi, lo + 1e-9)], axis=-1)
        y = np.broadcast_to(np.array([0.0, 1.0]), x.shape)
        return cls(
            torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y.copy(), dtype=torch.float32)
        )

    def to(self, device) -> _Normalizer:
        return _Normalizer(self.x.to(device), self.y.to(device))

    def __call__(self, raw, rows):
        """``raw`` ``(B, M)`` for targets ``rows`` ``(B,)`` -> ``(B, M)`` normalised."""
        import torch

        x, y = self.x[rows], self.y[rows]  # (B, M, L)
        v = raw.unsqueeze(-1)  # (B, M, 1)
        L = x.shape[-1]
        hi_idx = torch.searchsorted(x.detach().contiguous(), v.detach().contiguous()).clamp(
            1, L - 1
        )
        lo_idx = hi_idx - 1
        x0, x1 = x.gather(-1, lo_idx), x.gather(-1, hi_idx)
        y0, y1 = y.gather(-1, lo_idx), y.gather(-1, hi_idx)
        t = (v - x0) / (x1 - x0).clamp_min(1e-12)
        out = y0 + t * (y1 - y0)
        return out.squeeze(-1)


def _costs(cfg, hw_costs, normalizer, rows, arch, error_fn):
    """Normalised costs ``(B, M)`` in the order of ``cfg.objectives``."""
    import torch

    hw = hw_costs(arch, rows)
    cols, k = [], 0
    for o in cfg.objectives:
        if o == "error":
            cols.append(error_fn(arch))
        else:
            cols.append(hw[:, k])
            k += 1
    return normalizer(torch.stack(cols, dim=-1), rows)


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


def _hypernet_step(
    cfg, hyper, opt, sampler, hw_costs, normalizer, targets, error_fn, progress_frac, gen, prefs
):
    """One MGDA step of the hypernetwork over all targets; returns the mean scalarised loss.

    All targets' preferences go through the hypernetwork, the sampler and the cost models as
    one batch. Each target's loss depends only on its own rows, so one backward pass gives every
    target's gradient at its logits; a vectorised vector-Jacobian product of the hypernetwork per
    target (``torch.func``) turns those into per-target parameter gradients. Each is normalised,
    then the min-norm solver combines them.
    """
    import torch
    from torch.func import functional_call, vjp, vmap

    names = [n for n, p in hyper.named_parameters() if p.requires_grad]
    params = {n: p.detach() for n, p in hyper.named_parameters() if p.requires_grad}
    T, P, M = len(targets), cfg.prefs_per_target, len(cfg.objectives)
    device = next(hyper.parameters()).device
    rows = torch.arange(T, device=device).repeat_interleave(P)
    r = prefs.sample(rows.cpu()).to(device)
    h = torch.stack([t.h for t in targets]).to(device)[rows]
    logits = hyper(r, h)
    arch = sampler(
        _sampling_logits(cfg, logits, progress_frac), progress=progress_frac, generator=gen
    )
    costs = _costs(cfg, hw_costs, normalizer, rows, arch, error_fn)
    losses = scalarize(r, costs, cfg.scalarization, cfg.smoothing).view(T, P).mean(1)
    (g_logits,) = torch.autograd.grad(losses.sum(), logits)

    def target_grad(r_t, h_t, g_t):
        _, pull = vjp(lambda p: functional_call(hyper, p, (r_t, h_t)), params)
        return pull(g_t)[0]

    per_target = vmap(target_grad)(
        r.view(T, P, M), h.view(T, P, -1), g_logits.view(T, P, *g_logits.shape[1:])
    )
    G = torch.cat([per_target[n].reshape(T, -1) for n in names], dim=1)
    gram = G @ G.T
    norms = gram.diagonal().clamp_min(1e-24).sqrt()
    if cfg.mgda and T > 1:
        # the min-norm weights of the normalised gradients depend on them only through their
        # inner products: hand the solver a (T, T) factor of the normalised Gram matrix
        gamma = mo.min_norm_solver(_gram_factor(gram / (norms[:, None] * norms[None, :])))
        weights = gamma.to(G.dtype) / norms
    else:
        weights = 1.0 / (T * norms)
    direction = weights @ G
    offset = 0
    for name, p in hyper.named_parameters():
        if name in params:
            n = p.numel()
            p.grad = direction[offset : offset + n].view_as(p).clone()
            offset += n
    opt.step()
    opt.zero_grad(set_to_none=True)
    return float(losses.detach().mean())


def _sampling_logits(cfg, logits, progress: float):
    """The logits the sampler sees during training.

    With ``logit_scale`` set, each decision's logits are standardised (zero mean, unit spread)
    and multiplied by a scale annealed geometrically from ``logit_scale`` to
    ``logit_scale_final``: the sampling distribution keeps a bounded sharpness, so it keeps
    exploring and the straight-through gradient (which vanishes as a softmax saturates) stays
    alive; the argmax, what a trained hypernetwork is read by, is unchanged.
    """
    if cfg.logit_scale is None:
        return logits
    final = cfg.logit_scale_final if cfg.logit_scale_final is not None else cfg.logit_scale
    scale = cfg.logit_scale * (final / cfg.logit_scale) ** min(max(progress, 0.0), 1.0)
    centred = logits - logits.mean(-1, keepdim=True)
    spread = centred.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt()
    return scale * centred / spread


def _gram_factor(gram):
    """An ``(n, n)`` matrix ``L`` with ``L L^T = gram`` (eigendecomposition, PSD-safe)."""
    import torch

    vals, vecs = torch.linalg.eigh(gram.double())
    return vecs * vals.clamp_min(0.0).sqrt()


def run_search(
    cfg: SearchConfig,
    *,
    store: MeasurementStore | None = None,
    progress: ProgressCallback | None = None,
) -> Path:
    """Train a MetaHypernetwork per ``cfg`` and save it; returns the run directory.

    The run is written to a temporary directory and renamed into place when complete, so an
    interrupted search leaves no half-written run and never touches existing ones.
    """
    import torch
    from hilnas.pipeline.hypernet import MetaHypernetwork, make_sampler
    from hilnas.pipeline.predictors import load_meta_predictor
    from hilnas.pipeline.spaces import get_space

    t_start = time.perf_counter()
    started = datetime.now(timezone.utc)
    space = get_space(cfg.space)
    device = _torch_device(cfg.torch_device, cfg.mode)
    metrics = cfg.hardware_objectives

    # the targets and their embeddings (fails early and clearly for a target without one)
    targets: list[_Target] = []
    problems: list[str] = []
    for name in cfg.train_targets:
        try:
            embs = _hardware_embeddings(name, metrics, store)
        except (LookupError, ValueError) as exc:
            problems.append(f"{name}: {exc}")
            continue
        h = torch.as_tensor(_embedding_vector(embs, metrics))
        targets.append(_Target(name, embs, h))
    if problems:
        raise SearchError(
            "cannot train on these targets (each needs a "
            + " and ".join(metrics)
            + " embedding):\n  "
            + "\n  ".join(problems)
        )

    old_threads = torch.get_num_threads()
    # (surrogate mode: see below; supernet training: torch's default unless told)
    threads = cfg.threads or (1 if cfg.mode == "surrogate" else None)
    if threads:
        torch.set_num_threads(threads)
    rng_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(cfg.seed)
        predictors = {m: load_meta_predictor(m, source=cfg.predictor_source) for m in metrics}
        for p in predictors.values():
            p.eval()
            for prm in p.parameters():
                prm.requires_grad_(False)

        # predicted hardware costs over the pool: normalisation and query selection
        pool = _pool(space, cfg.seed)
        pool_hw = np.zeros((len(targets), len(pool), len(metrics)))
        for ti, t in enumerate(targets):
            for mi, m in enumerate(metrics):
                pool_hw[ti, :, mi] = predictors[m].predict_codes(pool, t.embeddings[m])

        extra: dict[str, Any] = {}
        surrogate = supernet = data = error_fn = fronts = oracle = None
        hw_cols = [j for j, o in enumerate(cfg.objectives) if o != "error"]  # metrics' order
        direct = (
            cfg.mode == "supernet" and cfg.supernet_error == "direct" and "error" in cfg.objectives
        )
        if cfg.mode == "supernet" and "error" in cfg.objectives:
            from hilnas.pipeline.datasets import load_dataset
            from hilnas.pipeline.supernet import NB201Supernet

            data = load_dataset(cfg.dataset, root=cfg.data_dir, seed=cfg.seed, limit=cfg.data_limit)
            supernet = NB201Supernet(
                data.model_config(cfg.channels, cfg.cells_per_stage, cfg.reduction)
            ).to(device)
            if not direct:
                extra["supernet"] = _train_supernet_fair(cfg, supernet, data, device, progress)
                oracle = _supernet_oracle(supernet, data)
        if not direct:
            pool_values = np.zeros((len(targets), len(pool), len(cfg.objectives)))
            pool_values[:, :, hw_cols] = pool_hw
            if "error" in cfg.objectives:
                queries, surrogate = _select_queries(cfg, space, pool, pool_hw, progress, oracle)
                with torch.no_grad():
                    pool_err = surrogate(torch.from_numpy(_onehot(space, pool))).numpy()
                pool_values[:, :, cfg.objectives.index("error")] = pool_err[None, :]
                error_fn = surrogate
                extra["surrogate"] = {
                    "config": surrogate.config(),
                    "accuracy_column": cfg.accuracy_column
                    if oracle is None
                    else f"supernet:{cfg.dataset}",
                    "queries": len(queries),
                    "queried": [
                        [space.format(a), float(e)]
                        for a, e in zip(queries.archs, queries.error_pct, strict=False)
                    ],
                }
            lo, hi = pool_values.min(1), pool_values.max(1)
            normalizer = _Normalizer.minmax(lo, hi)
            normed = (pool_values - lo[:, None]) / np.maximum(hi - lo, 1e-12)[:, None]
            fronts, sweep = _fronts_and_sweep(normed)
            extra["sweep_preferences"] = np.round(sweep, 6).tolist()
        else:
            lo = np.zeros((len(targets), len(cfg.objectives)))
            hi = np.ones_like(lo)
            lo[:, hw_cols], hi[:, hw_cols] = pool_hw.min(1), pool_hw.max(1)
            # the cross-entropy arrives normalised by its range over the probe architectures
            # (see _train_supernet_mode): identity on [0, 1]
            normalizer = _Normalizer.minmax(lo, hi)

        hyper = MetaHypernetwork(
            num_objectives=len(cfg.objectives),
            embed_dim=10 * len(metrics),
            num_decisions=space.num_decisions,
            num_options=space.max_options,
            hidden=cfg.hidden,
            layers=cfg.layers,
            frequencies=cfg.frequencies,
        )
        sampler = make_sampler(cfg.sampler)
        gen = torch.Generator().manual_seed(cfg.seed)
        prefs = _PreferenceSampler(len(cfg.objectives), fronts, cfg.front_preferences, cfg.seed)
        opt = torch.optim.Adam(hyper.parameters(), lr=cfg.lr)
        hw_costs = _HardwareCosts(predictors, targets, metrics, space)

        if not direct:
            # the surrogate-mode step is many tiny tensor operations: one thread is fastest
            torch.set_num_threads(cfg.threads or 1)
            total = cfg.total_epochs * cfg.steps_per_epoch
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(
                opt, T_max=total, eta_min=cfg.lr * 0.05
            )
            for step in range(total):
                loss = _hypernet_step(
                    cfg,
                    hyper,
                    opt,
                    sampler,
                    hw_costs,
                    normalizer,
                    targets,
                    error_fn,
                    step / total,
                    gen,
                    prefs,
                )
                sched.step()
                if (step + 1) % cfg.steps_per_epoch == 0 or step + 1 == total:
                    _report(progress, "train", step + 1, total, f"loss {loss:.4f}")
        else:
            pick = np.random.default_rng(cfg.seed).choice(
                len(pool), min(cfg.probe_archs, len(pool)), replace=False
            )
            span = np.maximum(hi[:, hw_cols] - lo[:, hw_cols], 1e-12)
            probe_hw = (pool_hw[:, pick] - lo[:, None, hw_cols]) / span[:, None, :]
            extra["supernet"] = _train_supernet_mode(
                cfg,
                hyper,
                opt,
                sampler,
                hw_costs.to(device),
                normalizer.to(device),
                targets,
                supernet,
                data,
                device,
                prefs,
                progress,
                (pool[pick], probe_hw),
            )
            sweep = extra["supernet"].pop("sweep_preferences", None)
            if sweep is not None:
                extra["sweep_preferences"] = sweep

        settings = {
            "format": FORMAT,
            "space": cfg.space,
            "objectives": list(cfg.objectives),
            "mode": cfg.mode,
            "seed": cfg.seed,
            "train_targets": [t.name for t in targets],
            "config": cfg.to_dict(),
            "hypernet": hyper.config(),
            "sampler": sampler.config(),
            "predictors": {
                m: {
                    "fingerprint": _predictor_fingerprint(p),
                    "metadata": getattr(p, "metadata", {}),
                }
                for m, p in predictors.items()
            },
            "started": started.isoformat(timespec="seconds"),
            "wall_s": None,
            **extra,
        }
        files = {HYPERNET_FILE: _state_dict_bytes(hyper)}
        if surrogate is not None:
            files[SURROGATE_FILE] = _state_dict_bytes(surrogate)
        if supernet is not None:
            files[SUPERNET_FILE] = _state_dict_bytes(supernet)
        settings["wall_s"] = time.perf_counter() - t_start
        path = _save_run(settings, files, started)
        _report(progress, "save", 1, 1, str(path))
        return path
    finally:
        torch.random.set_rng_state(rng_state)
        torch.set_num_threads(old_threads)


def _random_archs(kind: str, num_decisions: int, num_options: int, gen):
    """Architectures ``(n, D, K)`` for one weight step that is not steered by the hypernetwork.

    ``uniform``: one architecture, each decision uniformly at random. ``fair`` (strict fairness,
    as in FairNAS, Chu et al. 2021): ``K`` architectures from one random permutation of the
    options per decision, so every option of every decision is trained exactly once on the
    batch. Uniform sampling updates each option equally often only on average; weight-free
    options (skip, zero) need no training, so under it the supernet systematically rates them
    better than they would be when trained alone.
    """
    import torch
    import torch.nn.functional as F

    if kind == "uniform":
        codes = torch.randint(num_options, (1, num_decisions), generator=gen)
    else:
        perms = torch.stack(
            [torch.randperm(num_options, generator=gen) for _ in range(num_decisions)]
        )
        codes = perms.T  # (K, D): column j of the permutations is architecture j
    return F.one_hot(codes, num_options).float()


#: Gradient-norm clip of the search's supernet weight steps.
WEIGHT_CLIP = 5.0


def _train_supernet_fair(cfg, supernet, data, device, progress) -> dict[str, Any]:
    """Train the supernet alone for ``supernet_epochs`` (one-shot, architectures drawn as
    ``weight_sampling`` says, strict fairness by default); returns its record."""
    import torch
    from hilnas.pipeline.spaces.nb201 import EDGES, OPS
    from hilnas.pipeline.supernet import train_epochs

    gen = torch.Generator().manual_seed(cfg.seed)
    history = []

    def on_epoch(epoch: int, loss: float) -> None:
        history.append({"epoch": epoch, "train_ce": loss})
        _report(progress, "supernet", epoch, cfg.supernet_epochs, f"train CE {loss:.3f}")

    train_epochs(
        supernet,
        data.train_x.to(device),
        data.train_y.to(device),
        lambda: _random_archs(cfg.weight_sampling, len(EDGES), len(OPS), gen).to(device),
        epochs=cfg.supernet_epochs,
        batch_size=cfg.batch_size,
        lr=cfg.weight_lr,
        generator=gen,
        clip=WEIGHT_CLIP,
        on_epoch=on_epoch,
    )
    supernet.eval()
    return {
        "dataset": data.describe(),
        "model_config": data.model_config(cfg.channels, cfg.cells_per_stage, cfg.reduction).key(),
        "epochs": cfg.supernet_epochs,
        "weight_sampling": cfg.weight_sampling,
        "history": history,
    }


def _supernet_oracle(supernet, data):
    """codes -> their top-1 error (%) under the trained supernet on the whole validation split
    (what :class:`TrainedSearch` reports for supernet-mode fronts), floored at half an image:
    the surrogate fits log-error, and a perfect score on a few hundred images is the split's
    resolution, not a zero error."""
    from hilnas.pipeline.surrogate import AccuracyQueries

    floor = 50.0 / max(1, len(data.val_y))

    def oracle(codes):
        err = [max(supernet.error_pct(data.val_x, data.val_y, c), floor) for c in codes]
        return AccuracyQueries(
            tuple(tuple(c) for c in codes), np.asarray(err, dtype=np.float64), "supernet"
        )

    return oracle


def _train_supernet_mode(
    cfg,
    hyper,
    opt,
    sampler,
    hw_costs,
    normalizer,
    targets,
    supernet,
    data,
    device,
    prefs,
    progress,
    probe,
):
    """Alternate supernet SGD steps and hypernetwork MGDA steps (see the module docstring).

    ``probe``: ``(codes (n, D), hardware costs (T, n, H))``, a fixed random set of
    architectures with their normalised predicted hardware costs. At the start of every
    epoch after the warm-up the supernet's validation cross-entropy of each probe
    architecture is measured; it sets the error term's normalisation (its min and max over
    the probe) and, with the hardware costs, each target's current front among the probe
    architectures, at which the preference sampler then aims (as surrogate mode aims at its
    predicted fronts) and from which a front's preference sweep is drawn after training.
    Without it, a flat Dirichlet almost never asks about the accurate end of a front: on
    digits the accurate architectures' cross-entropies are all within a few percent of the
    range spanned by bad ones, so every preference short of nearly all weight on the error
    picks the cheapest architecture.
    """
    import torch
    import torch.nn.functional as F
    from hilnas.pipeline.supernet import weight_optimizer, weight_step

    hyper.to(device)
    for t in targets:
        t.h = t.h.to(device)
    n_train = len(data.train_y)
    steps_per_epoch = max(1, n_train // cfg.batch_size)
    total_epochs = cfg.total_epochs
    w_opt, w_sched = weight_optimizer(supernet, cfg.weight_lr, total_epochs * steps_per_epoch)
    err_col = cfg.objectives.index("error") if "error" in cfg.objectives else None
    hw_cols = [j for j, o in enumerate(cfg.objectives) if o != "error"]
    probe_codes = F.one_hot(torch.as_tensor(probe[0]), hyper.num_options).float().to(device)
    probe_x, probe_y = data.val_x[:PROBE_IMAGES].to(device), data.val_y[:PROBE_IMAGES].to(device)
    ce_bounds = [0.0, 1.0]
    sweep = None
    train_x, train_y = data.train_x.to(device), data.train_y.to(device)
    val_x, val_y = data.val_x.to(device), data.val_y.to(device)
    num_d, num_k = hyper.num_decisions, hyper.num_options
    cpu_gen = torch.Generator().manual_seed(cfg.seed)
    history = []

    def val_batch():
        if len(val_y) <= cfg.val_batch_size:
            return val_x, val_y
        idx = torch.randperm(len(val_y), generator=cpu_gen)[: cfg.val_batch_size].to(device)
        return val_x[idx], val_y[idx]

    def error_fn(arch):
        # one supernet pass per architecture of the batch, on its own validation batch
        vals = []
        for a in arch:
            x, y = val_batch()
            vals.append(F.cross_entropy(supernet(x, a), y))
        lo, hi = ce_bounds
        return (torch.stack(vals) - lo) / (hi - lo)

    def probe_fronts():
        # the probe architectures' validation cross-entropy: the error's bounds, the fronts
        with torch.no_grad():
            ce = np.array(
                [float(F.cross_entropy(supernet(probe_x, a), probe_y)) for a in probe_codes]
            )
        lo, hi = float(ce.min()), float(max(ce.max(), ce.min() + 1e-6))
        ce_bounds[:] = [lo, hi]
        values = np.zeros((len(targets), len(ce), len(cfg.objectives)))
        values[:, :, hw_cols] = probe[1]
        values[:, :, err_col] = ((ce - lo) / (hi - lo))[None, :]
        fronts, sweep = _fronts_and_sweep(values)
        prefs.aim(fronts, cfg.front_preferences)
        return sweep

    hyper_steps = 0
    for epoch in range(total_epochs):
        warm = epoch < cfg.warmup_epochs
        if not warm and err_col is not None:
            sweep = probe_fronts()
        perm = torch.randperm(n_train, generator=cpu_gen).to(device)
        losses, hlosses = [], []
        supernet.train()
        for s in range(steps_per_epoch):
            idx = perm[s * cfg.batch_size : (s + 1) * cfg.batch_size]
            x, y = train_x[idx], train_y[idx]
            with torch.no_grad():
                if warm or float(torch.rand(1, generator=cpu_gen)) < cfg.uniform_share:
                    archs = _random_archs(cfg.weight_sampling, num_d, num_k, cpu_gen)
                else:
                    ti = torch.randint(len(targets), (1,), generator=cpu_gen)
                    r = prefs.sample(ti).to(device)
                    archs = sampler(hyper(r, targets[int(ti)].h.unsqueeze(0)), generator=None)
            losses.append(
                weight_step(supernet, w_opt, w_sched, x, y, archs.to(device), WEIGHT_CLIP)
            )
            if not warm and s % cfg.hyper_every == 0:
                frac = (epoch - cfg.warmup_epochs + s / steps_per_epoch) / max(
                    1, total_epochs - cfg.warmup_epochs
                )
                hlosses.append(
                    _hypernet_step(
                        cfg,
                        hyper,
                        opt,
                        sampler,
                        hw_costs,
                        normalizer,
                        targets,
                        error_fn,
                        frac,
                        None,
                        prefs,
                    )
                )
                hyper_steps += 1
        record = {"epoch": epoch + 1, "train_ce": float(np.mean(losses))}
        if hlosses:
            record["hyper_loss"] = float(np.mean(hlosses))
        history.append(record)
        _report(
            progress,
            "warmup" if warm else "train",
            epoch + 1,
            total_epochs,
            f"train CE {record['train_ce']:.3f}"
            + (f", hyper loss {record['hyper_loss']:.4f}" if hlosses else ""),
        )
    hyper.cpu()
    for t in targets:
        t.h = t.h.cpu()
    supernet.cpu()
    return {
        "dataset": data.describe(),
        "model_config": data.model_config(cfg.channels, cfg.cells_per_stage, cfg.reduction).key(),
        "history": history,
        "hyper_steps": hyper_steps,
        "probe_archs": len(probe[0]),
        "sweep_preferences": None if sweep is None else np.round(sweep, 6).tolist(),
    }


def _save_run(settings: dict[str, Any], files: Mapping[str, bytes], started: datetime) -> Path:
    root = search_root()
    run_id = f"{started.strftime('%Y%m%d-%H%M%S')}-{settings['mode']}-s{settings['seed']}-{uuid.uuid4().hex[:6]}"
    settings = dict(settings, run_id=run_id)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{run_id}."))
    try:
        for name, blob in files.items():
            (tmp / name).write_bytes(blob)
        (tmp / SETTINGS_FILE).write_text(json.dumps(settings, indent=2, default=str) + "\n")
        final = root / run_id
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fd, latest_tmp = tempfile.mkstemp(dir=root, prefix=".latest.")
    with os.fdopen(fd, "w") as fh:
        fh.write(run_id + "\n")
    os.replace(latest_tmp, root / LATEST)
    return final


# ----------------------------------------------------------------------------------------------
# using a trained search
# ----------------------------------------------------------------------------------------------
def resolve_run(path: str | os.PathLike[str] | None = None) -> Path:
    """A run directory from a path, a run id, a settings file, or ``None`` (the latest run)."""
    root = home_dir(create=False) / "search"
    if path is None or str(path) == LATEST:
        pointer = root / LATEST
        if not pointer.is_file():
            raise SearchNotFoundError(
                f"no search has been run yet (nothing under {root}); run `hilnas search` first"
            )
        try:
            run_id = pointer.read_bytes()[:1000].decode("utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise DamagedSearchError(pointer, f"not a run id ({exc})") from None
        if not run_id or "/" in run_id or "\\" in run_id or run_id.startswith("."):
            raise DamagedSearchError(pointer, f"{run_id!r} is not a run id")
        path = root / run_id
    p = Path(path).expanduser()
    if p.is_file() and p.name == SETTINGS_FILE:
        p = p.parent
    if not p.exists() and not p.is_absolute() and (root / p).is_dir():
        p = root / p
    if not (p / SETTINGS_FILE).is_file():
        raise SearchNotFoundError(
            f"{path} is not a saved search (no {SETTINGS_FILE}); runs live under {root}"
        )
    return p


#: A search's settings file is a few hundred kB at most; anything far larger is not one.
MAX_SETTINGS_BYTES = 64 * 2**20


def _checked_settings(path: Path, settings: Any) -> dict[str, Any]:
    """``settings`` of the saved search at ``path`` if its keys have the types loading needs,
    else :class:`DamagedSearchError` naming the key (sizes are checked by the models)."""
    where = path / SETTINGS_FILE if path.is_dir() else path
    if not isinstance(settings, dict):
        raise DamagedSearchError(where, "the settings are not a JSON object")
    kinds: dict[str, tuple[type, ...]] = {
        "mode": (str,),
        "space": (str,),
        "objectives": (list,),
        "config": (dict,),
        "hypernet": (dict,),
        "train_targets": (list,),
        "seed": (int,),
    }
    for key, types in kinds.items():
        if key not in settings:
            raise DamagedSearchError(where, f"the settings lack {key!r}")
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, types):
            raise DamagedSearchError(where, f"{key!r} is {value!r}, expected a {types[0].__name__}")
    if settings["mode"] not in MODES:
        raise DamagedSearchError(where, f"unknown mode {settings['mode']!r}")
    if not all(isinstance(o, str) for o in settings["objectives"]):
        raise DamagedSearchError(where, f"objectives {settings['objectives']!r} are not names")
    try:
        parse_objectives(settings["objectives"])
    except SearchError as exc:
        raise DamagedSearchError(where, str(exc)) from None
    for key in ("surrogate", "predictors"):
        if settings.get(key) is not None and not isinstance(settings[key], dict):
            raise DamagedSearchError(where, f"{key!r} is {settings[key]!r}, expected an object")
    sweep = settings.get("sweep_preferences")
    if sweep is not None:
        try:
            bank = np.asarray(sweep, dtype=np.float64)
        except (TypeError, ValueError):
            bank = np.zeros((0, 0))
        if bank.ndim != 2 or bank.shape[1] != len(settings["objectives"]):
            raise DamagedSearchError(where, "sweep_preferences is not a table of preferences")
        if bank.size and (not np.all(np.isfinite(bank)) or np.any(bank < 0)):
            raise DamagedSearchError(where, "sweep_preferences holds invalid weights")
    return settings


def _load_weights(module: Any, path: Path) -> None:
    """Load a safetensors file into ``module``; a missing, truncated, foreign or mismatched
    file raises :class:`DamagedSearchError` naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise DamagedSearchError(path, "the file is missing")
    try:
        state = load_file(str(path))
        module.load_state_dict(state)
    except SafetensorError as exc:
        raise DamagedSearchError(path, f"not a readable safetensors file ({exc})") from None
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise DamagedSearchError(path, f"its weights do not fit ({one_line_error(exc)})") from None


def one_line_error(exc: BaseException, limit: int = 300) -> str:
    """The first line of ``exc``'s message, at most ``limit`` characters."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def spread_subset(values: np.ndarray, k: int, ref: float = 1.1) -> np.ndarray:
    """Indices (sorted) of ``k`` rows of the mutually non-dominated ``values`` (minimised) that
    cover their front best; all rows when ``k`` is at least their number.

    Objectives are normalised to [0, 1] over ``values`` and the reference point is ``ref`` in
    each. Two objectives: the ``k`` rows of the largest hypervolume, exactly (dynamic
    programming over the front sorted by the first objective, ``O(k n^2)``). Three or more:
    the best row of each objective first, then greedily the row farthest from those chosen.
    """
    V = np.asarray(values, dtype=np.float64)
    n, m = V.shape
    if k >= n:
        return np.arange(n)
    span = V.max(0) - V.min(0)
    N = (V - V.min(0)) / np.where(span > 0, span, 1.0)
    if m == 2:
        if k * n * n <= _EXACT_SUBSET_WORK:
            return _best_hypervolume_subset_2d(N, k, ref)
        return _greedy_hypervolume_subset_2d(N, k, ref)
    chosen: list[int] = []
    for j in range(m):
        i = int(np.argmin(N[:, j] + 1e-9 * N.sum(1)))  # ties: the better other objectives
        if i not in chosen and len(chosen) < k:
            chosen.append(i)
    while len(chosen) < k:
        free = np.setdiff1d(np.arange(n), chosen)
        dist = np.linalg.norm(N[free][:, None, :] - N[chosen][None, :, :], axis=2).min(1)
        chosen.append(int(free[int(np.argmax(dist))]))
    return np.sort(np.asarray(chosen, dtype=np.int64))


#: Above this many steps (``k n^2``) the exact two-objective subset gives way to the greedy one.
_EXACT_SUBSET_WORK = 20_000_000


def _greedy_hypervolume_subset_2d(N: np.ndarray, k: int, ref: float) -> np.ndarray:
    """``k`` rows of a two-objective front ``N`` chosen greedily, each adding the most
    hypervolume to those before it (its gain is the rectangle up to its chosen neighbours)."""
    chosen: list[int] = []
    free = np.ones(len(N), dtype=bool)
    while len(chosen) < k:
        sel = np.array(sorted(chosen, key=lambda i: N[i, 0]), dtype=np.int64)
        xs, ys = N[sel, 0], N[sel, 1]
        cand = np.flatnonzero(free)
        pos = np.searchsorted(xs, N[cand, 0])
        right_x = xs[np.minimum(pos, len(sel) - 1)] if len(sel) else np.zeros(len(cand))
        left_y = ys[np.maximum(pos - 1, 0)] if len(sel) else np.zeros(len(cand))
        right_x = np.where(pos < len(sel), right_x, ref)
        left_y = np.where(pos > 0, left_y, ref)
        gain = np.clip(right_x - N[cand, 0], 0, None) * np.clip(left_y - N[cand, 1], 0, None)
        i = int(cand[int(np.argmax(gain))])
        chosen.append(i)
        free[i] = False
    return np.sort(np.asarray(chosen, dtype=np.int64))


def _best_hypervolume_subset_2d(N: np.ndarray, k: int, ref: float) -> np.ndarray:
    """The ``k`` rows of a two-objective front ``N`` (in [0, 1]) of the largest hypervolume
    with reference point ``(ref, ref)``.

    Sorted by the first objective (the second then decreases), a subset's hypervolume is
    ``sum_j (ref - x_j) (y_prev - y_j)`` with ``y_prev`` the previous chosen row's second
    objective (``ref`` for the first), so ``best[t, i]``, the largest hypervolume of ``t + 1``
    rows ending at row ``i``, follows from ``best[t - 1, p]`` for ``p < i``.
    """
    order = np.lexsort((N[:, 1], N[:, 0]))
    x, y = N[order, 0], N[order, 1]
    n = len(x)
    width = ref - x  # (n,)
    best = np.full((k, n), -np.inf)
    back = np.zeros((k, n), dtype=np.int64)
    best[0] = width * (ref - y)
    earlier = np.tril(np.ones((n, n), dtype=bool), -1).T  # earlier[p, i]: p < i
    for t in range(1, k):
        gain = best[t - 1][:, None] + width[None, :] * (y[:, None] - y[None, :])
        gain = np.where(earlier, gain, -np.inf)
        back[t] = np.argmax(gain, axis=0)
        best[t] = gain[back[t], np.arange(n)]
    i = int(np.argmax(best[k - 1]))
    picked = [i]
    for t in range(k - 1, 0, -1):
        i = int(back[t, i])
        picked.append(i)
    return np.sort(order[np.asarray(picked, dtype=np.int64)])


class TrainedSearch:
    """A saved search: its settings, hypernetwork, error model and the hardware predictors.

    Loading checks what it reads: a settings file that is not JSON or has the wrong types, a
    model size outside the models' own bounds, or a weight file that is truncated, not
    safetensors or of another shape raises :class:`DamagedSearchError` (a
    ``DataIntegrityError``) naming the file; nothing is built from unchecked sizes.
    """

    def __init__(self, path: Path, settings: dict[str, Any]):
        import torch
        from hilnas.pipeline.hypernet import MetaHypernetwork
        from hilnas.pipeline.spaces import get_space

        self.path = path
        self.settings = _checked_settings(path, settings)
        try:
            saved = dict(settings["config"])
            # runs saved before ModelConfig.reduction existed used NB201's residual blocks
            saved.setdefault("reduction", "residual")
            self.config = SearchConfig.from_dict(saved)
        except (SearchError, TypeError, KeyError, ValueError) as exc:
            raise DamagedSearchError(
                path / SETTINGS_FILE, f"its search settings cannot be used ({exc})"
            ) from None
        try:
            self.space = get_space(settings["space"])
        except LookupError as exc:
            raise DamagedSearchError(path / SETTINGS_FILE, str(exc)) from None
        self.objectives: tuple[str, ...] = tuple(settings["objectives"])
        self.hardware_objectives = tuple(o for o in self.objectives if o in HARDWARE_OBJECTIVES)
        hyper_cfg = settings["hypernet"]
        expected = {
            "num_objectives": len(self.objectives),
            "num_decisions": self.space.num_decisions,
        }
        for key, want in expected.items():
            if hyper_cfg.get(key) != want:
                raise DamagedSearchError(
                    path / SETTINGS_FILE,
                    f"hypernet.{key} is {hyper_cfg.get(key)!r}, but its space and objectives "
                    f"need {want}",
                )
        try:
            self.hyper = MetaHypernetwork(**hyper_cfg)
        except (TypeError, ValueError) as exc:
            raise DamagedSearchError(path / SETTINGS_FILE, f"hypernet settings: {exc}") from None
        _load_weights(self.hyper, path / HYPERNET_FILE)
        self.hyper.eval()
        self._predictors: dict[str, Any] = {}
        self._surrogate = None
        self._queried: dict[str, float] = {}
        self._supernet = None
        self._data = None
        self._pool_codes: np.ndarray | None = None
        self._pool_errors: np.ndarray | None = None
        self._supernet_errors: dict[tuple[int, ...], float] = {}
        if settings.get("surrogate") and "error" in self.objectives:
            from hilnas.pipeline.surrogate import AccuracySurrogate

            sur = settings["surrogate"]
            try:
                self._surrogate = AccuracySurrogate(**sur["config"])
                self._queried = {str(a): float(e) for a, e in sur.get("queried", [])}
            except (TypeError, ValueError, KeyError) as exc:
                raise DamagedSearchError(
                    path / SETTINGS_FILE, f"surrogate settings: {exc}"
                ) from None
            _load_weights(self._surrogate, path / SURROGATE_FILE)
            self._surrogate.eval()
        self._torch = torch

    # ----- loading -----------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        space: str | None = None,
        objectives: str | Sequence[str] | None = None,
    ) -> TrainedSearch:
        """Load a saved run (``None``: the latest). With ``space`` / ``objectives`` given, a run
        trained for something else raises :class:`SearchMismatchError` saying what differs."""
        p = resolve_run(path)
        settings_path = p / SETTINGS_FILE
        try:
            size = settings_path.stat().st_size
            if size > MAX_SETTINGS_BYTES:
                raise DamagedSearchError(
                    settings_path, f"{size:,} bytes, more than a search's settings ever take"
                )
            settings = json.loads(settings_path.read_bytes().decode("utf-8"))
        except OSError as exc:
            raise SearchError(
                f"{settings_path} is not readable ({exc.strerror or exc}); check its permissions"
            ) from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DamagedSearchError(settings_path, f"not JSON ({exc})") from None
        if not isinstance(settings, dict) or "format" not in settings:
            raise DamagedSearchError(settings_path, "not a hilnas search settings file")
        if settings.get("format") != FORMAT:
            raise SearchError(
                f"{p} was written by another hilnas version (format {settings.get('format')!r}, "
                f"expected {FORMAT!r}); run the search again"
            )
        settings = _checked_settings(p, settings)
        problems = []
        if space is not None and space != settings["space"]:
            problems.append(f"it searched space {settings['space']!r}, not {space!r}")
        if objectives is not None:
            want = parse_objectives(objectives)
            have = tuple(settings["objectives"])
            if want != have:
                problems.append(
                    f"it was trained for objectives {', '.join(have)}, not {', '.join(want)}"
                )
        if problems:
            raise SearchMismatchError(
                f"saved search {p.name} does not match the request: "
                + "; ".join(problems)
                + ". Run `hilnas search` with those settings, or pick another run"
            )
        for name in (HYPERNET_FILE,):
            if not (p / name).is_file():
                raise SearchError(f"saved search {p} is incomplete: {name} is missing")
        return cls(p, settings)

    # ----- models ------------------------------------------------------------------------
    def predictor(self, metric: str):
        if metric not in self._predictors:
            from hilnas.pipeline.predictors import load_meta_predictor

            model = load_meta_predictor(metric, source=self.config.predictor_source)
            saved = self.settings.get("predictors", {}).get(metric, {}).get("fingerprint")
            if saved and saved != _predictor_fingerprint(model):
                log.warning(
                    "the %s predictor changed since search %s was trained; predicted %s values "
                    "come from the current one",
                    metric,
                    self.path.name,
                    metric,
                )
            self._predictors[metric] = model.eval()
        return self._predictors[metric]

    def _supernet_and_data(self):
        if self._supernet is None:
            from hilnas.pipeline.datasets import load_dataset
            from hilnas.pipeline.supernet import NB201Supernet

            cfg = self.config
            data = load_dataset(cfg.dataset, root=cfg.data_dir, seed=cfg.seed, limit=cfg.data_limit)
            net = NB201Supernet(data.model_config(cfg.channels, cfg.cells_per_stage, cfg.reduction))
            _load_weights(net, self.path / SUPERNET_FILE)
            self._supernet, self._data = net.eval(), data
        return self._supernet, self._data

    def model_config(self):
        """The skeleton the architectures were searched for (for export and profiling)."""
        if self.settings["mode"] == "supernet":
            cfg = self.config
            from hilnas.pipeline.datasets import dataset_model_config

            return dataset_model_config(
                cfg.dataset, cfg.channels, cfg.cells_per_stage, cfg.reduction
            )
        return self.space.default_model_config()

    # ----- embeddings --------------------------------------------------------------------
    def embeddings(
        self, target: str | TargetEmbedding | Mapping[str, TargetEmbedding], store=None
    ) -> tuple[str, dict[str, TargetEmbedding]]:
        """(name, {metric: embedding}) for a target name, an embedding or a mapping of them."""
        from hilnas.pipeline.predictors import TargetEmbedding

        metrics = self.hardware_objectives
        if isinstance(target, str):
            return target, _hardware_embeddings(target, metrics, store)
        if isinstance(target, TargetEmbedding):
            target = {target.metric: target}
        if isinstance(target, Mapping):
            missing = [m for m in metrics if m not in target]
            if missing:
                raise SearchError(
                    f"this search needs a {' and '.join(metrics)} embedding; missing {', '.join(missing)}"
                )
            embs = {m: target[m] for m in metrics}
            return next(iter(embs.values())).name, embs
        raise SearchError(f"a target is a name or an embedding, got {type(target).__name__}")

    # ----- predictions -------------------------------------------------------------------
    def architectures(self, h: np.ndarray, prefs: np.ndarray) -> np.ndarray:
        """Argmax architecture codes ``(n, D)`` the hypernetwork picks for preferences ``(n, M)``."""
        torch = self._torch
        with torch.no_grad():
            r = torch.as_tensor(np.asarray(prefs), dtype=torch.float32)
            hh = torch.as_tensor(h, dtype=torch.float32).unsqueeze(0).expand(len(r), -1)
            logits = self.hyper(r, hh)
            mask = torch.as_tensor(self.space.option_mask)
            logits = logits.masked_fill(~mask, float("-inf"))
            return logits.argmax(-1).numpy().astype(np.int64)

    def predict_objectives(
        self, codes: np.ndarray, embeddings: Mapping[str, TargetEmbedding], *, cheap: bool = False
    ) -> tuple[np.ndarray, list[str | None]]:
        """Predicted objective values ``(n, M)`` (raw units) and where each error came from.

        Supernet mode reports the supernet's validation error; ``cheap`` takes its surrogate
        instead (for the many candidates of :meth:`refine`)."""
        codes = np.asarray(codes, dtype=np.int64).reshape(-1, self.space.num_decisions)
        cols = []
        sources: list[str | None] = [None] * len(codes)
        for o in self.objectives:
            if o == "error":
                cols.append(self._errors(codes, sources, cheap))
            else:
                cols.append(self.predictor(o).predict_codes(codes, embeddings[o]))
        return np.stack(cols, axis=1).astype(np.float64), sources

    def _errors(
        self, codes: np.ndarray, sources: list[str | None], cheap: bool = False
    ) -> np.ndarray:
        torch = self._torch
        x = torch.from_numpy(_onehot(self.space, codes))
        if self._surrogate is not None and (cheap or self.settings["mode"] == "surrogate"):
            with torch.no_grad():
                err = self._surrogate(x).numpy().astype(np.float64)
            for i, c in enumerate(codes):
                known = self._queried.get(self.space.format(c))
                if known is not None:
                    err[i] = known
                    sources[i] = "queried"
                else:
                    sources[i] = "surrogate"
            return err
        net, data = self._supernet_and_data()
        err = np.zeros(len(codes))
        for i, c in enumerate(codes):
            key = tuple(int(v) for v in c)
            if key not in self._supernet_errors:  # the error does not depend on the target
                self._supernet_errors[key] = net.error_pct(data.val_x, data.val_y, x[i])
            err[i] = self._supernet_errors[key]
            sources[i] = "supernet"
        return err

    @property
    def can_refine(self) -> bool:
        """Whether every objective can be predicted cheaply for many architectures (an error
        surrogate, or no error objective): the refinement needs that."""
        return self._surrogate is not None or "error" not in self.objectives

    def _bounds(self, embs: Mapping[str, TargetEmbedding]) -> tuple[np.ndarray, np.ndarray]:
        """Predicted min and max of each objective over the space for a target: the
        normalisation the hypernetwork was trained with."""
        torch = self._torch
        if self._pool_codes is None:
            self._pool_codes = _pool(self.space, self.config.seed)
            if self._surrogate is not None:
                with torch.no_grad():
                    x = torch.from_numpy(_onehot(self.space, self._pool_codes))
                    self._pool_errors = self._surrogate(x).numpy().astype(np.float64)
        cols = [
            self._pool_errors
            if o == "error"
            else self.predictor(o).predict_codes(self._pool_codes, embs[o])
            for o in self.objectives
        ]
        V = np.stack(cols, axis=1)
        return V.min(0), np.maximum(V.max(0), V.min(0) + 1e-12)

    def refine(
        self,
        codes: np.ndarray,
        prefs: np.ndarray,
        embs: Mapping[str, TargetEmbedding],
        steps: int = 8,
    ) -> tuple[np.ndarray, dict[tuple[int, ...], int]]:
        """Greedy best-improvement local search from each architecture ``codes[k]`` on the
        scalarised, normalised *predicted* objectives under ``prefs[k]`` (the loss the
        hypernetwork was trained on), one decision changed per step, at most ``steps`` steps.

        Returns the final architectures ``(K, D)`` and every architecture evaluated on the way
        (code -> the preference row that first reached it): its neighbourhood of the
        hypernetwork's choices, from which :meth:`front` keeps the non-dominated ones.

        Only the predictors and the surrogate are used (no true evaluation): the hypernetwork's
        straight-through training lands near the best architecture for a preference, often a
        few single-decision changes away from it; this closes that gap at inference.
        """
        if not self.can_refine:
            raise SearchError(
                "refinement needs a cheap error model (surrogate mode, or supernet mode with "
                "supernet_error='surrogate')"
            )
        import torch

        lo, hi = self._bounds(embs)
        cur = np.asarray(codes, dtype=np.int64).copy()
        K, D = cur.shape
        sizes = [len(o) for o in self.space.options]
        values: dict[tuple[int, ...], np.ndarray] = {}
        origin: dict[tuple[int, ...], int] = {}
        r = torch.as_tensor(prefs, dtype=torch.float32)
        for _ in range(steps):
            cands = [cur]
            for d in range(D):
                for o in range(sizes[d]):
                    nb = cur.copy()
                    nb[:, d] = o
                    cands.append(nb)
            C = np.stack(cands, axis=1)  # (K, 1 + sum(sizes), D); entry 0 = current
            flat = [tuple(int(v) for v in c) for c in C.reshape(-1, D)]
            for j, c in enumerate(flat):
                origin.setdefault(c, j // C.shape[1])
            new = list(dict.fromkeys(c for c in flat if c not in values))
            if new:
                vals, _ = self.predict_objectives(np.array(new), embs, cheap=True)
                values.update(zip(new, vals, strict=False))
            V = np.stack([values[c] for c in flat]).reshape(K, C.shape[1], -1)
            norm = torch.as_tensor((V - lo) / (hi - lo), dtype=torch.float32)
            with torch.no_grad():
                S = scalarize(
                    r[:, None, :].expand(-1, C.shape[1], -1),
                    norm,
                    self.config.scalarization,
                    self.config.smoothing,
                )
            best = S.argmin(1).numpy()  # ties keep the current architecture (index 0)
            nxt = C[np.arange(K), best]
            if np.array_equal(nxt, cur):
                break
            cur = nxt
        return cur, origin

    def sweep(self, k: int) -> np.ndarray:
        """``k`` preference vectors for a front: spread like the preferences that aim at the
        training targets' predicted fronts (saved with the search), else evenly on the simplex.

        For two objectives: ``k`` quantiles of the aimed preferences' first weight, the corners
        included; for more: farthest-point sampling among them, the corners first.
        """
        M = len(self.objectives)
        bank = np.asarray(self.settings.get("sweep_preferences") or [], dtype=np.float64)
        if bank.size == 0:
            return mo.uniform_preferences(M, k)
        if M == 2:
            q = np.quantile(bank[:, 0], np.linspace(0.0, 1.0, k)) if k > 1 else np.array([0.5])
            if k > 1:
                q[0], q[-1] = 0.0, 1.0
            return np.stack([q, 1.0 - q], axis=1)
        chosen = [np.eye(M)[i] for i in range(min(M, k))]
        dist = np.min(np.stack([np.abs(bank - c).sum(1) for c in chosen]), axis=0)
        while len(chosen) < k and dist.max() > 0:
            j = int(np.argmax(dist))
            chosen.append(bank[j])
            dist = np.minimum(dist, np.abs(bank - bank[j]).sum(1))
        return np.asarray(chosen)

    def front(
        self,
        target: str | TargetEmbedding | Mapping[str, TargetEmbedding],
        *,
        points: int | None = None,
        preference: Sequence[float] | np.ndarray | None = None,
        store: MeasurementStore | None = None,
        non_dominated: bool = True,
        refine: bool | None = None,
        refine_steps: int = 8,
    ) -> list[FrontPoint]:
        """The architectures for ``target`` over a preference sweep (``points`` preference
        vectors, default 100, spread as :meth:`sweep` says) or for one ``preference`` (a vector
        on the simplex, one weight per objective, validated, never renormalised).

        For each preference the hypernetwork's argmax architecture is taken; with ``refine``
        (default: whenever the objectives are cheap to predict, i.e. surrogate mode) the
        greedy :meth:`refine` of it on the predicted objectives is added, and for a sweep every
        architecture the refinement evaluated on the way too. A sweep returns the distinct
        architectures, non-dominated among themselves on the predicted objectives
        (``non_dominated=False`` keeps them all), at most ``points`` of them (when the
        refinement found more, the ``points`` that cover the front best: :func:`spread_subset`;
        fewer when the front holds fewer distinct architectures), sorted by the first hardware
        objective; one preference returns its (refined) architecture. ``points`` is at most
        :data:`MAX_FRONT_POINTS`.
        """
        if points is not None and preference is not None:
            raise SearchError("give either points (a sweep) or one preference, not both")
        if refine is None:
            refine = self.can_refine
        names = ", ".join(self.objectives)
        if preference is not None:
            try:
                prefs = mo.validate_preference(preference, objectives=self.objectives)[None, :]
            except ValueError as exc:
                raise SearchError(f"{exc} (objectives: {names})") from None
        else:
            k = 100 if points is None else points
            if isinstance(k, np.integer):
                k = int(k)
            try:
                k = int(check_number("points", k, low=1, high=MAX_FRONT_POINTS))
            except InvalidInputError as exc:
                raise SearchError(str(exc)) from None
            prefs = self.sweep(k)
        _, embs = self.embeddings(target, store)
        h = _embedding_vector(embs, self.hardware_objectives)
        codes = self.architectures(h, prefs)
        # code -> (preference row that chose it or None, refined)
        found: dict[tuple[int, ...], tuple[int | None, bool]] = {}
        if not (refine and preference is not None):
            for i, c in enumerate(codes):
                found.setdefault(tuple(int(v) for v in c), (i, False))
        if refine:
            final, visited = self.refine(codes, prefs, embs, steps=refine_steps)
            for i, c in enumerate(final):
                found.setdefault(tuple(int(v) for v in c), (i, True))
            if preference is None:
                for c in visited:
                    found.setdefault(c, (None, True))
        ucodes = np.array(list(found), dtype=np.int64)
        values, sources = self.predict_objectives(ucodes, embs)
        keep = np.ones(len(ucodes), dtype=bool)
        if preference is None and non_dominated:
            keep = mo.pareto_mask(values)
        if preference is None and non_dominated and int(keep.sum()) > k:
            # the refinement found more non-dominated architectures than were asked for: keep
            # the k that cover the front best (the largest hypervolume for two objectives)
            kept = np.flatnonzero(keep)
            keep = np.zeros(len(ucodes), dtype=bool)
            keep[kept[spread_subset(values[kept], k)]] = True
        first_hw = self.objectives.index(self.hardware_objectives[0])
        order = [i for i in np.argsort(values[:, first_hw], kind="stable") if keep[i]]
        out = []
        for i in order:
            code = tuple(int(v) for v in ucodes[i])
            row, refined = found[code]
            index = self.space.index(code) if self.space.name == "nb201" else None
            out.append(
                FrontPoint(
                    arch=self.space.format(code),
                    preference=None
                    if row is None
                    else tuple(round(float(v), 6) for v in prefs[row]),
                    objectives={o: float(values[i, j]) for j, o in enumerate(self.objectives)},
                    index=index,
                    error_source=sources[i],
                    refined=refined,
                )
            )
        return out

    def describe(self) -> dict[str, Any]:
        s = self.settings
        return {
            "run_id": s.get("run_id", self.path.name),
            "path": str(self.path),
            "mode": s["mode"],
            "space": s["space"],
            "objectives": list(self.objectives),
            "train_targets": s["train_targets"],
            "seed": s["seed"],
            "wall_s": s.get("wall_s"),
        }


__all__ = [
    "OBJECTIVES",
    "FrontPoint",
    "SearchConfig",
    "SearchError",
    "SearchMismatchError",
    "SearchNotFoundError",
    "DamagedSearchError",
    "INT_BOUNDS",
    "MAX_FRONT_POINTS",
    "SearchProgress",
    "TrainedSearch",
    "parse_objectives",
    "resolve_run",
    "run_search",
    "scalarize",
    "search_root",
]
