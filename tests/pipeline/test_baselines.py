"""Random search and NSGA-II on NB201 with a budget of distinct true evaluations."""

from __future__ import annotations

import numpy as np
import pytest
from hilnas.pipeline import baselines, fronts


@pytest.mark.parametrize("method", ["random", "nsga2"])
def test_budget_counts_distinct_evaluations_and_is_seeded(method):
    a = baselines.run_baseline(method, "pixel2", budget=60, seed=1)
    b = baselines.run_baseline(method, "pixel2", budget=60, seed=1)
    c = baselines.run_baseline(method, "pixel2", budget=60, seed=2)
    assert a.evaluations == 60 and len(np.unique(a.evaluated)) == 60
    assert np.array_equal(a.evaluated, b.evaluated) and a.hv_ratio == b.hv_ratio
    assert not np.array_equal(a.evaluated, c.evaluated)
    assert set(a.front.tolist()) <= set(a.evaluated.tolist())
    p = fronts.nb201_problem("pixel2")
    assert a.hv_ratio == pytest.approx(p.hv_ratio(a.front))
    assert a.igd == pytest.approx(p.igd(a.evaluated))
    assert 0 < a.hv_ratio <= 1
    s = a.summary()
    assert s["evaluations"] == 60 and s["method"] == method


def test_nsga2_beats_random_search():
    devices = ("eyeriss", "gold_6226", "titan_rtx_256")
    rs = np.mean(
        [baselines.random_search(d, budget=200, seed=s).hv_ratio for d in devices for s in range(3)]
    )
    ga = np.mean(
        [baselines.nsga2(d, budget=200, seed=s).hv_ratio for d in devices for s in range(3)]
    )
    assert ga > rs
    assert ga > 0.97


@pytest.mark.parametrize("operators", ["categorical", "sbx"])
def test_nsga2_operators_and_three_objectives(operators):
    r = baselines.nsga2(
        "fpga",
        budget=80,
        seed=0,
        operators=operators,
        objectives=("error", "latency_ms", "energy_mj"),
    )
    assert r.evaluations == 80 and r.objectives == ("error", "latency_ms", "energy_mj")
    assert 0 < r.hv_ratio <= 1


def test_bad_arguments():
    with pytest.raises(ValueError, match="positive integer"):
        baselines.random_search("pixel2", budget=0)
    with pytest.raises(ValueError, match="exceeds"):
        baselines.random_search("pixel2", budget=10**6)
    with pytest.raises(ValueError, match="unknown baseline"):
        baselines.run_baseline("bo", "pixel2", budget=5)
    with pytest.raises(ValueError, match="operators"):
        baselines.nsga2("pixel2", budget=5, operators="magic")


# ----------------------------------------------------------------------------- benchmark
@pytest.mark.slow
def test_benchmark_experiment_with_a_tiny_real_search():
    """The benchmark end to end on a deliberately tiny surrogate-mode search (seconds): the
    MetaHypernetwork's fronts are scored with TRUE table values next to the baselines."""
    from hilnas.pipeline.benchmarks import search as bench
    from hilnas.pipeline.search import TrainedSearch

    tiny = {
        "accuracy_queries": 20,
        "query_rounds": 0,
        "epochs": 1,
        "steps_per_epoch": 3,
        "surrogate_members": 1,
        "preferences_per_target": 4,
        "predictor_source": "shipped",
        "nope": 1,
    }
    overrides = bench._supported_overrides(tiny)
    assert "nope" not in overrides and overrides["accuracy_queries"] == 20
    messages = []
    block = bench.run_experiment(
        objectives=("error", "latency_ms"),
        devices=("pixel2", "titanx_1", "2080ti_1"),
        budgets=(30,),
        seeds=(0,),
        search=True,
        points=10,
        config_overrides=overrides,
        progress=messages.append,
        train_targets=("titanx_1",),
    )
    assert any("search seed 0" in m for m in messages)
    (search,) = block["searches"]
    assert search["accuracy_queries"] == 20 and search["wall_s"] > 0
    trained = TrainedSearch.load(search["path"])
    idx = [pt.index for pt in trained.front("pixel2", points=10)]
    mhn = block["per_device"]["mhn"]
    assert mhn["pixel2"]["hv_ratio"] == pytest.approx(fronts.hv_ratio(idx, "pixel2"))
    assert mhn["pixel2"]["igd"] == pytest.approx(fronts.igd_of(idx, "pixel2"))
    gm = block["group_means"]
    assert set(gm["mhn"]) == {"train", "zero-shot", "other unseen", "all"}
    assert gm["mhn"]["train"]["devices"] == 1 and gm["nsga2@30"]["all"]["devices"] == 3
    assert 0 < gm["random@30"]["all"]["hv_ratio"] < 1
    assert gm["linear-oracle"]["all"]["hv_ratio"] > 0.99
    result = {
        "settings": {
            "command": "x",
            "created": "now",
            "host": "h",
            "cpus": 2,
            "seeds": [0],
            "points": 10,
            "wall_s": 1.0,
        },
        "experiments": [block],
    }
    md = bench.render_markdown(result)
    assert "| mhn | " in md and "| pixel2 | zero-shot |" in md and "| titanx_1 | train |" in md
    assert "| 2080ti_1 | other unseen |" in md
