"""Per-device search baselines on NB201 with a budget of true evaluations.

Each baseline searches one device at a time and may query the true objectives (read from the
reference tables) of at most ``budget`` DISTINCT architectures: asking again for an architecture
already evaluated is free, as it would be with a cache in front of a real measurement. What a
baseline found is the non-dominated subset of what it evaluated, scored with
:mod:`hilnas.pipeline.fronts` (normalisation and reference point as in ``docs/method.md``).

- :func:`random_search`: ``budget`` distinct architectures drawn uniformly (the first ``budget``
  of one seeded permutation, so a larger budget extends the same run).
- :func:`nsga2`: pymoo's NSGA-II on the integer encoding (6 edges x 5 operations) driven through
  pymoo's ask/tell interface. Variation operators are injectable; the default is uniform
  crossover and a categorical mutation that resamples each edge with probability 1/6 (the
  operations have no order, so SBX/PM with rounding, also available, treat them as if they had).

Both are seeded and deterministic for a given (seed, device); different devices draw
independent random streams from the same seed.
"""

from __future__ import annotations

import dataclasses
import time
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from hilnas.devices.errors import InvalidInputError
from hilnas.pipeline.fronts import NB201Problem, nb201_problem

__all__ = [
    "NB201_DECISIONS",
    "NB201_OPTIONS",
    "BaselineResult",
    "nsga2",
    "random_search",
    "run_baseline",
]

NB201_DECISIONS = 6
NB201_OPTIONS = 5
_SPACE = NB201_OPTIONS**NB201_DECISIONS


@dataclasses.dataclass(frozen=True)
class BaselineResult:
    """What one baseline run evaluated and found on one device."""

    method: str
    device: str
    objectives: tuple[str, ...]
    budget: int
    seed: int
    evaluated: np.ndarray  # distinct NB201 indices, in evaluation order
    front: np.ndarray  # non-dominated indices among ``evaluated`` (error < 90 % only), sorted
    hv_ratio: float
    igd: float
    wall_s: float

    @property
    def evaluations(self) -> int:
        return int(self.evaluated.size)

    def summary(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "device": self.device,
            "objectives": list(self.objectives),
            "budget": self.budget,
            "seed": self.seed,
            "evaluations": self.evaluations,
            "front_size": int(self.front.size),
            "hv_ratio": self.hv_ratio,
            "igd": self.igd,
            "wall_s": self.wall_s,
        }


def _problem(device: str, objectives: Sequence[str], problem: NB201Problem | None) -> NB201Problem:
    if problem is not None:
        return problem
    return nb201_problem(device, tuple(objectives))


def _check_budget(budget: int) -> int:
    if isinstance(budget, bool) or int(budget) != budget or int(budget) < 1:
        raise InvalidInputError(
            f"budget must be a positive integer number of evaluations, got {budget!r}"
        )
    if int(budget) > _SPACE:
        raise InvalidInputError(f"budget {budget} exceeds the {_SPACE} architectures of NB201")
    return int(budget)


def _stream(seed: int, device: str) -> list[int]:
    """Seed sequence of a per-device run: independent streams for different devices."""
    return [int(seed), zlib.crc32(device.encode())]


def _result(
    method: str,
    p: NB201Problem,
    budget: int,
    seed: int,
    evaluated: list[int] | np.ndarray,
    t0: float,
) -> BaselineResult:
    ev = np.asarray(evaluated, dtype=np.int64)
    ev.setflags(write=False)
    front = p.front_of(ev)
    return BaselineResult(
        method=method,
        device=p.device,
        objectives=p.objectives,
        budget=budget,
        seed=seed,
        evaluated=ev,
        front=front,
        hv_ratio=p.hv_ratio(ev),
        igd=p.igd(ev),
        wall_s=time.perf_counter() - t0,
    )


def random_search(
    device: str,
    *,
    budget: int,
    objectives: Sequence[str] = ("error", "latency_ms"),
    seed: int = 0,
    problem: NB201Problem | None = None,
) -> BaselineResult:
    """Evaluate ``budget`` distinct architectures drawn uniformly at random (seeded)."""
    t0 = time.perf_counter()
    budget = _check_budget(budget)
    p = _problem(device, objectives, problem)
    rng = np.random.default_rng(_stream(seed, p.device))
    # a prefix of one permutation: a larger budget extends the same run
    evaluated = rng.permutation(len(p.values))[:budget]
    return _result("random", p, budget, seed, evaluated, t0)


# ----------------------------------------------------------------------------- NSGA-II
def _codes_to_index() -> np.ndarray:
    """Map base-5 code (edge 0 most significant) -> NB201 index."""
    from hilnas.pipeline.refdata import load_nb201

    codes = load_nb201().arch_codes.astype(np.int64)
    flat = codes @ (NB201_OPTIONS ** np.arange(NB201_DECISIONS - 1, -1, -1))
    inverse = np.empty(len(flat), dtype=np.int64)
    inverse[flat] = np.arange(len(flat))
    return inverse


def _operators(kind: str) -> tuple[Any, Any, Any]:
    from pymoo.operators.sampling.rnd import IntegerRandomSampling

    if kind == "categorical":
        from pymoo.core.mutation import Mutation
        from pymoo.operators.crossover.ux import UniformCrossover

        class CategoricalMutation(Mutation):
            """Resample each decision uniformly among the other options with prob ``rate``."""

            def __init__(self, rate: float | None = None) -> None:
                super().__init__()
                self.rate = rate

            def _do(self, problem, X, *args, random_state=None, **kwargs):
                rng = random_state if random_state is not None else np.random.default_rng()
                X = np.asarray(X).astype(np.int64, copy=True)
                rate = self.rate if self.rate is not None else 1.0 / problem.n_var
                hit = rng.random(X.shape) < rate
                # guarantee a change: at least one decision per offspring
                none = ~hit.any(axis=1)
                if none.any():
                    hit[np.flatnonzero(none), rng.integers(0, X.shape[1], none.sum())] = True
                shift = rng.integers(1, NB201_OPTIONS, size=X.shape)
                X[hit] = (X[hit] + shift[hit]) % NB201_OPTIONS
                return X

        return IntegerRandomSampling(), UniformCrossover(prob=0.9), CategoricalMutation()
    if kind == "sbx":
        from pymoo.operators.crossover.sbx import SBX
        from pymoo.operators.mutation.pm import PM
        from pymoo.operators.repair.rounding import RoundingRepair

        return (
            IntegerRandomSampling(),
            SBX(prob=0.9, eta=15, vtype=float, repair=RoundingRepair()),
            PM(eta=20, vtype=float, repair=RoundingRepair()),
        )
    raise InvalidInputError(f"unknown NSGA-II operators {kind!r}; choose 'categorical' or 'sbx'")


def default_pop_size(budget: int) -> int:
    """Population size for a budget: a tenth of it, between 10 and 20.

    Tuned on the six MODNAS test devices (three to five seeds): with categorical operators
    10 beat 20 and 50 at B=100 (HV ratio 0.979 / 0.965 / 0.946) and 20 beat 32, 50 and 100 at
    B=1000 (0.9991 / 0.9988 / 0.998 / 0.997).
    """
    return int(min(20, max(10, round(budget / 10))))


def nsga2(
    device: str,
    *,
    budget: int,
    objectives: Sequence[str] = ("error", "latency_ms"),
    seed: int = 0,
    pop_size: int | None = None,
    operators: str = "categorical",
    problem: NB201Problem | None = None,
) -> BaselineResult:
    """pymoo's NSGA-II on the NB201 integer encoding, stopped after ``budget`` distinct
    true evaluations (repeated architectures are looked up, not re-evaluated).

    ``pop_size`` defaults to :func:`default_pop_size`; ``operators`` is ``"categorical"``
    (uniform crossover + categorical mutation) or ``"sbx"`` (SBX + polynomial mutation with
    rounding repair).
    """
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.evaluator import Evaluator
    from pymoo.core.problem import Problem
    from pymoo.core.termination import NoTermination
    from pymoo.problems.static import StaticProblem

    t0 = time.perf_counter()
    budget = _check_budget(budget)
    p = _problem(device, objectives, problem)
    pop = int(pop_size) if pop_size is not None else default_pop_size(budget)
    if pop < 2:
        raise InvalidInputError(f"pop_size must be at least 2, got {pop}")
    to_index = _codes_to_index()
    weights = NB201_OPTIONS ** np.arange(NB201_DECISIONS - 1, -1, -1)
    sampling, crossover, mutation = _operators(operators)
    pm_problem = Problem(
        n_var=NB201_DECISIONS, n_obj=len(p.objectives), xl=0, xu=NB201_OPTIONS - 1, vtype=int
    )
    algorithm = NSGA2(
        pop_size=pop,
        sampling=sampling,
        crossover=crossover,
        mutation=mutation,
        eliminate_duplicates=True,
    )
    stream = np.random.SeedSequence(_stream(seed, p.device)).generate_state(1)[0]
    algorithm.setup(pm_problem, termination=NoTermination(), seed=int(stream), verbose=False)

    evaluated: list[int] = []
    seen: set[int] = set()
    stalls = 0
    while len(evaluated) < budget:
        infills = algorithm.ask()
        X = np.clip(np.rint(infills.get("X")).astype(np.int64), 0, NB201_OPTIONS - 1)
        idx = to_index[X @ weights]
        keep = []
        new = 0
        for k, i in enumerate(idx.tolist()):
            if i in seen:
                keep.append(k)
                continue
            if len(evaluated) >= budget:
                break  # budget spent: the rest of this generation is never evaluated
            seen.add(i)
            evaluated.append(i)
            keep.append(k)
            new += 1
        stalls = 0 if new else stalls + 1
        if len(evaluated) >= budget or stalls > 100:
            break
        infills = infills[keep]
        F = p.evaluate(idx[keep])
        Evaluator().eval(StaticProblem(pm_problem, F=F), infills)
        algorithm.tell(infills=infills)
    return _result("nsga2", p, budget, int(seed), evaluated, t0)


_METHODS = {"random": random_search, "nsga2": nsga2}


def run_baseline(method: str, device: str, **kwargs: Any) -> BaselineResult:
    """Dispatch by name: ``"random"`` or ``"nsga2"``."""
    try:
        fn = _METHODS[method]
    except KeyError:
        raise InvalidInputError(
            f"unknown baseline {method!r}; known: {', '.join(_METHODS)}"
        ) from None
    return fn(device, **kwargs)
