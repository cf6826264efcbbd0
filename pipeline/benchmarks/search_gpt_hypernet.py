"""The MetaHypernetwork's part of the GPT-S search benchmark: leave-one-device-out fronts.

For each left-out device ``d`` of HW-GPT-Bench's 10: the latency and energy predictors are
fit on the measured table (``measured.csv``) of the other 9 devices only, ONE three-objective
search (perplexity, latency_ms, energy_mj) is trained for those 9 with ``queries`` perplexity
queries in total (the HW-GPT-Bench surrogate as the oracle), and ``d`` joins zero-shot from its
measured values on the space's 10 reference architectures. Its fronts for every objective set
come from that one run (:meth:`SpaceSearchModel.front` with ``objectives=``: preferences on a
face of the simplex). The architectures are handed back as codes and scored by the benchmark
with the oracles, never with the search's predictions.

Also reported: zero-shot Spearman of the left-out device's predicted latency and energy against
its measured values (all measured rows), the issue's predictor target.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

OBJECTIVES = ("perplexity", "latency_ms", "energy_mj")


def loo_fronts(
    devices: Sequence[str],
    objective_sets: Mapping[str, tuple[str, ...]],
    *,
    seed: int = 0,
    queries: int = 300,
    steps: int = 600,
    points: int = 100,
    costs: str = "surrogate",
    log: Any = print,
) -> tuple[dict[tuple[str, str], np.ndarray], dict[str, Any]]:
    """Codes per ``(device, objective set)`` and per-device details (wall time, Spearman).

    ``costs``: what the predictors are trained on and what the left-out device's reference
    values are: ``surrogate`` (the oracles' own values on the 10,000 measured architectures, so
    that the search and its scoring live in one world) or ``measured`` (the real measurements:
    the predictors then model hardware the oracle only approximates)."""
    from hilnas.pipeline.predictors import spearman
    from hilnas.pipeline.predictors_space import fit_predictor, gpt_measured_table
    from hilnas.pipeline.spaces import get_space
    from hilnas.pipeline.spaces.gpt_s.surrogates import DEVICES, load_surrogates
    from hilnas.pipeline.spacesearch.search import (
        QualityOracle,
        SpaceSearchConfig,
        train_space_search,
    )
    from hilnas.pipeline.spacesearch.targets import SpaceTarget

    space = get_space("gpt_s")
    sur = load_surrogates()
    tables = {m: gpt_measured_table(m) for m in OBJECTIVES[1:]}
    if costs == "surrogate":
        tables = {m: _surrogate_table(t, sur) for m, t in tables.items()}
    found: dict[tuple[str, str], np.ndarray] = {}
    details: dict[str, Any] = {}
    for dev in devices:
        t0 = time.perf_counter()
        train = [d for d in DEVICES if d != dev]
        predictors = {m: fit_predictor(t, devices=train) for m, t in tables.items()}
        fit_s = time.perf_counter() - t0
        rho = {}
        for m, t in tables.items():
            y = t.column(dev)
            pred = predictors[m].predict_features(
                _features(space, t.codes), t.reference_values(dev)
            )
            ok = np.isfinite(y)
            rho[m] = round(float(spearman(pred[ok], y[ok])), 4)
        targets = [
            SpaceTarget.from_values(
                "gpt_s", d, {m: t.reference_values(d) for m, t in tables.items()}
            )
            for d in train
        ]
        oracle = QualityOracle(
            "perplexity",
            lambda c: sur.perplexity(np.asarray(c, dtype=np.int64)),
            "HW-GPT-Bench perplexity surrogate",
        )
        cfg = SpaceSearchConfig(
            space="gpt_s", objectives=OBJECTIVES, queries=queries, steps=steps, seed=seed
        )
        model = train_space_search(cfg, targets, predictors, oracle)
        joined = SpaceTarget.from_values(
            "gpt_s", dev, {m: t.reference_values(dev) for m, t in tables.items()}
        )
        t1 = time.perf_counter()
        for name, objs in objective_sets.items():
            pts = model.front(joined, points=points, objectives=objs)
            found[(dev, name)] = np.asarray([space.parse(p.arch) for p in pts], dtype=np.int64)
        details[dev] = {
            "fit_s": round(fit_s, 1),
            "search_s": model.info["wall_s"],
            "front_s": round(time.perf_counter() - t1, 1),
            "queries": len(oracle.queried),
            "zero_shot_spearman": rho,
            "cost_fidelity": model.info["cost_fidelity"],
        }
        log(f"hypernet LOO {dev}: {details[dev]}")
    return found, details


def _surrogate_table(table: Any, sur: Any) -> Any:
    """``table`` with its values replaced by the surrogate oracle's (NaN where invalid)."""
    from dataclasses import replace

    fn = sur.latency_ms if table.metric == "latency_ms" else sur.energy_mj
    values = np.stack([fn(table.codes, d) for d in table.devices], axis=1)
    return replace(table, values=np.where(values > 0, values, np.nan))


def _features(space: Any, codes: np.ndarray) -> np.ndarray:
    from hilnas.pipeline.predictors_space import arch_features

    return arch_features(space, [tuple(int(v) for v in c) for c in codes])
