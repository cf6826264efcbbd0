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
def test_benchmark_experiment_and_markdown_with_a_fake_search(monkeypatch, tmp_path):
    """The benchmark's plumbing: a stand-in search module returns the exact front for every
    device, which must score an HV ratio of 1 with IGD 0; baselines run alongside."""
    import dataclasses
    import sys
    import types

    from hilnas.pipeline.benchmarks import search as bench
    from hilnas.pipeline.spaces.nb201 import NB201

    space = NB201()
    fake = types.ModuleType("hilnas.pipeline.search")

    @dataclasses.dataclass(frozen=True)
    class SearchConfig:
        mode: str = "surrogate"
        objectives: tuple = ("error", "latency_ms")
        train_targets: tuple = ()
        seed: int = 0
        accuracy_queries: int = 200

    @dataclasses.dataclass(frozen=True)
    class FrontPoint:
        arch: str
        objectives: tuple
        preference: tuple

    class TrainedSearch:
        def __init__(self, objectives):
            self.objectives = objectives

        @classmethod
        def load(cls, path):
            return cls(tuple(path.read_text().split(",")))

        def front(self, device, *, points):
            idx = fronts.exact_front(device, self.objectives)
            return [
                FrontPoint(
                    space.format(space.from_index(i)), (0.0,) * len(self.objectives), (1.0, 0.0)
                )
                for i in idx
            ]

    def run_search(cfg, *, progress=None):
        p = tmp_path / f"run{cfg.seed}"
        p.write_text(",".join(cfg.objectives))
        return p

    fake.SearchConfig, fake.TrainedSearch, fake.run_search = SearchConfig, TrainedSearch, run_search
    monkeypatch.setitem(sys.modules, "hilnas.pipeline.search", fake)

    assert bench._supported_overrides({"accuracy_queries": 5, "nope": 1}) == {"accuracy_queries": 5}
    block = bench.run_experiment(
        objectives=("error", "latency_ms"),
        devices=("pixel2", "titanx_1"),
        budgets=(30,),
        seeds=(0,),
        search=True,
        points=10,
        config_overrides={},
        progress=lambda m: None,
    )
    assert block["per_device"]["mhn"]["pixel2"]["hv_ratio"] == pytest.approx(1.0)
    assert block["per_device"]["mhn"]["titanx_1"]["igd"] == 0.0
    assert block["searches"][0]["accuracy_queries"] == 200
    gm = block["group_means"]
    assert set(gm["random@30"]) == {"train", "zero-shot", "all"}
    assert gm["nsga2@30"]["all"]["devices"] == 2
    assert 0 < gm["random@30"]["all"]["hv_ratio"] < 1
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
    assert "| mhn | 1.0000 (0.0000)" in md and "| pixel2 | zero-shot |" in md
