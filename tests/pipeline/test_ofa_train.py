"""The OFA supernet trainer on the shipped MNIST sample and its error oracle: training runs and
learns, errors are finite, in [0, 1], deterministic, survive save/load; damage is detected."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hilnas.devices.errors import DataIntegrityError, InvalidInputError, NotFoundError
from hilnas.pipeline.spaces.ofa_mbv3.mnist import load_mnist, resize_images
from hilnas.pipeline.spaces.ofa_mbv3.space import OFAMobileNetV3
from hilnas.pipeline.spaces.ofa_mbv3.supernet import ElasticMBConv
from hilnas.pipeline.spaces.ofa_mbv3.train import (
    META_FILE,
    WEIGHTS_FILE,
    OFASupernetOracle,
    OFATrainSettings,
    build_supernet,
    largest_code,
    smallest_code,
    step_codes,
    train_ofa_supernet,
)

# tiny: 1,000 images (600 train, 200 val, 200 test), width 0.2, 16 px at resolution 224, one
# epoch of 30 steps on the largest and the smallest subnet (sandwich without random subnets)
TINY = dict(
    width_mult=0.2,
    resolution=16,
    epochs=1,
    batch_size=20,
    lr=0.1,
    images=1000,
    sampling="sandwich",
    random_subnets=0,
    distill=False,
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # tiny convolutions: several threads only add synchronisation (and stall on a busy machine)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def space():
    return OFAMobileNetV3()


@pytest.fixture(scope="module")
def data():
    return load_mnist(seed=0, images=1000)


@pytest.fixture(scope="module")
def oracle(data):
    torch.manual_seed(123)  # the trainer must not depend on the global RNG
    return train_ofa_supernet(OFATrainSettings(**TINY), data=data)


@pytest.fixture(scope="module")
def codes(space):
    return [largest_code(space), smallest_code(space), *space.sample(3, seed=4)]


def test_mnist_splits_are_stratified_standardised_and_seeded():
    d = load_mnist(seed=3, images=500)
    assert d.train_x.shape == (300, 1, 28, 28) and d.train_x.dtype == torch.float32
    assert len(d.val_y) == 100 and len(d.test_y) == 100
    assert np.bincount(d.val_y.numpy(), minlength=10).tolist() == [10] * 10
    assert abs(float(d.train_x.mean())) < 1e-3 and abs(float(d.train_x.std()) - 1) < 1e-2
    ids = {tuple(np.round(x.numpy().ravel()[::7], 3)) for x in d.train_x}
    assert not ids & {tuple(np.round(x.numpy().ravel()[::7], 3)) for x in d.test_x}
    again = load_mnist(seed=3, images=500)
    assert torch.equal(again.val_x, d.val_x)
    assert not torch.equal(load_mnist(seed=4, images=500).val_y, d.val_y)
    assert resize_images(d.val_x[:2], 32).shape == (2, 1, 32, 32)
    assert resize_images(d.val_x[:2], 28) is not None


def test_cropped_depthwise_kernels_compute_what_the_supernet_computes(space):
    s = OFATrainSettings(width_mult=0.35)
    fast = build_supernet(s)
    plain = space.build_supernet(s.model_config(), seed=s.seed)
    slots = [m for m in fast.modules() if isinstance(m, ElasticMBConv)]
    assert slots and all(m.crop_to_input for m in slots)
    assert not any(m.crop_to_input for m in plain.modules() if isinstance(m, ElasticMBConv))
    x = torch.randn(8, 1, 20, 20, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for code in [largest_code(space), *space.sample(2, seed=9)]:
            a = torch.from_numpy(space.one_hot(code))
            assert torch.allclose(fast(x, a), plain(x, a), atol=1e-5)


def test_oracle_errors_are_finite_fractions_and_deterministic(oracle, data, codes):
    e = oracle.error(codes)
    assert e.shape == (len(codes),) and e.dtype == np.float64
    assert np.all(np.isfinite(e)) and np.all((e >= 0) & (e <= 1))
    assert np.all(np.isclose(e * len(data.val_y), np.round(e * len(data.val_y))))
    t = oracle.test_error(codes)
    assert t.shape == e.shape and np.all((t >= 0) & (t <= 1))
    oracle._cache.clear()  # recomputed, not cached
    assert np.array_equal(oracle.error(codes), e)
    assert len(set(e.tolist())) > 1  # subnets differ
    with pytest.raises(InvalidInputError):
        oracle.error([[99] * 46])
    with pytest.raises(InvalidInputError):
        oracle.error(codes[0])  # a bare code, not a list of codes


def test_training_is_deterministic_for_a_seed(space, codes):
    small = load_mnist(seed=0, images=120)  # 72 training images: 3 steps of 20
    s = OFATrainSettings(**{**TINY, "epochs": 1, "images": 120})
    errors = []
    for global_seed in (1, 999):  # the trainer must not depend on the global RNG
        torch.manual_seed(global_seed)
        errors.append(train_ofa_supernet(s, data=small).error(codes))
    assert np.array_equal(errors[0], errors[1])
    other = train_ofa_supernet(
        OFATrainSettings(**{**TINY, "epochs": 1, "images": 120, "seed": 5}), data=small
    )
    assert not np.array_equal(other.error(codes), errors[0])


def test_short_training_beats_chance_on_the_largest_subnet(oracle, space):
    untrained = OFASupernetOracle(build_supernet(oracle.settings), oracle.settings, oracle.data, {})
    big = [largest_code(space)]
    assert untrained.error(big)[0] > 0.8
    assert oracle.error(big)[0] < 0.85  # chance is 0.9; 30 steps on 600 images
    d = oracle.describe()
    assert d["dataset"]["name"] == "mnist5k" and d["width_mult"] == 0.2
    assert d["input_sizes"] == [9, 16] and d["epochs"] == 1 and d["wall_s"] > 0


def test_save_load_round_trips_and_damage_is_detected(oracle, codes, tmp_path, data):
    want = oracle.error(codes)
    oracle.save(tmp_path / "o")
    back = OFASupernetOracle.load(tmp_path / "o", data=data)
    assert np.array_equal(back.error(codes), want)
    assert back.settings == oracle.settings
    # defaults: reloads the shipped MNIST sample with the saved split settings
    assert np.array_equal(OFASupernetOracle.load(tmp_path / "o").error(codes), want)

    weights = tmp_path / "o" / WEIGHTS_FILE
    raw = bytearray(weights.read_bytes())
    raw[-5] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.raises(DataIntegrityError):
        OFASupernetOracle.load(tmp_path / "o", data=data)

    oracle.save(tmp_path / "p")
    meta = tmp_path / "p" / META_FILE
    m = json.loads(meta.read_text())
    meta.write_text(json.dumps({**m, "space": "nb201"}))
    with pytest.raises(DataIntegrityError):
        OFASupernetOracle.load(tmp_path / "p", data=data)
    meta.write_text("{not json")
    with pytest.raises(DataIntegrityError):
        OFASupernetOracle.load(tmp_path / "p", data=data)
    meta.write_text(json.dumps(m))
    with pytest.raises(DataIntegrityError):  # other validation data than trained with
        OFASupernetOracle.load(tmp_path / "p", data=load_mnist(seed=1, images=1000))
    with pytest.raises(NotFoundError):
        OFASupernetOracle.load(tmp_path / "missing")


@pytest.mark.parametrize(
    "bad",
    [
        {"width_mult": 0.0},
        {"width_mult": 2.0},
        {"resolution": 4},
        {"epochs": 0},
        {"batch_size": 1},
        {"lr": -0.1},
        {"lr": float("nan")},
        {"sampling": "greedy"},
        {"optimizer": "lbfgs"},
        {"random_subnets": -1},
        {"images": 10},
        {"distill": 1},
        {"epochs": 2.5},
    ],
)
def test_bad_settings_raise(bad):
    with pytest.raises(InvalidInputError):
        OFATrainSettings(**bad)


def test_sampling_rules(space):
    rng = np.random.default_rng(0)
    sandwich = step_codes(space, OFATrainSettings(sampling="sandwich", random_subnets=3), rng)
    assert len(sandwich) == 5
    assert sandwich[0] == largest_code(space) and sandwich[1] == smallest_code(space)
    fair = step_codes(space, OFATrainSettings(sampling="fair"), rng)
    assert len(fair) == 3
    raw = np.array(fair)
    for col in range(1, 6):  # every depth decision takes each of its 3 options once
        assert sorted(raw[:, col].tolist()) == [0, 1, 2]
    assert len(set(raw[:, 0].tolist())) == 3  # resolutions differ
