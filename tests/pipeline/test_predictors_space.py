"""The space-generic cross-device predictor on slices of the real shipped tables (no mocks)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hilnas.devices.errors import DataIntegrityError, NotFoundError, UserError
from hilnas.pipeline.predictors import cost_floor, spearman
from hilnas.pipeline.predictors.space import (
    ALPHAS,
    FewShotPredictor,
    SpacePredictor,
    arch_features,
    default_predictor,
    fit_predictor,
    gpt_measured_table,
    load_predictor,
    ofa_latency_table,
)
from hilnas.pipeline.spaces import get_space

OFA_TEST = np.arange(4000, 5000)
GPT_TEST = np.arange(8000, 10000)


@pytest.fixture(scope="module")
def ofa() -> tuple:
    table = ofa_latency_table()
    others = [d for d in table.devices if d != "titan_rtx_64"]
    model = fit_predictor(table, others, np.arange(1000), alpha=0.1)
    return table, model


@pytest.fixture(scope="module")
def gpt() -> tuple:
    table = gpt_measured_table("latency_ms")
    held_out = table.devices[0]
    others = [d for d in table.devices if d != held_out]
    model = fit_predictor(table, others, np.arange(0, 8000, 4))  # penalty chosen by LODO
    feats = arch_features(get_space("gpt_s"), [tuple(c) for c in table.codes[GPT_TEST]])
    return table, model, held_out, feats


def _one_line_user_error(exc: pytest.ExceptionInfo) -> None:
    assert isinstance(exc.value, UserError)
    assert "\n" not in str(exc.value) and ";" in str(exc.value)


def test_ofa_zero_shot_on_the_help_test_device(ofa) -> None:
    table, model = ofa
    archs = [tuple(c) for c in table.codes[OFA_TEST]]
    pred = model.predict(archs, table.reference_values("titan_rtx_64"))
    # measured 0.997 with 1,000 training rows; the full benchmark (4,000 rows) gives 0.998
    assert spearman(pred, table.column("titan_rtx_64")[OFA_TEST]) > 0.99
    assert "titan_rtx_64" not in model.devices


def test_gpt_zero_shot_left_out_device_and_lodo_penalty(gpt) -> None:
    table, model, held_out, feats = gpt
    assert model.alpha in ALPHAS and set(model.info["lodo_spearman_by_alpha"]) == {
        str(a) for a in ALPHAS
    }
    pred = model.predict_features(feats, table.reference_values(held_out))
    assert spearman(pred, table.column(held_out)[GPT_TEST]) > 0.95  # measured 0.97 (a100)


def test_few_shot_is_not_worse_than_zero_shot(gpt) -> None:
    table, model, held_out, feats = gpt
    y = table.column(held_out)
    ref = table.reference_values(held_out)
    zero = spearman(model.predict_features(feats, ref), y[GPT_TEST])
    shots = np.random.default_rng(0).choice(np.arange(8000), size=50, replace=False)
    codes = [tuple(c) for c in table.codes[shots]]
    fs = model.few_shot(ref, codes, y[shots])
    assert isinstance(fs, FewShotPredictor) and fs.loo_mse["none"] > 0
    assert spearman(fs.predict_features(feats), y[GPT_TEST]) >= zero - 0.01


def test_floor_holds_even_for_a_model_that_predicts_nothing(ofa) -> None:
    table, model = ofa
    broken = SpacePredictor(**{**model.__dict__, "weights": model.weights.copy()})
    broken.weights[0, 0] = -20.0  # every prediction exp(-20) times the device's level
    ref = table.reference_values("titan_rtx_64")
    archs = [tuple(c) for c in table.codes[:50]]
    pred = broken.predict(archs, ref)
    assert np.allclose(pred, cost_floor(ref)) and cost_floor(ref) == pytest.approx(0.8 * ref.min())
    fs = broken.few_shot(ref, archs[:10], np.full(10, ref.min() / 2))
    assert fs.predict(archs).min() >= 0.8 * ref.min() / 2 - 1e-12


def test_save_load_round_trip_is_plain_json(ofa, tmp_path: Path) -> None:
    table, model = ofa
    path = model.save(tmp_path / "ofa.json")
    assert json.loads(path.read_text())["format"] == "hilnas.space_predictor/1"
    again = load_predictor(path, space="ofa_mbv3", metric="latency_ms")
    archs = [tuple(c) for c in table.codes[:20]]
    ref = table.reference_values("titan_rtx_64")
    assert np.array_equal(again.predict(archs, ref), model.predict(archs, ref))
    with pytest.raises(UserError) as exc:
        load_predictor(path, space="gpt_s")
    _one_line_user_error(exc)
    path.write_text(path.read_text()[:-40])
    with pytest.raises(DataIntegrityError) as exc:
        load_predictor(path)
    _one_line_user_error(exc)


def test_bad_input_is_a_one_line_user_error(ofa) -> None:
    table, model = ofa
    ofa_arch = model.reference_archs[0]
    with pytest.raises(NotFoundError) as exc:
        model.predict([ofa_arch], "pixel9")
    _one_line_user_error(exc)
    gpt_string = get_space("gpt_s").example
    with pytest.raises(UserError) as exc:
        model.predict([gpt_string], "2080ti_1")
    _one_line_user_error(exc)
    values = table.reference_values("2080ti_1")
    partial = dict(zip(model.reference_archs[:9], values[:9], strict=True))
    with pytest.raises(UserError) as exc:
        model.predict([ofa_arch], partial)
    _one_line_user_error(exc)
    assert model.reference_archs[9] in str(exc.value)
    with pytest.raises(UserError) as exc:
        model.predict([ofa_arch], [1.0] * 9 + [-1.0])
    _one_line_user_error(exc)
    with pytest.raises(UserError) as exc:
        model.predict([ofa_arch], [1.0] * 5)
    _one_line_user_error(exc)
    full = dict(zip(model.reference_archs, values, strict=True))
    assert model.predict([ofa_arch], full) == pytest.approx(model.predict([ofa_arch], "2080ti_1"))


def test_shipped_ofa_table_matches_the_space() -> None:
    table = ofa_latency_table()
    space = get_space("ofa_mbv3")
    assert table.values.shape == (5000, 9) and np.all(table.values > 0)
    refs = [tuple(int(v) for v in table.codes[r]) for r in table.reference_rows]
    assert refs == space.reference_architectures()


def test_default_predictor_reuses_its_cache_and_refuses_unknown_tables(gpt, tmp_path) -> None:
    table, model, held_out, _ = gpt
    with pytest.raises(NotFoundError) as exc:
        default_predictor("nb201")
    _one_line_user_error(exc)
    model.save(tmp_path / "gpt_s_latency_ms.json")  # trained on this table: reused as is
    cached = default_predictor("gpt_s", "latency_ms", cache_dir=tmp_path)
    assert held_out not in cached.devices and set(cached.devices) == set(model.devices)
    arch = model.reference_archs[3]
    assert cached.predict([arch], "v100") == pytest.approx(model.predict([arch], "v100"))
