"""MetaHypernetwork search: configuration, scalarisation, saved runs, fronts (surrogate mode)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from hilnas.pipeline import mo
from hilnas.pipeline.predictors import TargetEmbedding, embedding_for
from hilnas.pipeline.search import (
    SearchConfig,
    SearchError,
    SearchMismatchError,
    TrainedSearch,
    _gram_factor,
    parse_objectives,
    preferences_for,
    run_search,
    scalarize,
    search_root,
)
from hilnas.pipeline.spaces import get_space

TINY = {
    "train_targets": ("1080ti_1", "pixel3", "gold_6240"),
    "epochs": 1,
    "steps_per_epoch": 30,
    "accuracy_queries": 40,
    "query_rounds": 2,
    "surrogate_members": 2,
    "hidden": 32,
    "preferences_per_target": 8,
    "threads": 1,
}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("search-home")


@pytest.fixture(scope="module")
def tiny_run(home):
    mp = pytest.MonkeyPatch()
    mp.setenv("HILNAS_HOME", str(home))
    events = []
    path = run_search(SearchConfig(**TINY), progress=events.append)
    mp.undo()
    return path, events


@pytest.fixture
def trained(tiny_run, home, monkeypatch):
    monkeypatch.setenv("HILNAS_HOME", str(home))
    return TrainedSearch.load(tiny_run[0])


# ----------------------------------------------------------------------------- configuration
def test_objectives_are_parsed_with_aliases_and_checked():
    assert parse_objectives("error,latency") == ("error", "latency_ms")
    assert parse_objectives(["latency_ms", "energy", "err"]) == ("latency_ms", "energy_mj", "error")
    with pytest.raises(SearchError, match="unknown objective 'accuracy'"):
        parse_objectives("accuracy,latency")
    with pytest.raises(SearchError, match="at least two"):
        parse_objectives("latency")
    with pytest.raises(SearchError, match="twice"):
        parse_objectives("latency,latency_ms")
    with pytest.raises(SearchError, match="twice"):
        parse_objectives("error,err")


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"mode": "evolution"}, "mode must be"),
        ({"sampler": "gumbel"}, "sampler must be"),
        ({"scalarization": "pbi"}, "scalarization must be"),
        ({"lr": -1.0}, "lr must be a positive"),
        ({"epochs": 0}, "epochs=0 is out of range"),
        ({"accuracy_queries": 1}, "accuracy_queries=1 is out of range; set accuracy_queries"),
        ({"hidden": 10**9}, "hidden=1000000000 is out of range"),
        ({"epochs": True}, "epochs must be an integer, got True"),
        ({"channels": 100_000}, "channels=100000 is out of range"),
        ({"data_limit": 10**12}, "data_limit=1000000000000 is out of range"),
        ({"threads": 100_000}, "threads=100000 is out of range"),
        ({"mgda": "yes"}, "mgda must be true or false"),
        ({"accuracy_column": "imagenet_top5"}, "accuracy_column 'imagenet_top5' is not in"),
        ({"initial_queries": 300}, "exceeds accuracy_queries"),
        ({"train_targets": ()}, "train_targets is empty"),
        ({"train_targets": ("a", "a")}, "repeat"),
        ({"space": "darts"}, "nb201 only"),
        ({"front_preferences": 1.5}, "front_preferences"),
        ({"mode": "supernet", "dataset": "cifar10"}, "binary version"),
        ({"torch_device": "tpu"}, "torch_device"),
    ],
)
def test_bad_settings_are_refused_with_a_reason(kwargs, fragment):
    with pytest.raises(SearchError, match=fragment):
        SearchConfig(**kwargs)


def test_config_round_trips_through_json():
    cfg = SearchConfig(objectives="error,latency", train_targets="1080ti_1,pixel3")
    assert cfg.train_targets == ("1080ti_1", "pixel3")
    again = SearchConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    with pytest.raises(SearchError, match="unknown search settings"):
        SearchConfig.from_dict({"nonsense": 1})


# ----------------------------------------------------------------------------- scalarisation
def test_tchebycheff_scalarisation_reaches_every_front_point_including_non_convex_ones():
    # a front with a point (0.55, 0.55) in a concave dent: no linear weight selects it
    front = np.array([[0.0, 1.0], [0.55, 0.55], [1.0, 0.0], [0.2, 0.8], [0.8, 0.2]])
    costs = torch.tensor(front, dtype=torch.float32)
    prefs = torch.tensor(preferences_for(front), dtype=torch.float32)
    tch = scalarize(prefs[:, None, :], costs[None], "tchebycheff", 0.01)
    assert list(tch.argmin(1).numpy()) == list(range(len(front)))
    lin = scalarize(
        torch.tensor(mo.uniform_preferences(2, 101), dtype=torch.float32)[:, None, :],
        costs[None],
        "linear",
    )
    assert 1 not in set(lin.argmin(1).numpy())
    with pytest.raises(SearchError, match="unknown scalarization"):
        scalarize(prefs, costs, "pbi")


def test_gram_factor_reproduces_the_gram_matrix():
    g = torch.randn(5, 40)
    gram = g @ g.T
    f = _gram_factor(gram)
    assert torch.allclose(f @ f.T, gram.double(), atol=1e-8)
    w_full = mo.min_norm_solver(g.double())
    w_small = mo.min_norm_solver(f)
    assert torch.allclose(torch.as_tensor(w_full), torch.as_tensor(w_small), atol=1e-6)


# ----------------------------------------------------------------------------- one tiny search
def test_a_tiny_search_is_saved_with_its_settings(tiny_run, home):
    path, events = tiny_run
    assert path.parent == home / "search"
    for name in ("settings.json", "hypernet.safetensors", "surrogate.safetensors"):
        assert (path / name).is_file()
    assert (home / "search" / "latest").read_text().strip() == path.name
    s = json.loads((path / "settings.json").read_text())
    assert s["space"] == "nb201" and s["mode"] == "surrogate"
    assert s["objectives"] == ["error", "latency_ms"]
    assert s["train_targets"] == list(TINY["train_targets"])
    assert s["surrogate"]["queries"] == 40 == len(s["surrogate"]["queried"])
    assert s["predictors"]["latency_ms"]["fingerprint"]
    assert s["wall_s"] > 0 and s["seed"] == 0
    stages = {e.stage for e in events}
    assert {"queries", "train", "save"} <= stages


def test_front_for_a_device_known_only_by_its_10_reference_latencies(trained):
    raw = embedding_for("raspi4", "latency_ms").raw * 1.7  # a new board, 10 measurements
    emb = TargetEmbedding.from_raw("my_board", "latency_ms", raw)
    pts = trained.front(emb, points=20)
    assert pts
    space = get_space("nb201")
    values = np.array([[p.objectives["error"], p.objectives["latency_ms"]] for p in pts])
    assert mo.pareto_mask(values).all()  # non-dominated on the predicted objectives
    assert list(values[:, 1]) == sorted(values[:, 1])
    for p in pts:
        assert space.index(space.parse(p.arch)) == p.index
        # None: a neighbour the refinement evaluated, chosen by no preference
        assert p.preference is None or sum(p.preference) == pytest.approx(1.0, abs=1e-5)
        assert p.error_source in ("surrogate", "queried")
        assert 0 < p.objectives["error"] < 100 and p.objectives["latency_ms"] > 0
    assert any(p.preference is not None for p in pts)


def test_fronts_move_with_the_preference(trained):
    fast = trained.front("pixel3", preference=[0.02, 0.98])[0]
    accurate = trained.front("pixel3", preference=[0.98, 0.02])[0]
    assert fast.objectives["latency_ms"] <= accurate.objectives["latency_ms"]
    assert fast.objectives["error"] >= accurate.objectives["error"]


def test_refinement_is_optional_and_marked(trained):
    plain = trained.front("gold_6240", points=10, refine=False)
    assert plain and not any(p.refined for p in plain)
    refined = trained.front("gold_6240", points=10)
    assert refined


def _hv(points, lo, hi) -> float:
    values = np.array([[p.objectives["error"], p.objectives["latency_ms"]] for p in points])
    return mo.hypervolume(mo.normalize(values, lo, hi), [1.1, 1.1])


@pytest.mark.parametrize("k", [1, 2, 5, 10])
def test_a_sweep_returns_at_most_the_points_asked_for_and_keeps_the_front_quality(trained, k):
    everything = trained.front("gold_6240", points=k, non_dominated=False)
    capped = trained.front("gold_6240", points=k)
    plain = trained.front("gold_6240", points=k, refine=False)
    assert 1 <= len(capped) <= k and len(plain) <= k
    values = np.array([[p.objectives["error"], p.objectives["latency_ms"]] for p in capped])
    assert mo.pareto_mask(values).all()
    # the refinement's extra candidates are used to choose the k: on the front they form, the
    # k chosen cover at least as much as the hypernetwork's own choices without refinement
    allv = np.array([[p.objectives["error"], p.objectives["latency_ms"]] for p in everything])
    front = allv[mo.pareto_mask(allv)]
    lo, hi = front.min(0), front.max(0)
    assert _hv(capped, lo, hi) >= _hv(plain, lo, hi) - 1e-9


def test_spread_subset_is_the_subset_of_largest_hypervolume():
    import itertools

    from hilnas.pipeline.search import spread_subset

    rng = np.random.default_rng(0)
    x = np.sort(rng.random(12))
    front = np.stack([x, 1.0 - np.sqrt(x)], axis=1)  # mutually non-dominated, concave
    for k in (1, 2, 3, 5):
        pick = spread_subset(front, k)
        assert len(pick) == k and len(set(pick)) == k
        norm = (front - front.min(0)) / (front.max(0) - front.min(0))
        best = max(
            mo.hypervolume(norm[list(c)], [1.1, 1.1]) for c in itertools.combinations(range(12), k)
        )
        assert mo.hypervolume(norm[pick], [1.1, 1.1]) == pytest.approx(best)
    assert list(spread_subset(front, 50)) == list(range(12))
    # large requests take the greedy choice: within 2% of the exact one here
    from hilnas.pipeline.search import _best_hypervolume_subset_2d, _greedy_hypervolume_subset_2d

    x = np.sort(rng.random(60))
    big = np.stack([x, 1.0 - np.sqrt(x)], axis=1)
    for k in (3, 10, 30):
        greedy = mo.hypervolume(big[_greedy_hypervolume_subset_2d(big, k, 1.1)], [1.1, 1.1])
        exact = mo.hypervolume(big[_best_hypervolume_subset_2d(big, k, 1.1)], [1.1, 1.1])
        assert exact * 0.98 <= greedy <= exact + 1e-12
    three = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0], [0.5, 0.5, 0.0], [0.34, 0.33, 0.33]])
    assert set(spread_subset(three, 4)) >= {0, 1, 2}


@pytest.mark.parametrize(
    "pref, fragment",
    [
        ([0.5, 0.3, 0.2], "3 components but there are 2 objectives"),
        ([1.2, -0.2], "negative"),
        ([0.3, 0.3], "sums to 0.6"),
    ],
)
def test_bad_preferences_are_refused_not_renormalised(trained, pref, fragment):
    with pytest.raises(SearchError, match=fragment):
        trained.front("pixel3", preference=pref)


def test_front_arguments_are_checked(trained):
    with pytest.raises(SearchError, match="either points"):
        trained.front("pixel3", points=5, preference=[0.5, 0.5])
    with pytest.raises(SearchError, match="points=0 is out of range"):
        trained.front("pixel3", points=0)
    with pytest.raises(SearchError, match="points=100000000 is out of range"):
        trained.front("pixel3", points=100_000_000)
    with pytest.raises(SearchError, match="points must be an integer"):
        trained.front("pixel3", points=True)
    with pytest.raises(LookupError, match="no_such_device"):
        trained.front("no_such_device", points=5)


def test_saved_run_mismatches_are_explained(tiny_run, trained):
    path = tiny_run[0]
    with pytest.raises(
        SearchMismatchError, match="error, latency_ms, not error, latency_ms, energy_mj"
    ):
        TrainedSearch.load(path, objectives="error,latency,energy")
    with pytest.raises(SearchMismatchError, match="space 'nb201', not 'darts'"):
        TrainedSearch.load(path, space="darts")
    assert TrainedSearch.load(path, space="nb201", objectives=["error", "latency_ms"]).path == path
    assert TrainedSearch.load().path == path  # latest
    assert TrainedSearch.load(path.name).path == path  # by run id
    with pytest.raises(SearchError, match="not a saved search"):
        TrainedSearch.load(path.parent)


def test_a_failing_search_writes_nothing(home, monkeypatch):
    monkeypatch.setenv("HILNAS_HOME", str(home))
    before = sorted(p.name for p in search_root().iterdir())
    with pytest.raises(SearchError, match="energy_mj embedding"):
        run_search(SearchConfig(**{**TINY, "objectives": ("error", "latency_ms", "energy_mj")}))
    assert sorted(p.name for p in search_root().iterdir()) == before


def test_three_objectives_on_the_energy_devices(monkeypatch, tmp_path):
    monkeypatch.setenv("HILNAS_HOME", str(tmp_path))
    cfg = SearchConfig(
        **{
            **TINY,
            "objectives": ("error", "latency_ms", "energy_mj"),
            "train_targets": ("eyeriss", "fpga"),
        }
    )
    trained = TrainedSearch.load(run_search(cfg))
    assert trained.hyper.embed_dim == 20
    pts = trained.front("fpga", points=12)
    assert pts and all(set(p.objectives) == {"error", "latency_ms", "energy_mj"} for p in pts)
    with pytest.raises(SearchError, match="energy_mj"):
        trained.front(embedding_for("fpga", "latency_ms"), points=4)
