"""Per-device search baselines for any registered search space, with a budget of oracle calls.

Both baselines take an :class:`~hilnas.pipeline.spacesearch.problem.OracleProblem` and spend
exactly ``budget`` *oracle evaluations*: one evaluation is one distinct canonical architecture
whose objectives are asked of the oracle. Two codes of the same network (they differ only in
inactive decisions) are one architecture, and no architecture is ever evaluated twice. What a
baseline found is the non-dominated subset of the VALID rows it evaluated; a row with a NaN
objective (e.g. an energy surrogate's prediction <= 0) is kept in ``F`` but never reaches a
front.

- :func:`random_search`: ``space.sample(budget, seed)``, the space's own uniform sampler
  (distinct canonical networks).
- :func:`nsga2`: pymoo's NSGA-II on integer variables, decision ``d`` in
  ``[0, option_counts[d] - 1]``, driven through pymoo's ask/tell interface:

  * initial population: the ``initial`` codes given, if any, filled up with
    ``space.sample(pop_size, seed)``;
  * variation: uniform crossover (probability 0.9) and a categorical mutation that resamples
    each decision with two or more options, with probability 1 / (number of such decisions),
    to one of its OTHER options (at least one per offspring);
  * repair: every offspring is made canonical (``space.canonical``: inactive decisions set to
    0), so a network has one code;
  * duplicates are eliminated on the canonical code against the current population, the
    offspring of the generation AND every architecture evaluated so far, so each offspring
    costs one evaluation;
  * an architecture whose objectives contain a NaN is infeasible (one pymoo inequality
    constraint, violation 1): it ranks behind every valid one and never joins the front;
  * counting: the run stops as soon as ``budget`` distinct architectures were evaluated; the
    last generation is cut to what the budget has left. When mating cannot produce a new
    architecture (a nearly exhausted small space), the generation is filled with unevaluated
    architectures from ``space.sample``, so the count is exactly ``budget`` whenever
    ``budget <= space.size()``.

Both are deterministic for ``(seed, space, device)``; different devices draw independent
streams from the same seed.
"""

from __future__ import annotations

import dataclasses
import time
import zlib
from typing import Any

import numpy as np
from hilnas.devices.errors import InvalidInputError
from hilnas.pipeline.spacesearch.problem import OracleProblem, canonical_batch, valid_front_mask

__all__ = [
    "SpaceBaselineResult",
    "default_pop_size",
    "nsga2",
    "random_search",
    "run_baseline",
]

#: Objective value given to pymoo for an invalid (NaN) entry; such rows are infeasible, so the
#: value only keeps pymoo's arrays finite and is never ranked.
_INVALID_FILL = 1e30


@dataclasses.dataclass(frozen=True)
class SpaceBaselineResult:
    """What one baseline run evaluated and found on one device.

    ``codes`` ``(n, D)`` int64 are the canonical architectures in evaluation order, ``F``
    ``(n, M)`` their raw objective values (NaN = invalid), ``front_index`` the positions of the
    non-dominated valid rows; ``hv`` the problem's normalised hypervolume of that front.
    """

    method: str
    space: str
    device: str
    objectives: tuple[str, ...]
    budget: int
    seed: int
    codes: np.ndarray
    F: np.ndarray
    front_index: np.ndarray
    hv: float
    wall_s: float

    @property
    def evaluations(self) -> int:
        """Oracle evaluations spent (distinct canonical architectures)."""
        return int(len(self.codes))

    @property
    def front(self) -> np.ndarray:
        """``(k, M)`` raw objective values of the non-dominated valid rows."""
        return self.F[self.front_index]

    @property
    def front_codes(self) -> np.ndarray:
        """``(k, D)`` canonical codes of the front."""
        return self.codes[self.front_index]

    @property
    def invalid(self) -> int:
        """Evaluated architectures with at least one NaN objective."""
        return int((~np.all(np.isfinite(self.F), axis=1)).sum())

    def summary(self) -> dict[str, Any]:
        """Plain data (JSON-ready): identity, evaluations, invalid rows, front size, hv, wall."""
        return {
            "method": self.method,
            "space": self.space,
            "device": self.device,
            "objectives": list(self.objectives),
            "budget": self.budget,
            "seed": self.seed,
            "evaluations": self.evaluations,
            "invalid": self.invalid,
            "front_size": int(len(self.front_index)),
            "hv": self.hv,
            "wall_s": self.wall_s,
        }


def _check_budget(problem: OracleProblem, budget: Any) -> int:
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or int(budget) < 1:
        raise InvalidInputError(
            f"budget must be a positive integer number of oracle evaluations, got {budget!r}"
        )
    size = problem.space.size()
    if int(budget) > size:
        raise InvalidInputError(
            f"budget {budget} exceeds the {size} architectures of {problem.space.name}; "
            "ask for fewer evaluations"
        )
    return int(budget)


def _stream(seed: int, problem: OracleProblem, salt: str = "") -> int:
    """One int seed per (seed, space, device): independent streams for different devices."""
    tag = zlib.crc32(f"{problem.space.name}/{problem.device}/{salt}".encode())
    return int(np.random.SeedSequence([int(seed), tag]).generate_state(1)[0])


def _result(
    method: str,
    problem: OracleProblem,
    budget: int,
    seed: int,
    codes: np.ndarray,
    F: np.ndarray,
    t0: float,
) -> SpaceBaselineResult:
    codes = np.asarray(codes, dtype=np.int64).reshape(-1, problem.space.num_decisions)
    F = np.asarray(F, dtype=np.float64).reshape(-1, problem.n_obj)
    front_index = np.flatnonzero(valid_front_mask(F))
    for arr in (codes, F, front_index):
        arr.setflags(write=False)
    hv = problem.hv(F[front_index])
    return SpaceBaselineResult(
        method=method,
        space=problem.space.name,
        device=problem.device,
        objectives=problem.objectives,
        budget=budget,
        seed=int(seed),
        codes=codes,
        F=F,
        front_index=front_index,
        hv=hv,
        wall_s=time.perf_counter() - t0,
    )


# ----------------------------------------------------------------------------- random
def random_search(problem: OracleProblem, budget: int, seed: int = 0) -> SpaceBaselineResult:
    """Evaluate ``budget`` distinct canonical architectures drawn by ``space.sample`` (seeded).

    Raises :class:`InvalidInputError` for a budget below 1 or above the space's size.
    """
    t0 = time.perf_counter()
    budget = _check_budget(problem, budget)
    codes = np.asarray(problem.space.sample(budget, seed=_stream(seed, problem)), dtype=np.int64)
    F = problem.evaluate(codes)
    return _result("random", problem, budget, seed, codes, F, t0)


# ----------------------------------------------------------------------------- NSGA-II
def default_pop_size(budget: int) -> int:
    """Population size for a budget: ``budget / 200`` between 10 and 100 (10 up to 3,000
    evaluations, 100 from 20,000).

    Measured on gpt_s (a100, P100, cpu_xeon_gold x the three objective sets x 3 seeds, mean
    normalised HV): at 100 evaluations pop 10 and 20 tie (0.559) and beat 6 (0.538); at 1,000
    pop 10 beat 20, 32 and 50 (0.678 / 0.662 / 0.662 / 0.642; random 0.601); at 20,000 on
    P100 perplexity-energy pop 50, 100 and 200 are within 0.5 % (100 is the default).
    """
    return int(min(100, max(10, round(float(budget) / 200))))


def _keys(X: np.ndarray) -> list[bytes]:
    return [row.tobytes() for row in np.ascontiguousarray(np.asarray(X, dtype=np.int64))]


def _pymoo_parts(
    problem: OracleProblem, archive: set[bytes], mutation_rate: float | None = None
) -> tuple[Any, Any, Any]:
    """Repair, duplicate elimination and mutation bound to one space and one run's archive."""
    from pymoo.core.duplicate import DuplicateElimination
    from pymoo.core.mutation import Mutation
    from pymoo.core.repair import Repair

    space = problem.space
    counts = np.asarray(space.option_counts, dtype=np.int64)
    mutable = counts > 1

    class CanonicalRepair(Repair):
        """Round into range, then set inactive decisions to 0 (``space.canonical``)."""

        def _do(self, pm_problem, X, **kwargs):
            X = np.rint(np.asarray(X, dtype=np.float64))
            X = np.clip(X, 0, counts - 1).astype(np.int64)
            return canonical_batch(space, X)

    class ArchiveDuplicates(DuplicateElimination):
        """Duplicates on the canonical code: within the batch, against ``other`` and against
        every architecture evaluated so far in this run."""

        def _do(self, pop, other, is_duplicate):
            seen = set() if other is None else set(_keys(other.get("X")))
            for i, key in enumerate(_keys(pop.get("X"))):
                if key in archive or key in seen:
                    is_duplicate[i] = True
                elif other is None:
                    seen.add(key)
            return is_duplicate

    class CategoricalMutation(Mutation):
        """Resample decisions (rate 1 / mutable decisions) to another of their options."""

        def _do(self, pm_problem, X, random_state=None, **kwargs):
            rng = random_state if random_state is not None else np.random.default_rng()
            X = np.asarray(X).astype(np.int64, copy=True)
            if len(X) == 0 or not mutable.any():
                return X
            rate = mutation_rate if mutation_rate is not None else 1.0 / int(mutable.sum())
            hit = (rng.random(X.shape) < rate) & mutable
            none = np.flatnonzero(~hit.any(axis=1))
            if none.size:
                choices = np.flatnonzero(mutable)
                hit[none, rng.choice(choices, size=none.size)] = True
            shift = rng.integers(1, np.maximum(counts, 2), size=X.shape)
            X[hit] = ((X + shift) % counts)[hit]
            return X

    return CanonicalRepair(), ArchiveDuplicates(), CategoricalMutation()


def nsga2(
    problem: OracleProblem,
    budget: int,
    seed: int = 0,
    pop_size: int | None = None,
    mutation_rate: float | None = None,
    initial: Any = None,
) -> SpaceBaselineResult:
    """pymoo's NSGA-II on ``problem``, stopped after exactly ``budget`` oracle evaluations
    (distinct canonical architectures; see the module docstring for operators and counting).

    ``pop_size`` defaults to :func:`default_pop_size` and is capped at ``budget``;
    ``mutation_rate`` (per decision) to 1 / (decisions with two or more options): on gpt_s
    (4 devices x 3 objective sets x 3 seeds) twice that tied (mean HV 0.517 vs 0.513 at 100
    evaluations, 0.664 vs 0.663 at 1,000) and four times lost at 1,000 (0.624). NaN
    objectives are infeasible and never in the result's front. ``initial``: codes that seed
    the initial population (canonicalised, duplicates dropped, at most ``pop_size`` of them,
    the rest drawn by ``space.sample``); each is one of the evaluations. Raises
    :class:`InvalidInputError` for a budget below 1 or above the space's size, or a
    ``pop_size`` below 2 or a ``mutation_rate`` outside (0, 1].
    """
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.evaluator import Evaluator
    from pymoo.core.population import Population
    from pymoo.core.problem import Problem
    from pymoo.core.termination import NoTermination
    from pymoo.operators.crossover.ux import UniformCrossover
    from pymoo.problems.static import StaticProblem

    t0 = time.perf_counter()
    budget = _check_budget(problem, budget)
    pop = int(pop_size) if pop_size is not None else default_pop_size(budget)
    if isinstance(pop_size, bool) or pop < 2:
        raise InvalidInputError(f"pop_size must be an integer >= 2, got {pop_size!r}")
    pop = max(2, min(pop, budget))
    space = problem.space
    D = space.num_decisions
    counts = np.asarray(space.option_counts, dtype=np.int64)
    archive: set[bytes] = set()
    if mutation_rate is not None and not 0.0 < float(mutation_rate) <= 1.0:
        raise InvalidInputError(f"mutation_rate must be in (0, 1], got {mutation_rate!r}")
    repair, duplicates, mutation = _pymoo_parts(problem, archive, mutation_rate)
    pm_problem = Problem(
        n_var=D, n_obj=problem.n_obj, n_ieq_constr=1, xl=0, xu=counts - 1, vtype=int
    )
    stream = _stream(seed, problem)
    seeds = np.zeros((0, D), dtype=np.int64)
    if initial is not None and len(initial):
        seeds = canonical_batch(space, initial)
        seeds = seeds[np.sort(np.unique(seeds, axis=0, return_index=True)[1])][:pop]
    rest = space.sample(pop - len(seeds), seed=stream, exclude=[tuple(r) for r in seeds.tolist()])
    initial = np.concatenate([seeds, np.asarray(rest, dtype=np.int64).reshape(-1, D)], axis=0)
    algorithm = NSGA2(
        pop_size=pop,
        sampling=initial,
        crossover=UniformCrossover(prob=0.9),
        mutation=mutation,
        repair=repair,
        eliminate_duplicates=duplicates,
    )
    algorithm.setup(pm_problem, termination=NoTermination(), seed=stream, verbose=False)

    codes: list[np.ndarray] = []
    values: list[np.ndarray] = []
    spent = 0
    fills = 0
    while spent < budget:
        infills = algorithm.ask()
        if infills is None or len(infills) == 0:
            # mating found nothing new: top up with unevaluated architectures
            fills += 1
            k = min(pop, budget - spent)
            seen = [tuple(int(v) for v in row) for c in codes for row in c]
            X = np.asarray(
                space.sample(k, seed=_stream(seed, problem, f"fill{fills}"), exclude=seen),
                dtype=np.int64,
            ).reshape(-1, D)
            infills = Population.new(X=X)
        X = canonical_batch(space, infills.get("X").astype(np.int64))
        keep = [i for i, key in enumerate(_keys(X)) if key not in archive]
        keep = keep[: budget - spent]  # budget spent: the rest is never evaluated
        infills, X = infills[keep], X[keep]
        if len(X) == 0:
            continue
        F = problem.evaluate_canonical(X)
        archive.update(_keys(X))
        codes.append(X)
        values.append(F)
        spent += len(X)
        if spent >= budget:
            break
        invalid = ~np.all(np.isfinite(F), axis=1)
        G = np.where(invalid, 1.0, -1.0)[:, None]
        Fp = np.where(np.isfinite(F), F, _INVALID_FILL)
        infills.set("X", X)
        Evaluator().eval(StaticProblem(pm_problem, F=Fp, G=G), infills)
        algorithm.tell(infills=infills)
    all_codes = np.concatenate(codes, axis=0)
    all_F = np.concatenate(values, axis=0)
    return _result("nsga2", problem, budget, seed, all_codes, all_F, t0)


_METHODS = {"random": random_search, "nsga2": nsga2}


def run_baseline(method: str, problem: OracleProblem, budget: int, seed: int = 0, **kwargs: Any):
    """Dispatch by name: ``"random"`` or ``"nsga2"``."""
    try:
        fn = _METHODS[method]
    except KeyError:
        raise InvalidInputError(
            f"unknown baseline {method!r}; choose from {', '.join(_METHODS)}"
        ) from None
    return fn(problem, budget, seed, **kwargs)
