"""A trained search (:class:`TrainedSearch`): loading a saved run, predicting objectives, and
reading fronts for any target (sweep, refinement, :class:`FrontPoint`).

Hardware costs of a target (:meth:`TrainedSearch.cost_model`): a target known by its
reference values alone gets the search's meta-predictor conditioned on its embedding (the
costs the hypernetwork was trained with). A target with further measurements of a hardware
objective (store rows, an imported device's CSV rows beyond the references: the embedding's
support set) gets its per-device learning predictor
(:class:`~hilnas.pipeline.predictors.learning.LearningPredictor`) for that objective: its prior
is the same meta-predictor conditioned on the whole embedding (references and further
measurements), and a residual model on top, chosen by cross-validation over the further
measurements, replaces it only where it predicts better (``none`` keeps the prior's costs). The
hypernetwork's argmax is unchanged (no retraining); the refinement, the normalisation bounds
and the values a front reports all use these costs, and every :class:`FrontPoint` says where
its hardware values came from (``costs``).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from hilnas.devices.errors import InvalidInputError, check_number
from hilnas.pipeline import mo
from hilnas.pipeline.search.config import (
    HARDWARE_OBJECTIVES,
    MAX_FRONT_POINTS,
    DamagedSearchError,
    SearchConfig,
    SearchError,
    SearchMismatchError,
    parse_objectives,
)
from hilnas.pipeline.search.costs import (
    _embedding_vector,
    _hardware_embeddings,
    _predictor_fingerprint,
)
from hilnas.pipeline.search.pool import _onehot, _pool
from hilnas.pipeline.search.runs import (
    FORMAT,
    HYPERNET_FILE,
    SETTINGS_FILE,
    SUPERNET_FILE,
    SURROGATE_FILE,
    _checked_settings,
    _load_weights,
    _read_settings,
    resolve_run,
)
from hilnas.pipeline.search.scalarization import scalarize
from hilnas.pipeline.search.subsets import spread_subset

if TYPE_CHECKING:  # pragma: no cover
    from hilnas.pipeline.predictors import TargetEmbedding
    from hilnas.pipeline.store import MeasurementStore

log = logging.getLogger(__name__)

#: Per-target cost models a :class:`TrainedSearch` keeps fitted (least recently used dropped).
COST_MODEL_CACHE = 16


@dataclass(frozen=True)
class CostModel:
    """The predicted values of one hardware objective for one target.

    ``source``: ``"meta-predictor"`` (the search's predictor conditioned on the target's
    embedding: its reference values and any further measurements) or ``"learning predictor"``
    (that prior times a residual model fit on the further measurements); ``kind``: the residual
    model the learning predictor chose by cross-validation (``none``: the prior's values
    unchanged); ``measurements``: the further measurements beyond the references.
    ``predict(codes)`` returns the values (ms or mJ, > 0) of architecture codes ``(n, D)``.
    """

    metric: str
    source: str
    measurements: int
    predict: Callable[[np.ndarray], np.ndarray] = field(repr=False, compare=False)
    kind: str | None = None

    def describe(self) -> str:
        """One line, e.g. ``learning predictor, kernel:1, 50 measurements``."""
        if self.source == "learning predictor":
            return f"{self.source}, {self.kind}, {self.measurements} measurements"
        if self.measurements:
            return f"{self.source}, {self.measurements} measurements"
        return f"{self.source}, reference values only"


@dataclass(frozen=True)
class FrontPoint:
    """One architecture of a front: its string, the preference that selected it and the
    predicted objective values (error in %, latency in ms, energy in mJ).

    ``error_source`` says where the error came from: ``surrogate`` (predicted), ``queried``
    (the true value read during the search) or ``supernet`` (the supernet's validation error).
    ``refined``: the architecture came from the greedy refinement of the hypernetwork's choice
    (see :meth:`TrainedSearch.front`), not from the argmax itself. ``preference`` is ``None``
    for an architecture no preference chose: one the refinement evaluated on its way (a
    neighbour of a chosen one) that turned out non-dominated. ``costs``: per hardware
    objective, where its predicted value came from (:meth:`CostModel.describe`, e.g.
    ``"learning predictor, kernel:1, 50 measurements"``), the same for every point of a front.
    """

    arch: str
    preference: tuple[float, ...] | None
    objectives: dict[str, float]
    index: int | None = None
    error_source: str | None = None
    refined: bool = False
    costs: dict[str, str] | None = None


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
        self._cost_models: OrderedDict[tuple[str, str, bool], CostModel] = OrderedDict()
        #: False: every target's costs from the meta-predictor conditioned on its whole
        #: embedding, further measurements included (the costs before learning predictors;
        #: for comparison, as the fronts benchmark does)
        self.learn_costs = True
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
        settings = _read_settings(settings_path)
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
            from hilnas.pipeline.spaces.nb201.supernet import NB201Supernet

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
                cols.append(self.cost_model(o, embeddings[o]).predict(codes))
        return np.stack(cols, axis=1).astype(np.float64), sources

    def cost_model(self, metric: str, embedding: TargetEmbedding) -> CostModel:
        """The cost model of hardware objective ``metric`` for a target's ``embedding`` (see
        the module docstring): the meta-predictor when the embedding has no further
        measurements (exactly the costs the search was trained with), else the target's
        learning predictor, fit once and kept (per embedding content, at most
        :data:`COST_MODEL_CACHE` of them). With :attr:`learn_costs` False, the meta-predictor
        conditioned on the whole embedding for every target."""
        key = (metric, _embedding_key(embedding), bool(self.learn_costs))
        model = self._cost_models.get(key)
        if model is not None:
            self._cost_models.move_to_end(key)
            return model
        meta = self.predictor(metric)
        n_extra = len(embedding.support_values)
        if n_extra == 0 or self.space.name != "nb201" or not self.learn_costs:
            model = CostModel(metric, "meta-predictor", n_extra, _meta_costs(meta, embedding))
        else:
            from hilnas.pipeline.predictors.learning import (
                LearningPredictor,
                nb201_features,
                nb201_group_column,
            )

            lp = LearningPredictor(
                floor="smooth",
                prior=_meta_costs(meta, embedding),
                features=nb201_features,
                reference_codes=np.asarray(self.space.reference_architectures(), np.int64),
                reference_values=embedding.raw,
                group_column=nb201_group_column(),
                seed=int(self.config.seed),
            ).fit(embedding.support_codes, embedding.support_values)
            log.info(
                "%s costs of %s: learning predictor (%s) on %d further measurements",
                metric,
                embedding.name,
                lp.kind,
                n_extra,
            )
            model = CostModel(metric, "learning predictor", n_extra, lp.predict, kind=lp.kind)
        self._cost_models[key] = model
        while len(self._cost_models) > COST_MODEL_CACHE:
            self._cost_models.popitem(last=False)
        return model

    def pin_cost_model(self, embedding: TargetEmbedding, model: CostModel) -> None:
        """Use ``model`` for ``model.metric`` of every target with ``embedding``'s content
        (e.g. a benchmark's true table, to bound what better costs can give); until it falls
        out of the cache of :data:`COST_MODEL_CACHE` models."""
        if model.metric not in self.hardware_objectives:
            raise SearchError(
                f"{model.metric!r} is not a hardware objective of this search "
                f"({', '.join(self.hardware_objectives)})"
            )
        key = (model.metric, _embedding_key(embedding), bool(self.learn_costs))
        self._cost_models[key] = model
        self._cost_models.move_to_end(key)

    def cost_sources(
        self, target: str | TargetEmbedding | Mapping[str, TargetEmbedding], store=None
    ) -> dict[str, str]:
        """Per hardware objective, where ``target``'s predicted values come from
        (:meth:`CostModel.describe`): for a front's metadata."""
        _, embs = self.embeddings(target, store)
        return {o: self.cost_model(o, embs[o]).describe() for o in self.hardware_objectives}

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
            else self.cost_model(o, embs[o]).predict(self._pool_codes)
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

        The hardware values (what the refinement optimises and what the points report) come
        from :meth:`cost_model`: for a target with further measurements, its learning
        predictor (fit once per target); each point's ``costs`` says which, e.g.
        ``{"latency_ms": "learning predictor, kernel:1, 50 measurements"}``.
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
        costs = {o: self.cost_model(o, embs[o]).describe() for o in self.hardware_objectives}
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
                    costs=dict(costs),
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


def _meta_costs(meta, embedding: TargetEmbedding) -> Callable[[np.ndarray], np.ndarray]:
    """codes -> the meta-predictor's values conditioned on ``embedding`` (all its values)."""

    def predict(codes: np.ndarray) -> np.ndarray:
        return meta.predict_codes(np.asarray(codes, dtype=np.int64), embedding)

    return predict


def _embedding_key(embedding: TargetEmbedding) -> str:
    """A digest of what a cost model is fit on: name, network, reference values, further
    measurements (two embeddings with the same content share one fitted model)."""
    h = hashlib.sha256()
    h.update(f"{embedding.name}\0{embedding.metric}\0{embedding.network}\0".encode())
    for a in (embedding.raw, embedding.support_codes, embedding.support_values):
        arr = np.ascontiguousarray(a)
        h.update(str(arr.dtype).encode() + str(arr.shape).encode() + arr.tobytes())
    return h.hexdigest()
