"""Hardware predictors: embeddings, the meta-predictor's gradient path, safe weights, bad input,
zero-shot quality on the MODNAS test devices, per-device models."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
from hilnas.pipeline import predictors as P
from hilnas.pipeline import refdata
from hilnas.pipeline.predictors import device as PD
from hilnas.pipeline.predictors import io as PIO
from hilnas.pipeline.predictors.features import (
    FEATURE_SETS,
    arch_features,
    features_np,
    one_hot_codes,
)
from hilnas.pipeline.spaces import get_space


@pytest.fixture(scope="module")
def space():
    return get_space("nb201")


@pytest.fixture(scope="module")
def meta():
    return P.load_meta_predictor("latency_ms", source="shipped")


def ref_csv(values, extra=(), energy=None) -> str:
    refs = P.reference_strings()
    head = "arch,latency_ms" + (",energy_mj" if energy is not None else "") + "\n"
    rows = []
    for i, (a, v) in enumerate(zip(refs, values, strict=False)):
        rows.append(f"{a},{v}" + (f",{energy[i]}" if energy is not None else ""))
    rows += [f"{a},{v}" + ("," if energy is not None else "") for a, v in extra]
    return head + "\n".join(rows) + "\n"


# ----------------------------------------------------------------------------------------------
# embeddings
# ----------------------------------------------------------------------------------------------
def test_embedding_of_reference_device_is_its_reference_latencies():
    ref = refdata.load_nb201()
    emb = P.embedding_for("pixel2")
    assert emb.raw.shape == (10,) and emb.metric == "latency_ms"
    np.testing.assert_allclose(emb.raw, ref.latency("pixel2")[list(ref.reference_indices)])
    assert emb.normalized.min() == 0.0 and emb.normalized.max() == 1.0
    assert emb.tensor().dtype == torch.float32 and emb.support_values.size == 0
    e = P.embedding_for("eyeriss", "energy_mj")
    np.testing.assert_allclose(e.raw, ref.energy("eyeriss")[list(ref.reference_indices)])


def test_no_energy_embedding_for_latency_only_reference_device():
    with pytest.raises(P.NoEmbeddingError, match="latency_ms"):
        P.embedding_for("pixel2", "energy_mj")
    with pytest.raises(P.PredictorError, match="unknown metric"):
        P.embedding_for("pixel2", "power_w")


def test_embedding_from_table_lists_missing_reference_archs():
    refs = P.reference_strings()
    table = {a: 1.0 + i for i, a in enumerate(refs[:7])}
    with pytest.raises(P.MissingReferenceError) as err:
        P.embedding_from_table("dev", "latency_ms", table)
    assert err.value.missing == tuple(refs[7:])
    for a in refs[7:]:
        assert a in str(err.value)


# ----------------------------------------------------------------------------------------------
# features and the gradient path
# ----------------------------------------------------------------------------------------------
def test_soft_features_equal_hard_features_for_one_hot(space):
    codes = np.array(space.sample(200, seed=3))
    for fs, blocks in FEATURE_SETS.items():
        hard = features_np(codes, blocks)
        x = torch.from_numpy(one_hot_codes(codes)).double()
        np.testing.assert_allclose(arch_features(x, blocks).numpy(), hard, err_msg=fs)
        assert hard.shape == (200, sum(1 for _ in range(hard.shape[1])))


def test_gradient_reaches_relaxed_one_hot(meta):
    emb = P.embedding_for("raspi4")
    logits = torch.randn(8, 6, 5, requires_grad=True)
    cost = meta.predict(torch.softmax(logits, -1), emb)
    assert cost.shape == (8,) and torch.all(cost > 0)
    cost.sum().backward()
    g = logits.grad
    assert torch.all(torch.isfinite(g)) and g.abs().sum() > 0


def test_straight_through_sample_passes_gradient_and_predicts_the_hard_arch(meta, space):
    emb = P.embedding_for("gold_6226")
    logits = torch.randn(4, 6, 5, requires_grad=True)
    soft = torch.softmax(logits, -1)
    hard = torch.nn.functional.one_hot(soft.argmax(-1), 5).to(soft.dtype)
    st = hard - soft.detach() + soft
    cost = meta.predict(st, emb)
    cost.sum().backward()
    assert torch.all(torch.isfinite(logits.grad)) and logits.grad.abs().sum() > 0
    codes = hard.argmax(-1).numpy()
    np.testing.assert_allclose(cost.detach().numpy(), meta.predict_codes(codes, emb), rtol=1e-5)


def test_embedding_tensor_forms_agree(meta):
    emb = P.embedding_for("fpga")
    x = torch.softmax(torch.randn(5, 6, 5), -1)
    a = meta.predict(x, emb)
    b = meta.predict(x, torch.tensor(emb.raw), network=emb.network)
    c = meta.predict(x, torch.tensor(emb.raw).repeat(5, 1), network=emb.network)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)
    two = torch.stack(
        [torch.tensor(emb.raw), torch.tensor(P.embedding_for("pixel2").raw)]
    ).repeat_interleave(torch.tensor([2, 3]), 0)
    mixed = meta.predict(x, two, network="unpruned")
    torch.testing.assert_close(mixed[:2], a[:2])
    torch.testing.assert_close(mixed[2:], meta.predict(x[2:], P.embedding_for("pixel2")))
    assert meta.predict(x.double(), emb).dtype == torch.float64
    with pytest.raises(P.PredictorError, match="energy_mj"):
        meta.predict(x, P.embedding_for("fpga", "energy_mj"))
    with pytest.raises(ValueError, match=r"\(B, 6, 5\)"):
        meta.predict(torch.rand(3, 6, 4), emb)


# ----------------------------------------------------------------------------------------------
# zero-shot quality (the targets) and the shipped weights
# ----------------------------------------------------------------------------------------------
def test_zero_shot_on_modnas_test_devices_meets_targets(meta):
    ref = refdata.load_nb201()
    rhos = {
        d: P.spearman(meta.predict_space(P.embedding_for(d)), ref.latency(d))
        for d in refdata.MODNAS_TEST_DEVICES
    }
    assert np.mean(list(rhos.values())) >= 0.96, rhos
    assert min(rhos.values()) >= 0.88, rhos  # pixel2's noise ceiling is ~0.904 (see benchmark)


def test_shipped_weights_saw_only_training_devices():
    for metric in P.METRICS:
        meta = json.loads(P.shipped_weights_path(metric).with_suffix(".json").read_text())
        fp = meta["fingerprint"]
        lat = [t.split(":")[0] for t in fp["training_targets"] if t.endswith(":latency_ms")]
        assert set(lat) == set(refdata.MODNAS_TRAIN_DEVICES)
        assert fp["refdata_sha256"] == refdata.load_nb201().sha256 and fp["space"] == "nb201"


def test_energy_predictor_predicts_energy(space):
    m = P.load_meta_predictor("energy_mj", source="shipped")
    emb = P.embedding_for("eyeriss", "energy_mj")
    pred = m.predict_space(emb)
    assert np.all(pred > 0) and P.spearman(pred, refdata.load_nb201().energy("eyeriss")) > 0.95


# ----------------------------------------------------------------------------------------------
# save / load
# ----------------------------------------------------------------------------------------------
def test_training_is_reproducible_and_round_trips(tmp_path):
    a = P.train_meta_predictor(latency_devices=refdata.MODNAS_TRAIN_DEVICES[:4], seed=3)
    b = P.train_meta_predictor(latency_devices=refdata.MODNAS_TRAIN_DEVICES[:4], seed=3)
    for k, v in a.state_dict().items():
        torch.testing.assert_close(v, b.state_dict()[k], rtol=0, atol=0)
    st, js = P.save_meta_predictor(a, tmp_path / "m")
    assert st.suffix == ".safetensors" and js.suffix == ".json"
    c = P.read_meta_predictor(tmp_path / "m", metric="latency_ms")
    emb = P.embedding_for("titan_rtx_256")
    x = torch.softmax(torch.randn(6, 6, 5), -1)
    torch.testing.assert_close(a.predict(x, emb), c.predict(x, emb))
    meta = json.loads(js.read_text())
    assert meta["fingerprint"]["seed"] == 3 and meta["fingerprint"]["hilnas_version"]


@pytest.mark.parametrize("tamper", ["refdata", "space", "tensor", "metric", "format"])
def test_fingerprint_mismatch_is_refused(tmp_path, tamper):
    src = P.shipped_weights_path("latency_ms")
    for suffix in (".safetensors", ".json"):
        shutil.copy(src.with_suffix(suffix), tmp_path / f"m{suffix}")
    js = tmp_path / "m.json"
    meta = json.loads(js.read_text())
    metric = "latency_ms"
    if tamper == "refdata":
        meta["fingerprint"]["refdata_sha256"] = "0" * 64
    elif tamper == "space":
        meta["fingerprint"]["space"] = "mobilenetv3"
    elif tamper == "format":
        meta["fingerprint"]["format_version"] = 999
    elif tamper == "metric":
        metric = "energy_mj"
    else:
        blob = bytearray((tmp_path / "m.safetensors").read_bytes())
        blob[-1] ^= 0xFF
        (tmp_path / "m.safetensors").write_bytes(bytes(blob))
    js.write_text(json.dumps(meta))
    with pytest.raises(P.PredictorFingerprintError, match="hilnas fit --meta"):
        P.read_meta_predictor(tmp_path / "m", metric=metric)


def test_refit_weights_in_home_take_precedence(hilnas_home):
    m = P.train_meta_predictor(latency_devices=("titanx_1", "pixel3"))
    P.save_meta_predictor(m, P.user_weights_path("latency_ms"))
    auto = P.load_meta_predictor("latency_ms")
    assert auto.device_weights.shape[0] == 2
    assert P.load_meta_predictor("latency_ms", source="shipped").device_weights.shape[0] == 13


# ----------------------------------------------------------------------------------------------
# CSV validation (nothing is stored from a rejected file: the parser runs before the store)
# ----------------------------------------------------------------------------------------------
REFS_OK = [1.0 + 0.1 * i for i in range(10)]


@pytest.mark.parametrize(
    "text, match",
    [
        ("arch,latency\nx,1\n", "lacks the column(s) latency_ms"),
        ("latency_ms\n1\n", "lacks the column(s) arch"),
        ("arch,latency_ms\n|nor_conv_3x3~0|,1\n", "malformed"),
        (
            "arch,latency_ms\n|none~0|+|none~0|none~1|+|none~0|none~1|,1\n",
            "has 2 inputs, expected 3",
        ),
        (
            "arch,latency_ms\n|nor_conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|,1\n",
            "unknown operation",
        ),
        ("arch,latency_ms\n", "no measurements"),
    ],
)
def test_bad_csv_structure(text, match):
    with pytest.raises(P.PredictorError, match=match.replace("(", r"\(").replace(")", r"\)")):
        PIO.parse_measurements_csv(text)


@pytest.mark.parametrize(
    "bad, match",
    [
        ("nan", "finite"),
        ("inf", "finite"),
        ("0", "> 0"),
        ("-2", "> 0"),
        ("", "empty"),
        ("fast", "not a number"),
    ],
)
def test_bad_latency_values(bad, match):
    vals = [str(v) for v in REFS_OK]
    vals[3] = bad
    with pytest.raises(P.PredictorError, match=match) as err:
        PIO.parse_measurements_csv(ref_csv(vals))
    assert "row 4" in str(err.value) and "nothing was stored" in str(err.value)


def test_duplicates_conflicting_rejected_identical_merged():
    refs = P.reference_strings()
    ok = PIO.parse_measurements_csv(ref_csv(REFS_OK, extra=[(refs[0], REFS_OK[0])]))
    assert len(ok.archs) == 10
    with pytest.raises(P.PredictorError, match="repeats line 2 with different values"):
        PIO.parse_measurements_csv(ref_csv(REFS_OK, extra=[(refs[0], 9.9)]))


def test_missing_reference_archs_are_listed_exactly():
    refs = P.reference_strings()
    text = "arch,latency_ms\n" + "".join(f"{a},1.5\n" for a in refs[2:])
    with pytest.raises(P.MissingReferenceError) as err:
        PIO.parse_measurements_csv(text)
    assert err.value.missing == tuple(refs[:2])
    assert refs[0] in str(err.value) and refs[1] in str(err.value) and refs[2] not in str(err.value)


def test_partial_energy_on_references_is_rejected():
    energy = ["1.0"] * 10
    energy[5] = ""
    with pytest.raises(P.MissingReferenceError, match="energy_mj"):
        PIO.parse_measurements_csv(ref_csv(REFS_OK, energy=energy))


def test_reference_device_names_are_reserved():
    with pytest.raises(P.PredictorError, match="reference device"):
        PIO.check_device_name("pixel2")


# ----------------------------------------------------------------------------------------------
# external devices through the store
# ----------------------------------------------------------------------------------------------
def test_import_ten_references_then_zero_shot_gives_whole_space(tmp_path, space):
    from hilnas.pipeline.store import MeasurementStore

    truth = refdata.load_nb201().latency("raspi4")
    refs = list(refdata.load_nb201().reference_indices)
    csv_path = tmp_path / "dev.csv"
    csv_path.write_text(ref_csv(truth[refs]))
    with MeasurementStore() as store:
        PIO.import_device("my_board", csv_path, store)
        preds = PIO.predict_target("my_board", store=store)
    assert set(preds) == {"latency_ms"}
    lat = preds["latency_ms"]
    assert lat.shape == (15625,) and np.all(lat > 0) and np.all(np.isfinite(lat))
    assert P.spearman(lat, truth) > 0.9


def test_rejected_file_stores_nothing(tmp_path):
    from hilnas.pipeline.store import MeasurementStore

    csv_path = tmp_path / "dev.csv"
    csv_path.write_text(
        "arch,latency_ms\n" + "".join(f"{a},1.5\n" for a in P.reference_strings()[5:])
    )
    with MeasurementStore() as store:
        with pytest.raises(P.MissingReferenceError):
            PIO.import_device("my_board", csv_path, store)
        assert store.external_devices() == []
        with pytest.raises(P.NoEmbeddingError):
            P.embedding_for("my_board", store=store)


# ----------------------------------------------------------------------------------------------
# per-device models
# ----------------------------------------------------------------------------------------------
def _additive_device(space, n=150, seed=0, noise=0.01):
    rng = np.random.default_rng(seed)
    codes = np.array(space.sample(n, seed=seed, exclude=space.reference_architectures()))
    blocks = FEATURE_SETS["counts"]
    w = np.array([0.15, 0.002, 0.08, 0.6, 0.03, 0.01, 0.02, 0.02, 0.02, 0.03])[
        : features_np(codes[:1], blocks).shape[1]
    ]

    def f(c):
        return features_np(c, blocks) @ w * (1 + noise * rng.standard_normal(len(c)))

    return codes, f(codes), f(P.reference_codes()), f


def test_device_predictor_cross_validates_and_round_trips(space, hilnas_home):
    codes, values, ref_vals, _ = _additive_device(space)
    emb = P.TargetEmbedding.from_raw(
        "cpu-test/cpu/t1/b1", "latency_ms", ref_vals, support_codes=codes, support_values=values
    )
    model = PD.fit_device_predictor(emb, folds=5)
    cv = model.cv[model.kind]
    assert model.kind in PD.CANDIDATES and cv["within10"] > 0.95 and cv["spearman"] > 0.95
    assert cv == min((model.cv[k] for k in PD.CANDIDATES), key=lambda q: q["mean_abs_rel_error"])
    path = PD.save_device_predictor(model)
    assert path.is_file() and json.loads(path.read_text())["kind"] == model.kind
    loaded = PD.load_device_predictor(emb)
    test = np.array(space.sample(50, seed=9))
    np.testing.assert_allclose(loaded.predict_codes(test), model.predict_codes(test))
    stale = emb.with_support(codes[:-1], values[:-1])  # the data changed: not used any more
    assert PD.load_device_predictor(stale) is None


def test_device_predictor_needs_enough_measurements(space):
    codes, values, ref_vals, _ = _additive_device(space, n=5)
    emb = P.TargetEmbedding.from_raw(
        "x", "latency_ms", ref_vals, support_codes=codes, support_values=values
    )
    with pytest.raises(P.PredictorError, match="at least"):
        PD.fit_device_predictor(emb)


def test_few_shot_support_improves_the_meta_predictor(meta):
    ref = refdata.load_nb201()
    truth = ref.latency("raspi4")
    rng = np.random.default_rng(0)
    idx = rng.choice(15625, 50, replace=False)
    emb0 = P.embedding_for("raspi4")
    emb = emb0.with_support(ref.arch_codes[idx], truth[idx])
    q0 = P.quality(meta.predict_space(emb0), truth)
    q1 = P.quality(meta.predict_space(emb), truth)
    assert q1["spearman"] > q0["spearman"] + 0.005 and math.isfinite(q1["kendall"])


def test_pruned_networks_skip_dead_ops(meta, space):
    """hilnas's own networks skip ops fed by dead nodes; the pruned prior variant knows that."""
    from pathlib import Path

    csv_path = Path(P.__file__).parent / "benchmarks" / "results" / "local_cpu_latency.csv"
    if not csv_path.is_file():
        pytest.skip("no local CPU measurements shipped")
    table = PIO.read_measurements_csv(csv_path)
    pos = {a: i for i, a in enumerate(table.archs)}
    raw = table.latency_ms[[pos[a] for a in P.reference_strings()]]
    dead = space.parse(
        "|none~0|+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    )
    gone = space.parse("|none~0|+|skip_connect~0|none~1|+|skip_connect~0|none~1|skip_connect~2|")
    pruned = P.TargetEmbedding.from_raw("cpu-x/cpu/t1/b1", "latency_ms", raw, network="pruned")
    unpruned = P.TargetEmbedding.from_raw("cpu-x/cpu/t1/b1", "latency_ms", raw, network="unpruned")
    a, b = meta.predict_codes([dead, gone], pruned)
    assert abs(a / b - 1) < 0.05  # the two dead conv3x3 cost nothing
    c, d = meta.predict_codes([dead, gone], unpruned)
    assert c > 1.5 * d
    # a store configuration key is a hilnas-measured target
    assert (
        P.embedding_from_table(
            "x", "latency_ms", dict(zip(table.archs, table.latency_ms, strict=False))
        ).network
        == "unknown"
    )
