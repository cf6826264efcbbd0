"""The space-generic cross-device predictor on slices of the real shipped tables (no mocks)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hilnas.devices.errors import DataIntegrityError, NotFoundError, UserError
from hilnas.pipeline.predictors import cost_floor, spearman, within
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


def test_experts_zero_shot_is_chosen_by_lodo_and_helps_batch_one(ofa) -> None:
    table, model = ofa
    scores = model.info["lodo_spearman_by_zero_shot"]
    assert set(scores) == {"meta", "experts"}
    assert model.zero_shot == max(scores, key=scores.__getitem__)
    assert model.experts is not None and model.experts.shape[0] == len(model.devices)
    # titan_xp_1 left out as well (never titan_rtx_64): the experts' mix ranks it better
    train = [d for d in table.devices if d not in ("titan_rtx_64", "titan_xp_1")]
    rows = np.arange(1000)
    meta = fit_predictor(table, train, rows, alpha=0.1, zero_shot="meta")
    experts = SpacePredictor(**{**meta.__dict__, "zero_shot": "experts"})
    feats = arch_features(get_space("ofa_mbv3"), [tuple(c) for c in table.codes[OFA_TEST]])
    ref = table.reference_values("titan_xp_1")
    y = table.column("titan_xp_1")[OFA_TEST]
    rho_meta = spearman(meta.predict_features(feats, ref), y)
    rho_experts = spearman(experts.predict_features(feats, ref), y)
    assert rho_experts > rho_meta + 0.02, (rho_meta, rho_experts)
    with pytest.raises(UserError) as exc:
        fit_predictor(table, train, rows, alpha=0.1, zero_shot="knn")
    _one_line_user_error(exc)


def test_few_shot_keeps_the_prior_on_noise_and_takes_a_real_shift(gpt) -> None:
    table, model, held_out, feats = gpt
    ref = table.reference_values(held_out)
    rows = np.arange(0, 8000, 37)
    codes = [tuple(c) for c in table.codes[rows]]
    prior = model.predict(codes, ref)
    kinds = []
    for seed in range(10):
        noise = np.exp(np.random.default_rng(seed).normal(0.0, 0.2, len(rows)))
        kinds.append(model.few_shot(ref, codes[:50], (prior * noise)[:50]).kind)
    assert kinds.count("none") >= 9, kinds  # pure noise: the zero-shot prior is kept
    noise = np.exp(np.random.default_rng(0).normal(0.0, 0.03, len(rows)))
    shifted = prior * 1.3 * noise  # this device is 30 % slower than the prior says
    fs = model.few_shot(ref, codes[:50], shifted[:50])
    assert fs.kind != "none"
    after = np.mean(np.abs(fs.predict(codes[50:]) / shifted[50:] - 1) <= 0.1)
    before = np.mean(np.abs(prior[50:] / shifted[50:] - 1) <= 0.1)
    assert before < 0.1 and after > 0.9, (before, after)


def test_few_shot_never_falls_below_zero_shot_on_noisy_energy() -> None:
    """Issue 11: P100 energy (log residual sd 0.36) made ridge corrections chosen by
    leave-one-out error alone lose up to 0.035 Spearman at k = 20 and 50 (0.956 -> 0.922 with
    the noise gates at 0); the rule keeps the prior unless a gain is beyond noise."""
    table = gpt_measured_table("energy_mj")
    dev = "P100"
    others = [d for d in table.devices if d != dev]
    model = fit_predictor(table, others, np.arange(0, 8000, 4), alpha=0.1, zero_shot="meta")
    feats = arch_features(get_space("gpt_s"), [tuple(c) for c in table.codes[GPT_TEST]])
    y, ref = table.column(dev), table.reference_values(dev)
    zero = model.predict_features(feats, ref)
    rho0, within0 = spearman(zero, y[GPT_TEST]), within(zero, y[GPT_TEST])
    pool = np.setdiff1d(np.arange(8000), table.reference_rows)
    for k in (20, 50):
        for seed in range(4):
            shots = np.random.default_rng(seed).choice(pool, size=k, replace=False)
            fs = model.few_shot(ref, [tuple(c) for c in table.codes[shots]], y[shots])
            pred = fs.predict_features(feats)
            assert spearman(pred, y[GPT_TEST]) >= rho0 - 0.005, (k, seed, fs.kind)
            assert within(pred, y[GPT_TEST]) >= within0 - 0.01, (k, seed, fs.kind)


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
    broken = SpacePredictor(
        **{**model.__dict__, "weights": model.weights.copy(), "zero_shot": "meta"}
    )
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
    saved = json.loads(path.read_text())
    assert saved["format"] == "hilnas.space_predictor/2" and saved["zero_shot"] == model.zero_shot
    again = load_predictor(path, space="ofa_mbv3", metric="latency_ms")
    archs = [tuple(c) for c in table.codes[:20]]
    ref = table.reference_values("titan_rtx_64")
    assert np.array_equal(again.predict(archs, ref), model.predict(archs, ref))
    # a file of the first format (meta model only) still loads, as the meta model
    old = {k: v for k, v in saved.items() if k not in ("zero_shot", "experts", "expert_devices")}
    old_path = tmp_path / "ofa_v1.json"
    old_path.write_text(json.dumps({**old, "format": "hilnas.space_predictor/1"}))
    v1 = load_predictor(old_path)
    meta = SpacePredictor(**{**model.__dict__, "zero_shot": "meta"})
    assert v1.zero_shot == "meta" and np.allclose(v1.predict(archs, ref), meta.predict(archs, ref))
    bad = tmp_path / "ofa_bad.json"
    bad.write_text(json.dumps({**saved, "experts": saved["experts"][:-1]}))
    with pytest.raises(DataIntegrityError) as exc:
        load_predictor(bad)
    _one_line_user_error(exc)
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
