"""One MetaHypernetwork search for every target of a space beyond NB201 (MODNAS, arXiv 2402.18213).

``run_space_search(SpaceSearchConfig(space="gpt_s", objectives="perplexity,latency_ms"))``
trains a :class:`~hilnas.pipeline.hypernet.MetaHypernetwork` ``H(r, h) -> logits`` over the
space's decisions (options outside a decision's range masked, inactive decisions ignored) and
saves it under ``HILNAS_HOME/search/<run-id>/``. :meth:`SpaceSearchModel.front` then returns,
for any target known by its values on the space's reference architectures (a training target,
or a device profiled or imported later: zero-shot, no retraining), the architectures the
hypernetwork picks over a sweep of preferences, with predicted objectives, non-dominated.

What the objectives are (all minimised):

- the space's **quality** (:data:`~hilnas.pipeline.spacesearch.targets.QUALITY`): GPT-S
  perplexity, OFA top-1 error (%). It is read from a *quality oracle*, at most ``queries``
  (``B``) times in total for all targets, since quality does not depend on the device:
  ``surrogate`` mode (gpt_s) asks HW-GPT-Bench's perplexity surrogate (a benchmark oracle);
  ``supernet`` mode trains the space's weight-sharing supernet on offline data first and asks
  its validation quality. The answers fit a differentiable ensemble
  (:class:`~hilnas.pipeline.spacesearch.models.QualityModel`, reading the masked one-hot and the
  space's cost features: parameters, MACs, depth, width), refit over ``rounds`` rounds; after
  the first (random architectures and the reference architectures), each round queries where
  the fronts are (``query_strategy="front"``): the union of every training target's current
  PREDICTED front, cut into equal-count bins by predicted quality, the most uncertain member of
  each bin (ensemble spread). ``query_strategy="hypernet"`` (the earlier rule) queries the
  architectures the hypernetwork picks for the most training targets.
- **latency_ms / energy_mj**: the frozen space-generic cross-device predictor
  (:mod:`hilnas.pipeline.predictors.space`) zero-shot from each target's reference values,
  distilled into a differentiable per-metric network for training
  (:class:`~hilnas.pipeline.spacesearch.models.CostNet`); fronts use the predictor itself.

One training step: for every training target ``t``, ``prefs_per_target`` preferences ``r``
(a flat Dirichlet, half of them drawn nearer the simplex's corners); ``H(r, h_t)`` -> a hard
ReinMax sample (straight-through) of the logits, standardised and scaled (annealed 2 -> 4) so
that sampling keeps exploring; costs normalised to [0, 1] per target by their range over a pool
of architectures; loss = the smooth weighted Tchebycheff scalarisation
(:func:`hilnas.pipeline.search.scalarize`); per-target gradients combined by the min-norm
(MGDA) solver.

Reading a front: the argmax architecture of each preference of a sweep, then (``refine``)
NSGA-II on the *predicted* objectives (quality model and cost predictors, no oracle query),
its initial population seeded with those architectures, for ``evaluations`` architectures
(:data:`SPACE_FRONT_EVALUATIONS`; ``evaluations=0``: the earlier greedy walk from each over
single-decision changes on the scalarised predicted objectives); every architecture evaluated
on the way is a candidate and the non-dominated ones (at most ``points``, covering the front
best; every one with ``points=None``) are returned. On gpt_s the predicted NSGA-II raised the
leave-one-device-out HV ratio far more than any change to the hypernetwork could: with the TRUE
oracle values in place of the predictions, the greedy reading reached 0.91 / 0.69 / 0.71 of the
reference front (perplexity + latency / + energy / all three) on a100, the predicted NSGA-II
0.99 / 1.00 / 0.98 (``benchmarks/search_gpt_hypernet.py --ablate``).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from hilnas.devices.errors import (
    DataIntegrityError,
    InvalidInputError,
    check_number,
)
from hilnas.pipeline import mo
from hilnas.pipeline.spaces import get_space
from hilnas.pipeline.spacesearch.targets import (
    HARDWARE,
    QUALITY,
    SpaceTarget,
    check_space,
    parse_objectives,
    reference_targets,
    resolve_target,
)

FORMAT = "hilnas.space_search/1"
QUALITY_MODES: tuple[str, ...] = ("surrogate", "supernet")
QUERY_STRATEGIES: tuple[str, ...] = ("front", "hypernet")
#: Which quality modes each space has.
SPACE_MODES: dict[str, tuple[str, ...]] = {
    "gpt_s": ("surrogate", "supernet"),
    "ofa_mbv3": ("supernet",),
}
MAX_QUERIES = 100_000
MAX_STEPS = 100_000
#: Predicted-objective NSGA-II evaluations of a front's refinement (no oracle query): gpt_s's
#: default; :data:`SPACE_FRONT_EVALUATIONS` per space (OFA's predictions cost ~4x more each).
FRONT_EVALUATIONS = 20_000
SPACE_FRONT_EVALUATIONS: dict[str, int] = {"gpt_s": FRONT_EVALUATIONS, "ofa_mbv3": 5_000}
MAX_FRONT_EVALUATIONS = 1_000_000
#: Its population (None: the baselines' default, 100 from 20,000 evaluations).
FRONT_POP_SIZE: int | None = None

__all__ = [
    "FORMAT",
    "QualityOracle",
    "SpaceSearchConfig",
    "SpaceSearchModel",
    "default_oracle",
    "latest_space_run",
    "run_space_search",
    "train_space_search",
]


# ----------------------------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SpaceSearchConfig:
    """Settings of one space search; validated on construction (bad values: InvalidInputError)."""

    space: str
    objectives: tuple[str, ...] | str = ()
    targets: tuple[str, ...] = ()  # () = every reference device with all hardware objectives
    quality: str = ""  # "" = the space's first mode (gpt_s: surrogate, ofa_mbv3: supernet)
    queries: int = 300
    rounds: int = 3
    steps: int = 600
    prefs_per_target: int = 16
    hidden: int = 128
    lr: float = 3e-3
    pool: int = 3000
    seed: int = 0
    mgda: bool = True
    threads: int | None = 1
    supernet: Mapping[str, Any] = field(default_factory=dict)
    # the quality model also reads the space's cost features (parameters, MACs, depth, width)
    quality_extras: bool = True
    # how rounds after the first choose their queries: "front" = on the predicted fronts of
    # every training target, most uncertain first; "hypernet" = the hypernetwork's choices
    query_strategy: str = "front"

    def __post_init__(self) -> None:
        space = check_space(self.space)
        object.__setattr__(self, "space", space)
        objs = self.objectives or (QUALITY[space], "latency_ms")
        object.__setattr__(self, "objectives", parse_objectives(space, objs))
        modes = SPACE_MODES[space]
        quality = self.quality or modes[0]
        if quality not in modes:
            raise InvalidInputError(
                f"quality mode {quality!r} is not available for {space}; choose "
                f"{' or '.join(modes)}"
            )
        object.__setattr__(self, "quality", quality)
        object.__setattr__(self, "targets", tuple(str(t) for t in self.targets))
        if self.query_strategy not in QUERY_STRATEGIES:
            raise InvalidInputError(
                f"query strategy {self.query_strategy!r} is unknown; choose "
                f"{' or '.join(QUERY_STRATEGIES)}"
            )
        for name, value, low, high in (
            ("queries", self.queries, 10, MAX_QUERIES),
            ("rounds", self.rounds, 1, 20),
            ("steps", self.steps, 1, MAX_STEPS),
            ("prefs_per_target", self.prefs_per_target, 1, 1024),
            ("hidden", self.hidden, 8, 4096),
            ("pool", self.pool, 100, 200_000),
            ("seed", self.seed, 0, 2**31 - 1),
        ):
            check_number(name, value, low=low, high=high, fix=f"use {low} to {high:,}")
        check_number("lr", self.lr, low=1e-6, high=1.0, integer=False, fix="use 1e-6 to 1")
        if self.threads is not None:
            check_number("threads", self.threads, low=1, high=1024, fix="use 1 or more threads")
        if self.rounds > self.queries // 5:
            raise InvalidInputError(
                f"{self.rounds} query rounds for {self.queries} queries leave under 5 per "
                "round; use fewer rounds or more queries"
            )

    @property
    def quality_objective(self) -> str:
        return QUALITY[self.space]

    @property
    def hardware(self) -> tuple[str, ...]:
        return tuple(o for o in self.objectives if o in HARDWARE)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["objectives"] = list(self.objectives)
        d["targets"] = list(self.targets)
        d["supernet"] = dict(self.supernet)
        return d


@dataclass
class QualityOracle:
    """The quality objective's oracle: ``fn(codes) -> values`` (the objective's unit; NaN =
    invalid). ``queried`` records every answer (the search's budget is their count)."""

    objective: str
    fn: Callable[[list[tuple[int, ...]]], np.ndarray]
    source: str
    queried: dict[tuple[int, ...], float] = field(default_factory=dict)
    save: Callable[[Path], None] | None = None

    def __call__(self, codes: Sequence[Sequence[int]]) -> np.ndarray:
        todo = [tuple(int(v) for v in c) for c in codes]
        new = [c for c in dict.fromkeys(todo) if c not in self.queried]
        if new:
            vals = np.asarray(self.fn(new), dtype=np.float64).reshape(-1)
            for c, v in zip(new, vals, strict=True):
                self.queried[c] = float(v)
        return np.array([self.queried[c] for c in todo], dtype=np.float64)


def default_oracle(
    cfg: SpaceSearchConfig, progress: Callable[..., None] | None = None
) -> QualityOracle:
    """The quality oracle of ``cfg.quality`` for ``cfg.space`` (a supernet is trained here)."""
    if cfg.space == "gpt_s" and cfg.quality == "surrogate":
        from hilnas.pipeline.spaces.gpt_s.surrogates import load_surrogates

        sur = load_surrogates()
        return QualityOracle(
            "perplexity",
            lambda codes: sur.perplexity(np.asarray(codes, dtype=np.int64)),
            f"HW-GPT-Bench perplexity surrogate (sha256 {sur.sha256[:12]})",
        )
    if cfg.space == "gpt_s":
        from hilnas.pipeline.spaces.gpt_s.train import GPTTrainSettings, train_gpt_supernet

        gs = GPTTrainSettings(**dict(cfg.supernet))
        gpt = train_gpt_supernet(
            gs,
            progress=lambda step, steps, loss: _report(
                progress, "supernet training", step, steps, f"loss {loss:.3f}"
            ),
        )
        return QualityOracle(
            "perplexity",
            lambda codes: gpt.perplexity(codes),
            "GPT-S supernet on Shakespeare (validation perplexity)",
            save=gpt.save,
        )
    from hilnas.pipeline.spaces.ofa_mbv3.train import OFATrainSettings, train_ofa_supernet

    os_ = OFATrainSettings(**dict(cfg.supernet))
    ofa = train_ofa_supernet(
        os_,
        progress=lambda epoch, loss: _report(
            progress, "supernet training", epoch, os_.epochs, f"loss {loss:.3f}"
        ),
    )
    return QualityOracle(
        "error",
        lambda codes: 100.0 * np.asarray(ofa.error(codes), dtype=np.float64),
        "OFA supernet on the MNIST sample (validation top-1 error, %)",
        save=ofa.save,
    )


# ----------------------------------------------------------------------------------------------
# the trained search
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SpaceFrontPoint:
    """One architecture of a front (objectives in their units; ``quality_source``: surrogate =
    the quality model's prediction, queried = the oracle's answer read during the search).

    ``preference``: the preference whose argmax (or, with the greedy refinement, whose walk
    from its argmax) reached it; for any other architecture the refinement found (``refined``:
    not an argmax), the weighted-Tchebycheff preference whose optimum its normalised predicted
    objectives are (:func:`hilnas.pipeline.search.preferences_for`)."""

    arch: str
    preference: tuple[float, ...] | None
    objectives: dict[str, float]
    quality_source: str
    refined: bool = False


def _profile(values: np.ndarray) -> np.ndarray:
    logs = np.log(values)
    return logs - logs.mean()


class SpaceSearchModel:
    """A trained space search: hypernetwork, quality model, predictors and training targets."""

    def __init__(
        self,
        cfg: SpaceSearchConfig,
        hyper: Any,
        quality: Any,
        predictors: Mapping[str, Any],
        targets: Sequence[SpaceTarget],
        embed_scale: float,
        queried: Mapping[tuple[int, ...], float],
        info: Mapping[str, Any] | None = None,
        path: Path | None = None,
    ) -> None:
        self.cfg = cfg
        self.space = get_space(cfg.space)
        self.hyper = hyper.eval()
        self.quality = quality.eval()
        self.predictors = dict(predictors)
        self.targets = list(targets)
        self.embed_scale = float(embed_scale)
        self.queried = dict(queried)
        self.info = dict(info or {})
        self.path = path
        self._bounds_cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def objectives(self) -> tuple[str, ...]:
        return self.cfg.objectives  # type: ignore[return-value]

    # ----- targets and embeddings ------------------------------------------------------------
    def target(self, target: str | SpaceTarget, store: Any = None) -> SpaceTarget:
        """A training target by name, any other target resolved (zero-shot), or as given."""
        if isinstance(target, SpaceTarget):
            return target
        for t in self.targets:
            if t.name == target:
                return t
        return resolve_target(self.cfg.space, target, self.cfg.hardware, store)

    def embedding(self, target: SpaceTarget) -> np.ndarray:
        parts = [_profile(target.values(m)) / self.embed_scale for m in self.cfg.hardware]
        return np.concatenate(parts).astype(np.float32)

    # ----- predicted objectives --------------------------------------------------------------
    def predict(self, codes: Sequence[Sequence[int]], target: SpaceTarget) -> np.ndarray:
        """``(n, M)`` predicted objectives (quality: the model, or the queried value)."""
        import torch

        codes = [tuple(int(v) for v in c) for c in codes]
        out = np.zeros((len(codes), len(self.objectives)))
        # the masked one-hot is both the quality model's input and the first block of the
        # predictors' features (predictors.space.arch_features), computed once
        onehot = self.space.one_hot_batch(codes)[:, self.space.option_mask]
        feats = None
        for j, o in enumerate(self.objectives):
            if o in HARDWARE:
                if feats is None:
                    cost = self.space.cost_features_batch(codes).astype(np.float64)
                    feats = np.concatenate(
                        [onehot.astype(np.float64), np.log1p(np.maximum(cost, 0.0))], axis=1
                    )
                out[:, j] = self.predictors[o].predict_features(feats, target.values(o))
            else:
                threads = torch.get_num_threads()
                torch.set_num_threads(1)  # tiny MLPs: threads only contend
                try:
                    extra = None
                    if self.quality.n_extra:
                        from hilnas.pipeline.spacesearch.models import cost_extras

                        extra = cost_extras(self.space, codes)
                    pred = self.quality.predict(onehot.astype(np.float32), extra)
                finally:
                    torch.set_num_threads(threads)
                known = np.array([self.queried.get(c, np.nan) for c in codes])
                out[:, j] = np.where(np.isfinite(known), known, pred)
        return out

    def _bounds(self, target: SpaceTarget) -> tuple[np.ndarray, np.ndarray]:
        key = json.dumps(target.to_json(), sort_keys=True)
        if key not in self._bounds_cache:
            pool = self.space.sample(min(1000, self.cfg.pool), seed=self.cfg.seed + 7)
            V = self.predict(pool, target)
            self._bounds_cache[key] = (np.nanmin(V, 0), np.nanmax(V, 0))
        return self._bounds_cache[key]

    # ----- the hypernetwork's choices --------------------------------------------------------
    def architectures(self, target: SpaceTarget, prefs: np.ndarray) -> list[tuple[int, ...]]:
        """The canonical argmax architecture for each preference row."""
        import torch

        h = torch.as_tensor(self.embedding(target))
        r = torch.as_tensor(np.asarray(prefs, dtype=np.float32))
        with torch.no_grad():
            logits = self.hyper(r, h).masked_fill(
                ~torch.as_tensor(self.space.option_mask), float("-inf")
            )
        codes = logits.argmax(-1).numpy()
        return [self.space.canonical(tuple(int(v) for v in c)) for c in codes]

    def _neighbours(self, code: tuple[int, ...]) -> list[tuple[int, ...]]:
        active = self.space.active_mask(code) if self.space.conditional else None
        out = set()
        for d, k in enumerate(self.space.option_counts):
            if active is not None and not active[d]:
                continue
            for o in range(k):
                if o != code[d]:
                    c = list(code)
                    c[d] = o
                    out.add(self.space.canonical(c))
        out.discard(code)
        return sorted(out)

    def _refine(
        self, start: list[tuple[int, ...]], prefs: np.ndarray, target: SpaceTarget, passes: int = 3
    ) -> tuple[list[tuple[int, ...]], np.ndarray, dict[tuple[int, ...], np.ndarray]]:
        """Greedy single-decision walks from ``start`` on the scalarised predicted objectives;
        returns every architecture evaluated, its objectives, and the architectures a walk
        moved to with the preference of (the first) such walk."""
        from hilnas.pipeline.search import COST_EPS

        lo, hi = self._bounds(target)
        span = np.where(hi > lo, hi - lo, 1.0)
        seen: dict[tuple[int, ...], np.ndarray] = {}

        def values(codes: list[tuple[int, ...]]) -> np.ndarray:
            todo = [c for c in codes if c not in seen]
            if todo:
                for c, v in zip(todo, self.predict(todo, target), strict=True):
                    seen[c] = v
            return np.stack([seen[c] for c in codes])

        def score(V: np.ndarray, r: np.ndarray) -> np.ndarray:
            c = np.clip((V - lo) / span, 0.0, None) + COST_EPS
            return np.max(np.maximum(r, 1e-12) * c, axis=1)

        moved: dict[tuple[int, ...], np.ndarray] = {}
        values(start)
        for code, r in zip(start, prefs, strict=True):
            cur = code
            for _ in range(passes):
                nb = self._neighbours(cur)
                if not nb:
                    break
                cand = [cur, *nb]
                s = score(values(cand), r)
                best = int(np.argmin(s))
                if best == 0:
                    break
                cur = cand[best]
                moved.setdefault(cur, r)
        codes = list(seen)
        return codes, np.stack([seen[c] for c in codes]), moved

    def _predicted_search(
        self,
        start: list[tuple[int, ...]],
        target: SpaceTarget,
        sub: Sequence[int],
        evaluations: int,
    ) -> tuple[list[tuple[int, ...]], np.ndarray]:
        """NSGA-II on the *predicted* objectives ``sub`` (no oracle query), its initial
        population seeded with ``start`` (the hypernetwork's choices); returns every
        architecture it evaluated (``start`` included) with all predicted objectives."""
        from hilnas.pipeline.spacesearch.baselines import nsga2
        from hilnas.pipeline.spacesearch.problem import OracleProblem

        seen: dict[tuple[int, ...], np.ndarray] = {}
        last: dict[str, Any] = {"archs": None, "V": None}

        def batch(archs: list[tuple[int, ...]]) -> np.ndarray:
            if last["archs"] is not archs:
                V = self.predict(archs, target)
                for c, v in zip(archs, V, strict=True):
                    seen[c] = v
                last["archs"], last["V"] = archs, V
            return last["V"]

        names = [self.objectives[j] for j in sub]
        lo, hi = self._bounds(target)
        problem = OracleProblem(
            self.space,
            f"{target.name} (predicted)",
            names,
            {o: (lambda archs, j=j: batch(archs)[:, j]) for o, j in zip(names, sub, strict=True)},
            bounds=(lo[list(sub)], np.maximum(hi[list(sub)], lo[list(sub)])),
        )
        n = int(min(evaluations, self.space.size()))
        nsga2(
            problem,
            n,
            seed=self.cfg.seed,
            pop_size=FRONT_POP_SIZE,
            initial=np.asarray(start, dtype=np.int64),
        )
        missing = [c for c in dict.fromkeys(start) if c not in seen]
        if missing:
            for c, v in zip(missing, self.predict(missing, target), strict=True):
                seen[c] = v
        codes = list(seen)
        return codes, np.stack([seen[c] for c in codes])

    def front(
        self,
        target: str | SpaceTarget,
        *,
        points: int | None = None,
        preference: Sequence[float] | None = None,
        refine: bool = True,
        store: Any = None,
        objectives: Sequence[str] | None = None,
        evaluations: int | None = None,
    ) -> list[SpaceFrontPoint]:
        """The front for ``target`` (see the module docstring); ``preference`` -> one point.

        ``objectives``: a subset (at least two) of the search's objectives: the sweep then puts
        no weight on the others (a face of the preference simplex), and the front is
        non-dominated in the subset, so one three-objective search also answers every
        two-objective question. The points carry every objective of the search.

        ``refine`` (a sweep only): ``evaluations`` > 0 runs NSGA-II for that many architectures
        on the PREDICTED objectives (quality model and cost predictors; no oracle query),
        seeded with the hypernetwork's choices, and keeps every architecture it evaluated;
        ``evaluations=0`` is the greedy single-decision walk from each choice instead; None:
        the space's :data:`SPACE_FRONT_EVALUATIONS`.
        ``points=None`` returns every non-dominated architecture found.
        """
        if evaluations is None:
            evaluations = SPACE_FRONT_EVALUATIONS.get(self.cfg.space, FRONT_EVALUATIONS)
        check_number(
            "evaluations",
            evaluations,
            low=0,
            high=MAX_FRONT_EVALUATIONS,
            fix=f"use 0 (greedy walk) to {MAX_FRONT_EVALUATIONS:,}",
        )
        from hilnas.pipeline.search import preferences_for, spread_subset

        tgt = self.target(target, store)
        m = len(self.objectives)
        sub = list(range(m))
        if objectives is not None:
            names = parse_objectives(self.cfg.space, objectives)
            missing = [o for o in names if o not in self.objectives]
            if missing:
                raise InvalidInputError(
                    f"objective(s) {', '.join(missing)} are not in this search "
                    f"({', '.join(self.objectives)}); run a search with them"
                )
            sub = [self.objectives.index(o) for o in names]
        if preference is not None:
            prefs = mo.validate_preference(preference, m)[None, :]
        else:
            k = 100 if points is None else int(points)
            face = mo.uniform_preferences(len(sub), max(24, min(2 * k, 200)))
            prefs = np.zeros((len(face), m))
            prefs[:, sub] = face
        chosen = self.architectures(tgt, prefs)
        pref_of: dict[tuple[int, ...], tuple[float, ...]] = {}
        for c, r in zip(chosen, prefs, strict=True):
            pref_of.setdefault(c, tuple(float(x) for x in r))
        argmax = set(pref_of)
        if refine and preference is None and evaluations > 0:
            codes, V = self._predicted_search(chosen, tgt, sub, int(evaluations))
        elif refine and preference is None:
            codes, V, moved = self._refine(chosen, prefs, tgt)
            for c, r in moved.items():
                pref_of.setdefault(c, tuple(float(x) for x in r))
        else:
            codes = list(dict.fromkeys(chosen))
            V = self.predict(codes, tgt)
        if preference is not None:
            keep = np.arange(len(codes))
        else:
            W = V[:, sub]
            ok = np.all(np.isfinite(V), axis=1)
            keep = np.flatnonzero(ok)[mo.pareto_mask(W[ok])] if ok.any() else np.zeros(0, int)
            if points is not None and len(keep) > points:
                keep = keep[spread_subset(W[keep], int(points))]
        q = self.cfg.quality_objective
        lo, hi = self._bounds(tgt)
        aimed = np.zeros((len(codes), m))
        aimed[:, sub] = preferences_for(
            np.clip((V[:, sub] - lo[sub]) / np.where(hi > lo, hi - lo, 1.0)[sub], 0.0, None)
        )
        out = []
        for i in keep[np.argsort(V[keep, 0], kind="stable")]:
            c = codes[i]
            pref_of.setdefault(c, tuple(float(x) for x in aimed[i]))
            out.append(
                SpaceFrontPoint(
                    arch=self.space.format(c),
                    preference=pref_of.get(c),
                    objectives={o: float(V[i, j]) for j, o in enumerate(self.objectives)},
                    quality_source="queried" if c in self.queried else "surrogate",
                    refined=c not in argmax,
                )
            )
        if q not in self.objectives:
            for p in out:
                object.__setattr__(p, "quality_source", "")
        return out

    # ----- persistence -----------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "run_id": self.path.name if self.path else None,
            "space": self.cfg.space,
            "mode": f"space-{self.cfg.quality}",
            "objectives": list(self.objectives),
            "train_targets": [t.name for t in self.targets],
            "queries_used": len(self.queried),
            **{k: v for k, v in self.info.items() if k in ("wall_s", "oracle", "cost_fidelity")},
        }

    def save(self) -> Path:
        """Save under ``HILNAS_HOME/search/<run-id>/`` (atomically) and point ``latest`` and
        ``latest-<space>`` at it."""
        from hilnas.pipeline.search import (
            HYPERNET_FILE,
            _save_run,
            _state_dict_bytes,
            _write_pointer,
            search_root,
        )

        settings = {
            "format": FORMAT,
            "mode": f"space-{self.cfg.quality}",
            "space": self.cfg.space,
            "seed": self.cfg.seed,
            "objectives": list(self.objectives),
            "config": self.cfg.to_dict(),
            "hypernet": self.hyper.config(),
            "quality_model": self.quality.config(),
            "embed_scale": self.embed_scale,
            "train_targets": [t.to_json() for t in self.targets],
            "queried": [[list(c), v] for c, v in self.queried.items()],
            "info": self.info,
        }
        files = {
            HYPERNET_FILE: _state_dict_bytes(self.hyper),
            "quality.safetensors": _state_dict_bytes(self.quality),
        }
        for metric, pred in self.predictors.items():
            files[f"predictor_{metric}.json"] = json.dumps(pred.to_json()).encode()
        started = datetime.fromisoformat(
            self.info.get("started", datetime.now(timezone.utc).isoformat())
        )
        path = _save_run(settings, files, started)
        _write_pointer(search_root(), f"latest-{self.cfg.space}", path.name)
        self.path = path
        return path

    @classmethod
    def load(cls, path: str | Path) -> SpaceSearchModel:
        """Load a saved space search; a damaged or foreign run raises DataIntegrityError."""
        from hilnas.pipeline.hypernet import MetaHypernetwork
        from hilnas.pipeline.predictors.space import load_predictor
        from hilnas.pipeline.search import (
            HYPERNET_FILE,
            SETTINGS_FILE,
            DamagedSearchError,
            _load_weights,
            _read_settings,
        )
        from hilnas.pipeline.spacesearch.models import QualityModel

        path = Path(path)
        settings = _read_settings(path / SETTINGS_FILE)
        if settings.get("format") != FORMAT:
            raise DamagedSearchError(path / SETTINGS_FILE, f"not a {FORMAT} run")
        try:
            raw = dict(settings["config"])
            raw["objectives"] = tuple(raw["objectives"])
            raw["targets"] = tuple(raw["targets"])
            cfg = SpaceSearchConfig(**raw)
            hyper = MetaHypernetwork(**settings["hypernet"])
            quality = QualityModel(**settings["quality_model"])
            targets = [SpaceTarget.from_json(t) for t in settings["train_targets"]]
            queried = {tuple(int(v) for v in c): float(x) for c, x in settings["queried"]}
            embed_scale = float(settings["embed_scale"])
        except (KeyError, TypeError, ValueError, InvalidInputError) as exc:
            raise DamagedSearchError(path / SETTINGS_FILE, f"bad settings ({exc})") from None
        _load_weights(hyper, path / HYPERNET_FILE)
        _load_weights(quality, path / "quality.safetensors")
        predictors = {}
        for metric in cfg.hardware:
            try:
                predictors[metric] = _load_cost_model(
                    path / f"predictor_{metric}.json", cfg.space, metric, load_predictor
                )
            except (DataIntegrityError, OSError) as exc:
                raise DamagedSearchError(path / f"predictor_{metric}.json", str(exc)) from None
        return cls(
            cfg,
            hyper,
            quality,
            predictors,
            targets,
            embed_scale,
            queried,
            settings.get("info", {}),
            path,
        )


def _load_cost_model(path: Path, space: str, metric: str, load_predictor: Any) -> Any:
    """A saved cost model: an oracle mix (``"kind": "oracle_mix"``) or a space predictor."""
    from hilnas.pipeline.predictors.oracle_mix import KIND, OracleMix

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = None
    if isinstance(data, dict) and data.get("kind") == KIND:
        try:
            mix = OracleMix.from_json(data)
        except (KeyError, TypeError, InvalidInputError) as exc:
            raise DataIntegrityError(f"{path}: bad oracle-mix model ({exc})") from None
        if mix.space != space or mix.metric != metric:
            raise DataIntegrityError(f"{path}: oracle mix of {mix.space}/{mix.metric}")
        return mix
    return load_predictor(path, space=space, metric=metric)


def latest_space_run(space: str) -> Path:
    """The newest saved search of ``space``."""
    from hilnas.pipeline.search import SearchNotFoundError, _read_pointer, resolve_run, search_root

    pointer = search_root() / f"latest-{space}"
    if not pointer.is_file():
        raise SearchNotFoundError(
            f"no {space} search has been run yet; run `hilnas search --space {space}` first"
        )
    return resolve_run(search_root() / _read_pointer(pointer))


# ----------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------
def _report(
    progress: Callable[..., None] | None, stage: str, done: int, total: int, note: str = ""
) -> None:
    if progress is not None:
        progress(stage, done, total, note)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from hilnas.pipeline.predictors import spearman  # no scipy.stats import (seconds)

    return float(spearman(a, b))


def train_space_search(
    cfg: SpaceSearchConfig,
    targets: Sequence[SpaceTarget],
    predictors: Mapping[str, Any],
    oracle: QualityOracle,
    *,
    progress: Callable[..., None] | None = None,
) -> SpaceSearchModel:
    """Train the hypernetwork for ``targets`` (see the module docstring); nothing is saved."""
    import torch
    from hilnas.pipeline.hypernet import MetaHypernetwork, ReinMaxSampler
    from hilnas.pipeline.predictors.space import arch_features
    from hilnas.pipeline.search import (
        _annealed_scale,
        _set_grads,
        _standardised_logits,
        scalarize,
    )
    from hilnas.pipeline.spacesearch.models import (
        CostNet,
        QualityModel,
        cost_extras,
        masked_onehot,
    )
    from hilnas.pipeline.spacesearch.problem import canonical_batch

    started = time.perf_counter()
    start_iso = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    torch.manual_seed(cfg.seed)
    space = get_space(cfg.space)
    objs, hw = cfg.objectives, cfg.hardware
    T, M = len(targets), len(objs)
    if T < 1:
        raise InvalidInputError("a search needs at least one training target")
    quality_on = cfg.quality_objective in objs

    # ---- the pool: normalisation bounds and the cost networks' training data -----------------
    refs = [space.parse(s) for s in space.reference_strings()]
    pool = space.sample(cfg.pool, seed=cfg.seed, exclude=refs) + refs
    pool_x = masked_onehot(space, pool)
    feats = arch_features(space, pool)
    hold = np.arange(len(pool)) % 10 == 0
    cost_nets: dict[str, Any] = {}
    fidelity: dict[str, float] = {}
    pool_cost: dict[str, np.ndarray] = {}
    for i, m in enumerate(hw):
        _report(progress, "cost models", i, len(hw), m)
        logs = np.stack(
            [np.log(predictors[m].predict_features(feats, t.values(m))) for t in targets], axis=1
        )
        pool_cost[m] = np.exp(logs)
        net = CostNet(pool_x.shape[1], T, hidden=cfg.hidden)
        net.fit(pool_x[~hold], logs[~hold], seed=cfg.seed + i)
        with torch.no_grad():
            out = net(torch.as_tensor(pool_x[hold])).numpy()
        fidelity[m] = float(np.mean([_spearman(out[:, t], logs[hold, t]) for t in range(T)]))
        net.requires_grad_(False)
        cost_nets[m] = net
    _report(progress, "cost models", len(hw), len(hw), "")

    # ---- hardware embeddings -----------------------------------------------------------------
    profiles = np.stack([np.concatenate([_profile(t.values(m)) for m in hw]) for t in targets])
    embed_scale = float(profiles.std()) if profiles.std() > 0 else 1.0
    H = torch.as_tensor(profiles / embed_scale, dtype=torch.float32)

    hyper = MetaHypernetwork(
        num_objectives=M,
        embed_dim=H.shape[1],
        num_decisions=space.num_decisions,
        num_options=space.max_options,
        hidden=cfg.hidden,
    )
    opt = torch.optim.Adam(hyper.parameters(), lr=cfg.lr)
    sampler = ReinMaxSampler()
    option_mask = torch.as_tensor(space.option_mask)
    flat_mask = option_mask.reshape(-1)
    gen = torch.Generator().manual_seed(cfg.seed)
    n_extra = len(space.cost_feature_names) if cfg.quality_extras else 0
    quality = QualityModel(pool_x.shape[1], n_extra=n_extra)
    pool_e = cost_extras(space, pool) if n_extra else None

    def extras(codes: Any) -> np.ndarray | None:
        return cost_extras(space, codes) if n_extra else None

    # ---- quality: the first round's queries ---------------------------------------------------
    budget = cfg.queries if quality_on else 0
    per_round = [budget // cfg.rounds] * cfg.rounds
    per_round[0] += budget - sum(per_round)
    if quality_on:
        first = list(refs)[: per_round[0]]
        first += space.sample(per_round[0] - len(first), seed=cfg.seed + 1, exclude=first)
        _report(progress, "quality queries", 0, budget, oracle.source)
        oracle(first)

    def refit_quality(round_no: int) -> tuple[float, float]:
        codes = [c for c, v in oracle.queried.items() if np.isfinite(v)]
        vals = np.array([oracle.queried[c] for c in codes])
        quality.fit(
            masked_onehot(space, codes), vals, seed=cfg.seed + 100 * round_no, extra=extras(codes)
        )
        pred = quality.predict(pool_x, pool_e)
        return float(np.min(pred)), float(np.max(pred))

    def bounds() -> tuple[torch.Tensor, torch.Tensor]:
        lo = np.zeros((T, M))
        hi = np.ones((T, M))
        for j, o in enumerate(objs):
            if o in HARDWARE:
                lo[:, j] = pool_cost[o].min(0)
                hi[:, j] = pool_cost[o].max(0)
            else:
                lo[:, j], hi[:, j] = q_lo, q_hi
        return torch.as_tensor(lo, dtype=torch.float32), torch.as_tensor(hi, dtype=torch.float32)

    q_lo, q_hi = refit_quality(0) if quality_on else (0.0, 1.0)
    lo_t, hi_t = bounds()
    params = [p for p in hyper.parameters() if p.requires_grad]
    dirichlet = torch.distributions.Dirichlet(torch.ones(M))
    corner = torch.distributions.Dirichlet(torch.full((M,), 0.3))
    P = cfg.prefs_per_target
    rows = torch.arange(T).repeat_interleave(P)
    losses_log: list[float] = []
    steps_done = 0
    round_steps = [cfg.steps // cfg.rounds] * cfg.rounds
    round_steps[-1] += cfg.steps - sum(round_steps)

    for rnd in range(cfg.rounds):
        if rnd > 0 and quality_on and per_round[rnd] > 0:
            if cfg.query_strategy == "front":
                probe = SpaceSearchModel(
                    cfg, hyper, quality, predictors, targets, embed_scale, oracle.queried
                )
                _query_fronts(
                    probe,
                    oracle,
                    per_round[rnd],
                    cfg.seed + rnd,
                    evaluations=2000 if cfg.space == "gpt_s" else 1000,
                )
                hyper.train()
            else:
                _propose_and_query(space, hyper, H, oracle, per_round[rnd], M, cfg.seed + rnd)
            q_lo, q_hi = refit_quality(rnd)
            lo_t, hi_t = bounds()
            _report(progress, "quality queries", len(oracle.queried), budget, "")
        hyper.train()
        for _ in range(round_steps[rnd]):
            frac = steps_done / max(cfg.steps - 1, 1)
            use_corner = torch.rand(len(rows), generator=gen) < 0.5
            r = torch.where(
                use_corner[:, None], corner.sample((len(rows),)), dirichlet.sample((len(rows),))
            ).clamp_min(1e-4)
            r = r / r.sum(-1, keepdim=True)
            logits = hyper(r, H[rows])
            z = _standardised_logits(logits, _annealed_scale(2.0, 4.0, frac))
            arch = sampler(z, progress=frac, mask=option_mask, generator=gen)
            codes = arch.detach().argmax(-1).numpy()
            act = torch.as_tensor(_active(space, codes), dtype=arch.dtype)
            x = (arch * act[..., None]).reshape(len(rows), -1)[:, flat_mask]
            cols = []
            for o in objs:
                if o in HARDWARE:
                    val = cost_nets[o](x).gather(1, rows[:, None]).squeeze(1).exp()
                else:
                    ex = extras(canonical_batch(space, codes)) if n_extra else None
                    val = quality(x, ex).exp()
                cols.append(val)
            raw = torch.stack(cols, dim=-1)
            c = (raw - lo_t[rows]) / (hi_t[rows] - lo_t[rows]).clamp_min(1e-9)
            loss_rows = scalarize(r, c, "tchebycheff")
            per_target = loss_rows.view(T, P).mean(1)
            if cfg.mgda and T > 1:
                grads = []
                for t in range(T):
                    g = torch.autograd.grad(per_target[t], params, retain_graph=t < T - 1)
                    flat = torch.cat([x.reshape(-1) for x in g])
                    grads.append(flat / flat.norm().clamp_min(1e-12))
                G = torch.stack(grads)
                gamma = mo.min_norm_solver(G).to(G.dtype)
                _set_grads(params, gamma @ G)
            else:
                opt.zero_grad(set_to_none=True)
                per_target.mean().backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses_log.append(float(per_target.detach().mean()))
            steps_done += 1
            if steps_done % 25 == 0 or steps_done == cfg.steps:
                _report(
                    progress, "hypernetwork", steps_done, cfg.steps, f"loss {losses_log[-1]:.3f}"
                )

    info = {
        "started": start_iso,
        "wall_s": round(time.perf_counter() - started, 2),
        "oracle": oracle.source if quality_on else None,
        "queries_used": len(oracle.queried) if quality_on else 0,
        "cost_fidelity": {m: round(v, 4) for m, v in fidelity.items()},
        "final_loss": float(np.mean(losses_log[-25:])) if losses_log else None,
        "predictors": {
            m: hashlib.sha256(json.dumps(predictors[m].to_json()).encode()).hexdigest()[:16]
            for m in hw
        },
    }
    return SpaceSearchModel(
        cfg,
        hyper,
        quality,
        {m: predictors[m] for m in hw},
        targets,
        embed_scale,
        oracle.queried if quality_on else {},
        info,
    )


def _active(space: Any, codes: np.ndarray) -> np.ndarray:
    from hilnas.pipeline.spacesearch.models import active_rows

    return active_rows(space, codes)


def _propose_and_query(
    space, hyper, H, oracle: QualityOracle, quota: int, M: int, seed: int
) -> None:
    """Query up to ``quota`` new architectures: those the hypernetwork picks for the most
    training targets over a preference sweep, then random ones to fill the quota."""
    import torch

    prefs = torch.as_tensor(mo.uniform_preferences(M, 32), dtype=torch.float32)
    counts: dict[tuple[int, ...], int] = {}
    with torch.no_grad():
        mask = torch.as_tensor(space.option_mask)
        for t in range(H.shape[0]):
            logits = hyper(prefs, H[t]).masked_fill(~mask, float("-inf"))
            for c in logits.argmax(-1).numpy():
                code = space.canonical(tuple(int(v) for v in c))
                counts[code] = counts.get(code, 0) + 1
    fresh = [c for c, _ in sorted(counts.items(), key=lambda kv: -kv[1]) if c not in oracle.queried]
    pick = fresh[:quota]
    if len(pick) < quota:
        pick += space.sample(quota - len(pick), seed=seed, exclude=list(oracle.queried) + pick)
    oracle(pick)


def _query_fronts(
    probe: SpaceSearchModel,
    oracle: QualityOracle,
    quota: int,
    seed: int,
    evaluations: int = 2000,
) -> None:
    """Query up to ``quota`` new architectures where the fronts are: the union of every
    training target's predicted front (all objectives, :meth:`SpaceSearchModel.front` with a
    ``evaluations``-architecture predicted NSGA-II, no oracle query), cut into ``quota``
    equal-count bins by predicted quality, the most uncertain (ensemble spread) of each bin;
    random architectures fill what is left."""
    space = probe.space
    cand: dict[tuple[int, ...], float] = {}
    for t in probe.targets:
        for p in probe.front(t, evaluations=evaluations):
            c = space.parse(p.arch)
            if c not in oracle.queried:
                cand[c] = p.objectives[probe.cfg.quality_objective]
    pick: list[tuple[int, ...]] = []
    if cand:
        from hilnas.pipeline.spacesearch.models import cost_extras, masked_onehot

        codes = list(cand)
        extra = cost_extras(space, codes) if probe.quality.n_extra else None
        spread = probe.quality.uncertainty(masked_onehot(space, codes), extra)
        order = np.argsort(np.array([cand[c] for c in codes]), kind="stable")
        for part in np.array_split(order, min(quota, len(codes))):
            if len(part):
                pick.append(codes[int(part[np.argmax(spread[part])])])
    if len(pick) < quota:
        pick += space.sample(quota - len(pick), seed=seed, exclude=list(oracle.queried) + pick)
    oracle(pick)


def run_space_search(
    cfg: SpaceSearchConfig,
    *,
    store: Any = None,
    progress: Callable[..., None] | None = None,
    cache_dir: str | Path | None = None,
) -> Path:
    """Resolve the targets, build the predictors and the quality oracle, train, save."""
    from hilnas.pipeline.home import home_dir
    from hilnas.pipeline.spacesearch.targets import cost_predictor

    names = list(cfg.targets) or reference_targets(cfg.space, cfg.hardware)
    if not names:
        raise InvalidInputError(
            f"no {cfg.space} reference device has {', '.join(cfg.hardware)}; name targets with "
            "--devices (profiled or imported devices with those reference measurements)"
        )
    targets = [resolve_target(cfg.space, n, cfg.hardware, store) for n in names]
    cache = Path(cache_dir) if cache_dir else home_dir() / "models" / "spaces"
    cache.mkdir(parents=True, exist_ok=True)
    predictors = {}
    for m in cfg.hardware:
        _report(progress, "predictors", 0, 1, m)
        # the space's default cost model (targets.DEFAULT_COST_MODEL; else the space predictor)
        predictors[m] = cost_predictor(cfg.space, m, cache_dir=cache)
    oracle = (
        default_oracle(cfg, progress)
        if cfg.quality_objective in cfg.objectives
        else QualityOracle(cfg.quality_objective, lambda c: np.full(len(c), math.nan), "none")
    )
    model = train_space_search(cfg, targets, predictors, oracle, progress=progress)
    path = model.save()
    if oracle.save is not None:
        oracle.save(path / "supernet")
    return path
