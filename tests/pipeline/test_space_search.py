"""The MetaHypernetwork search beyond NB201 (pipeline/spacesearch): real predictors trained on
a subset of the shipped GPT-S measurements, the real HW-GPT-Bench perplexity surrogate as the
quality oracle, a short training run; fronts, zero-shot targets, the budget, save/load."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from hilnas.devices.errors import InvalidInputError, NotFoundError
from hilnas.pipeline import mo
from hilnas.pipeline.predictors.space import DeviceTable, fit_predictor, gpt_measured_table
from hilnas.pipeline.spaces import get_space
from hilnas.pipeline.spaces.gpt_s.surrogates import load_surrogates
from hilnas.pipeline.spacesearch.search import (
    QualityOracle,
    SpaceSearchConfig,
    SpaceSearchModel,
    train_space_search,
)
from hilnas.pipeline.spacesearch.targets import (
    SpaceTarget,
    parse_objectives,
    reference_targets,
    resolve_target,
)

HELD_OUT = "rtx3080"


def _small_table(metric: str, rows: int = 800) -> DeviceTable:
    full = gpt_measured_table(metric)
    keep = np.unique(np.r_[np.arange(rows), list(full.reference_rows)])
    pos = {int(r): i for i, r in enumerate(keep)}
    return DeviceTable(
        space="gpt_s",
        metric=metric,
        codes=full.codes[keep],
        values=full.values[keep],
        devices=full.devices,
        reference_rows=tuple(pos[int(r)] for r in full.reference_rows),
    )


@pytest.fixture(scope="module")
def trained():
    table = _small_table("latency_ms")
    train = [d for d in table.devices if d != HELD_OUT]
    predictor = fit_predictor(table, devices=train, alpha=0.1)
    targets = [resolve_target("gpt_s", d, ("latency_ms",)) for d in train]
    sur = load_surrogates()
    oracle = QualityOracle(
        "perplexity", lambda c: sur.perplexity(np.asarray(c, dtype=np.int64)), "surrogate"
    )
    cfg = SpaceSearchConfig(
        space="gpt_s",
        objectives="perplexity,latency_ms",
        queries=60,
        rounds=2,
        steps=40,
        pool=400,
        hidden=64,
    )
    model = train_space_search(cfg, targets, {"latency_ms": predictor}, oracle)
    return model, oracle, sur


def test_budget_is_the_number_of_oracle_calls(trained):
    model, oracle, _ = trained
    assert len(oracle.queried) == 60
    assert len(model.queried) == 60
    assert model.info["queries_used"] == 60


def test_cost_network_imitates_the_predictor(trained):
    model, _, _ = trained
    # the distilled differentiable cost model ranks held-out architectures as the predictor does
    assert model.info["cost_fidelity"]["latency_ms"] > 0.9


def test_front_is_canonical_non_dominated_and_spans_the_trade_off(trained):
    model, _, sur = trained
    space = get_space("gpt_s")
    pts = model.front("a100", points=12)
    assert 2 <= len(pts) <= 12
    codes = [space.parse(p.arch) for p in pts]
    assert [space.format(c) for c in codes] == [p.arch for p in pts]
    V = np.array([[p.objectives["perplexity"], p.objectives["latency_ms"]] for p in pts])
    assert np.all(np.isfinite(V))
    assert mo.pareto_mask(V).all()
    # the oracle's true values of the chosen architectures trade off as predicted: the fast end
    # is truly faster and the accurate end truly better
    true_lat = sur.latency_ms(np.asarray(codes), "a100")
    true_ppl = sur.perplexity(np.asarray(codes))
    fast, accurate = int(np.argmin(V[:, 1])), int(np.argmin(V[:, 0]))
    assert true_lat[fast] < true_lat[accurate]
    assert true_ppl[accurate] < true_ppl[fast]


def test_a_device_the_search_never_saw_gets_a_front_zero_shot(trained):
    model, _, sur = trained
    table = gpt_measured_table("latency_ms")
    target = SpaceTarget.from_values(
        "gpt_s", "new-gpu", {"latency_ms": table.reference_values(HELD_OUT)}
    )
    pts = model.front(target, points=8)
    assert len(pts) >= 2
    codes = np.asarray([get_space("gpt_s").parse(p.arch) for p in pts])
    pred = np.array([p.objectives["latency_ms"] for p in pts])
    true = sur.latency_ms(codes, HELD_OUT)
    assert np.corrcoef(np.log(pred), np.log(true))[0, 1] > 0.8


def test_quality_model_reads_cost_features_and_fits_the_oracle(trained):
    from hilnas.pipeline.spacesearch.models import cost_extras, masked_onehot

    model, oracle, sur = trained
    space = get_space("gpt_s")
    assert model.quality.n_extra == len(space.cost_feature_names) > 0
    codes = space.sample(300, seed=321)
    pred = model.quality.predict(masked_onehot(space, codes), cost_extras(space, codes))
    true = sur.perplexity(np.asarray(codes))
    # 60 queries: the model ranks unseen architectures by perplexity
    assert np.corrcoef(np.log(pred), np.log(true))[0, 1] > 0.9
    with pytest.raises(ValueError, match="extra inputs"):
        model.quality.predict(masked_onehot(space, codes))


def test_front_refinement_searches_the_predicted_objectives_without_queries(trained):
    model, oracle, _ = trained
    before = len(oracle.queried)
    greedy = model.front("a100", evaluations=0)
    searched = model.front("a100", evaluations=3000)
    assert len(oracle.queried) == before  # reading a front never asks the oracle

    def values(pts):
        return np.array([[p.objectives["perplexity"], p.objectives["latency_ms"]] for p in pts])

    G, S = values(greedy), values(searched)
    both = np.concatenate([G, S])
    lo, hi = both.min(0), both.max(0)
    ref = np.ones(2) * 1.05
    hv_g = mo.hypervolume(mo.normalize(G, lo, hi), ref)
    hv_s = mo.hypervolume(mo.normalize(S, lo, hi), ref)
    # NSGA-II on the predicted objectives, seeded by the hypernetwork, covers the predicted
    # front at least as well as the greedy walks from the same choices
    assert hv_s >= hv_g - 1e-9
    assert mo.pareto_mask(S).all()
    with pytest.raises(InvalidInputError, match="evaluations"):
        model.front("a100", evaluations=-1)


def test_front_queries_land_on_the_predicted_fronts(trained):
    from hilnas.pipeline.spacesearch.search import _query_fronts

    model, _, sur = trained
    probe = QualityOracle(
        "perplexity", lambda c: sur.perplexity(np.asarray(c, dtype=np.int64)), "surrogate"
    )
    _query_fronts(model, probe, 12, seed=5, evaluations=500)
    assert len(probe.queried) == 12
    front = {p.arch for t in model.targets for p in model.front(t, evaluations=500)}
    space = get_space("gpt_s")
    on_front = sum(space.format(c) in front for c in probe.queried)
    assert on_front >= 6  # most queries are predicted-front architectures


def test_one_preference_gives_one_architecture(trained):
    model, _, _ = trained
    lat_first = model.front("a100", preference=[0.02, 0.98])
    ppl_first = model.front("a100", preference=[0.98, 0.02])
    assert len(lat_first) == len(ppl_first) == 1
    assert lat_first[0].objectives["latency_ms"] <= ppl_first[0].objectives["latency_ms"]
    assert ppl_first[0].objectives["perplexity"] <= lat_first[0].objectives["perplexity"]


def test_save_and_load_give_the_same_front(trained):
    model, _, _ = trained
    path = model.save()
    loaded = SpaceSearchModel.load(path)
    a = [(p.arch, p.objectives) for p in model.front("v100", points=6)]
    b = [(p.arch, p.objectives) for p in loaded.front("v100", points=6)]
    assert a == b
    assert loaded.describe()["space"] == "gpt_s"


def test_damaged_run_is_refused(trained):
    from hilnas.pipeline.search import DamagedSearchError

    model, _, _ = trained
    path = model.save()
    (path / "hypernet.safetensors").write_bytes(b"not weights")
    with pytest.raises(DamagedSearchError, match="hypernet.safetensors"):
        SpaceSearchModel.load(path)


@pytest.mark.parametrize(
    "space,objectives,match",
    [
        ("gpt_s", "error,latency_ms", "unknown objective"),
        ("ofa_mbv3", "perplexity,latency_ms", "unknown objective"),
        ("gpt_s", "perplexity", "at least two"),
        ("gpt_s", "perplexity,perplexity,latency", "given twice"),
        ("nb201", "error,latency", "NB201 search"),
    ],
)
def test_bad_objectives_name_the_choices(space, objectives, match):
    with pytest.raises(InvalidInputError, match=match):
        parse_objectives(space, objectives)


def test_bad_settings_are_refused_before_training():
    with pytest.raises(InvalidInputError, match="quality mode"):
        SpaceSearchConfig(space="ofa_mbv3", quality="surrogate")
    with pytest.raises(InvalidInputError, match="queries"):
        SpaceSearchConfig(space="gpt_s", queries=0)
    with pytest.raises(InvalidInputError, match="rounds"):
        SpaceSearchConfig(space="gpt_s", queries=20, rounds=10)
    with pytest.raises(InvalidInputError, match="query strategy"):
        SpaceSearchConfig(space="gpt_s", query_strategy="guess")


def test_energy_targets_are_named():
    # GPT-S's reference devices all have energy; OFA's have latency only
    assert len(reference_targets("gpt_s", ("latency_ms", "energy_mj"))) == 10
    assert reference_targets("ofa_mbv3", ("latency_ms", "energy_mj")) == []
    with pytest.raises(NotFoundError, match="no ofa_mbv3 reference device has energy_mj"):
        resolve_target("ofa_mbv3", "titan_rtx_64", ("latency_ms", "energy_mj"))
    with pytest.raises(NotFoundError, match="not a gpt_s reference device"):
        resolve_target("gpt_s", "my-phone", ("latency_ms",))


def test_explicit_values_are_checked():
    with pytest.raises(InvalidInputError, match="10 finite values > 0"):
        SpaceTarget.from_values("gpt_s", "x", {"latency_ms": [1.0] * 9})
    with pytest.raises(InvalidInputError, match="10 finite values > 0"):
        SpaceTarget.from_values("gpt_s", "x", {"latency_ms": [1.0] * 9 + [-1.0]})


def test_supernet_mode_trains_the_gpt_supernet_and_uses_it_as_the_oracle(tmp_path):
    from hilnas.pipeline.spacesearch.search import default_oracle

    cfg = SpaceSearchConfig(
        space="gpt_s",
        quality="supernet",
        supernet={"steps": 2, "batch_size": 4, "context": 16, "val_tokens": 256, "width_scale": 16},
    )
    oracle = default_oracle(cfg)
    assert oracle.objective == "perplexity" and "Shakespeare" in oracle.source
    codes = get_space("gpt_s").sample(3, seed=0)
    ppl = oracle(codes)
    assert ppl.shape == (3,) and np.all(np.isfinite(ppl)) and np.all(ppl > 1)
    assert len(oracle.queried) == 3
    oracle.save(tmp_path / "supernet")
    assert any((tmp_path / "supernet").iterdir())
