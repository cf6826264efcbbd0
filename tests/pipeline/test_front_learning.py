"""Fronts whose hardware costs learn from a target's further measurements (TrainedSearch)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from hilnas.pipeline import refdata
from hilnas.pipeline.predictors import TargetEmbedding
from hilnas.pipeline.search import SearchConfig, SearchError, TrainedSearch, run_search
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
    "predictor_source": "shipped",
}


@pytest.fixture(scope="module")
def run_path(tmp_path_factory):
    home = tmp_path_factory.mktemp("front-learning-home")
    mp = pytest.MonkeyPatch()
    mp.setenv("HILNAS_HOME", str(home))
    try:
        yield run_search(SearchConfig(**TINY))
    finally:
        mp.undo()


@pytest.fixture
def trained(run_path):
    return TrainedSearch.load(run_path)


def _patterned_device():
    """gold_6226's latencies with a pattern no prior conditioned on 10 references can know:
    x2 when edges 0 and 5 are both 3x3 convolutions, x1.5 with three or more of them."""
    ref = refdata.load_nb201()
    codes = ref.arch_codes.astype(np.int64)
    c3 = get_space("nb201").options[0].index("nor_conv_3x3")
    both = (codes[:, 0] == c3) & (codes[:, 5] == c3)
    many = (codes == c3).sum(1) >= 3
    y = np.asarray(ref.latency("gold_6226"), np.float64) * np.where(both, 2.0, 1.0)
    return codes, y * np.where(many, 1.5, 1.0), np.array(ref.reference_indices)


def _embedding(y, refs, codes=None, sel=()):
    sel = np.asarray(sel, dtype=np.int64)
    return TargetEmbedding.from_raw(
        "patterned",
        "latency_ms",
        y[refs],
        support_codes=None if codes is None else codes[sel],
        support_values=None if codes is None else y[sel],
        network="unpruned",
    )


def _measured(codes, refs, k, seed=1):
    rest = np.setdiff1d(np.arange(len(codes)), refs)
    return np.random.default_rng(seed).permutation(rest)[:k]


def _abs_log_err(points, y):
    idx = np.array([p.index for p in points])
    pred = np.array([p.objectives["latency_ms"] for p in points])
    return float(np.mean(np.abs(np.log(pred / y[idx]))))


def test_without_further_measurements_the_front_is_the_meta_predictors(trained):
    codes, y, refs = _patterned_device()
    emb = _embedding(y, refs)
    pts = trained.front(emb, points=20)
    model = trained.cost_model("latency_ms", emb)
    assert model.source == "meta-predictor" and model.kind is None
    assert {p.costs["latency_ms"] for p in pts} == {"meta-predictor, reference values only"}
    # exactly the costs the search was trained with: the meta-predictor on the embedding
    got, _ = trained.predict_objectives(codes[:500], {"latency_ms": emb})
    want = trained.predictor("latency_ms").predict_codes(codes[:500], emb)
    np.testing.assert_array_equal(got[:, 1], want)
    trained.learn_costs = False
    same = trained.front(emb, points=20)
    assert [(p.arch, p.objectives) for p in same] == [(p.arch, p.objectives) for p in pts]


def test_further_measurements_move_the_front_onto_the_learned_costs(trained):
    codes, y, refs = _patterned_device()
    sel = _measured(codes, refs, 100)
    zero = trained.front(_embedding(y, refs), points=30)
    emb = _embedding(y, refs, codes, sel)
    pts = trained.front(emb, points=30)
    model = trained.cost_model("latency_ms", emb)
    assert model.source == "learning predictor" and model.measurements == 100
    assert model.kind is not None and not model.kind.startswith("none")
    assert {p.costs["latency_ms"] for p in pts} == {
        f"learning predictor, {model.kind}, 100 measurements"
    }
    # the front's values are the learning predictor's
    for p in pts[:5]:
        code = np.array([get_space("nb201").parse(p.arch)])
        assert p.objectives["latency_ms"] == pytest.approx(float(model.predict(code)[0]))
    # closer to the truth than with the references alone, on the front and over the space
    assert _abs_log_err(pts, y) < _abs_log_err(zero, y) - 0.05
    test = np.setdiff1d(np.arange(len(codes)), np.concatenate([refs, sel]))[::5]
    err = np.mean(np.abs(np.log(model.predict(codes[test]) / y[test])))
    zero_model = trained.cost_model("latency_ms", _embedding(y, refs))
    err0 = np.mean(np.abs(np.log(zero_model.predict(codes[test]) / y[test])))
    trained.learn_costs = False
    meta = trained.cost_model("latency_ms", emb)
    assert meta.source == "meta-predictor" and meta.measurements == 100
    err_meta = np.mean(np.abs(np.log(meta.predict(codes[test]) / y[test])))
    assert err < err_meta < err0


def test_the_learning_predictor_is_fit_once_per_target(trained, monkeypatch):
    from hilnas.pipeline.predictors import learning as L

    codes, y, refs = _patterned_device()
    emb = _embedding(y, refs, codes, _measured(codes, refs, 30))
    fits = []
    real = L.LearningPredictor.fit

    def counting(self, *a, **k):
        fits.append(1)
        return real(self, *a, **k)

    monkeypatch.setattr(L.LearningPredictor, "fit", counting)
    trained.front(emb, points=20)
    trained.front(emb, points=10)
    assert len(fits) == 1
    # the same content under a new object is the same target
    again = _embedding(y, refs, codes, _measured(codes, refs, 30))
    assert trained.cost_model("latency_ms", again) is trained.cost_model("latency_ms", emb)


def test_a_store_device_with_further_rows_gets_its_learning_predictor(trained, tmp_path):
    from hilnas.pipeline.predictors import io as PIO
    from hilnas.pipeline.store import MeasurementStore

    codes, y, refs = _patterned_device()
    sp = get_space("nb201")
    sel = _measured(codes, refs, 60, seed=3)
    rows = [f"{sp.format(codes[i])},{float(y[i])!r}" for i in np.concatenate([refs, sel])]
    csv_path = tmp_path / "board.csv"
    csv_path.write_text("arch,latency_ms\n" + "\n".join(rows) + "\n")
    with MeasurementStore() as store:
        PIO.import_device("patterned_board", csv_path, store)
        pts = trained.front("patterned_board", points=20, store=store)
        sources = trained.cost_sources("patterned_board", store=store)
    assert sources["latency_ms"].startswith("learning predictor, ")
    assert sources["latency_ms"].endswith(", 60 measurements")
    assert all(p.costs == sources for p in pts)


def test_bad_targets_are_refused_as_before(trained):
    with pytest.raises(SearchError, match="missing latency_ms"):
        trained.front({}, points=5)
    with pytest.raises(SearchError, match="a target is a name or an embedding"):
        trained.front(3.5, points=5)


def test_learned_costs_keep_the_order_of_architectures_below_the_floor():
    from hilnas.pipeline.predictors.learning import smooth_floor

    pred = np.array([0.01, 0.5, 1.0, 1.6, 2.0, 4.0, 40.0])
    out = smooth_floor(pred, 2.0)
    # never below the floor, strictly increasing (a hard floor would tie the first five, and
    # the non-dominated filter would keep one of them), ~unchanged well above it
    assert np.all(out > 2.0) and np.all(np.diff(out) > 0)
    assert out[-1] == pytest.approx(40.0, rel=1e-4)


def test_the_learned_costs_respect_the_floor_and_the_space(trained):
    from hilnas.pipeline.predictors import cost_floor

    codes, y, refs = _patterned_device()
    sel = _measured(codes, refs, 40)
    emb = _embedding(y, refs, codes, sel)
    pred = trained.cost_model("latency_ms", emb).predict(codes)
    assert pred.shape == (len(codes),) and np.all(np.isfinite(pred))
    assert pred.min() >= cost_floor(np.concatenate([y[refs], y[sel]]))
