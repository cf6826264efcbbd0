"""Accuracy query rounds: which architectures' true accuracy (or supernet error) the
surrogate is fit on, a random half first and then the predicted fronts' architectures."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from hilnas.pipeline import mo
from hilnas.pipeline.search.pool import _onehot
from hilnas.pipeline.search.progress import ProgressCallback, _report

if TYPE_CHECKING:  # pragma: no cover
    from hilnas.pipeline.search.config import SearchConfig


def _select_queries(
    cfg: SearchConfig,
    space,
    pool: np.ndarray,
    pool_hw: np.ndarray,
    progress: ProgressCallback | None,
    oracle: Callable[[list[tuple[int, ...]]], Any] | None = None,
):
    """Query accuracies in rounds and fit the surrogate (see the package docstring).

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
