"""The OFA search benchmark on a tiny configuration: real supernet, real predictor, real scoring.

A supernet of width 0.1 at 8 px trained for one epoch on 100 MNIST images stands in for the
default one (the benchmark's code paths are the same; only the oracle is cheaper), and the
latency predictor is trained on 600 of HELP's rows.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hilnas.devices.errors import InvalidInputError, NotFoundError
from hilnas.pipeline.benchmarks import search_ofa
from hilnas.pipeline.predictors.space import DeviceTable, arch_features, ofa_latency_table
from hilnas.pipeline.spaces import get_space
from hilnas.pipeline.spaces.ofa_mbv3.mnist import load_mnist
from hilnas.pipeline.spaces.ofa_mbv3.train import OFATrainSettings
from hilnas.pipeline.spacesearch import baselines
from hilnas.pipeline.spacesearch.ofa_problem import (
    TEST_CONFIG,
    SupernetErrorOracle,
    cached_supernet,
    latency_predictor,
    ofa_problem,
)

TINY = {
    "width_mult": 0.1,
    "resolution": 8,
    "epochs": 1,
    "batch_size": 20,
    "images": 100,
    "eval_batch_size": 100,
}
DEVICES = (TEST_CONFIG, "titan_rtx_1")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data():
    return load_mnist(seed=0, images=TINY["images"])


@pytest.fixture(scope="module")
def supernet(tmp_path_factory, data):
    cache = tmp_path_factory.mktemp("cache")
    oracle, record = cached_supernet(cache, OFATrainSettings(**TINY), data=data)
    assert record["trained_now"] and record["epochs"] == 1 and record["train_s"] > 0
    return oracle, cache


@pytest.fixture(scope="module")
def predictor():
    full = ofa_latency_table()
    keep = np.unique(np.r_[np.arange(600), list(full.reference_rows)])
    pos = {int(r): i for i, r in enumerate(keep)}
    table = DeviceTable(
        space=full.space,
        metric=full.metric,
        codes=full.codes[keep],
        values=full.values[keep],
        devices=full.devices,
        reference_rows=tuple(pos[int(r)] for r in full.reference_rows),
    )
    return latency_predictor((TEST_CONFIG,), table=table, alpha=0.1)


def _settings(**kw) -> search_ofa.Settings:
    base = {
        "devices": DEVICES,
        "random_seeds": (0, 1),
        "nsga_seeds": (0,),
        "budgets": (12,),
        "bounds_samples": 20,
        "reference_evaluations": 20,
        "queries": 10,
        "steps": 3,
        "rounds": 1,
        "pool": 100,
        "hidden": 16,
        "points": 4,
        "front_evaluations": 60,
        "cpu": False,
    }
    base.update(kw)
    return search_ofa.Settings(**base)


@pytest.fixture(scope="module")
def result(supernet, predictor, tmp_path_factory):
    oracle, _ = supernet
    res = search_ofa.benchmark(
        _settings(), cache_dir=None, supernet=oracle, predictor=predictor, quick=True
    )
    out = tmp_path_factory.mktemp("out")
    jp, mp = search_ofa.write_results(res, out, "search_ofa_test")
    return res, jp, mp


def test_saved_results_have_every_method_per_target(result):
    res, jp, mp = result
    saved = json.loads(jp.read_text())
    methods = ["random@12", "nsga2@12", "hypernet(B=10)"]
    assert saved["methods"] == methods
    for dev in DEVICES:
        cell = saved["table"]["err-lat"][dev]
        for m in [*methods, "pool"]:
            assert len(cell[m]["hv_ratio"]) == (2 if m == "random@12" else 1)
            assert all(0.0 <= r <= 1.0 + 1e-12 for r in cell[m]["hv_ratio"])
        assert cell["reference"]["points"] >= 1 and cell["reference"]["hv"] > 0
    md = mp.read_text()
    assert f"{TEST_CONFIG} (zero-shot)" in md and "## Wall time" in md
    assert saved["hypernet"]["queries_used"] == 10


def test_reference_front_is_the_pool_so_its_own_hv_ratio_is_one(result):
    res, _, _ = result
    # every architecture evaluated (reference runs included) is in the pool, so the pool's
    # front IS the reference front
    for dev in DEVICES:
        assert res["table"]["err-lat"][dev]["pool"]["mean"] == pytest.approx(1.0, abs=1e-12)


def test_titan_rtx_64_is_zero_shot_for_predictor_and_hypernetwork(result, predictor):
    res, _, _ = result
    assert TEST_CONFIG not in predictor.info["train_devices"]
    assert len(predictor.info["train_devices"]) == 8
    assert TEST_CONFIG not in res["hypernet"]["train_targets"]
    assert res["hypernet"]["front_sizes"][TEST_CONFIG] >= 1


def test_baselines_points_are_the_oracles_values(supernet, predictor, data):
    oracle, _ = supernet
    error = SupernetErrorOracle.from_supernet(oracle)
    bench = search_ofa.OFASearchBenchmark(
        devices=DEVICES,
        seeds=(0,),
        reference_evaluations=20,
        bounds_samples=20,
        error_oracle=error,
        predictor=predictor,
    )
    bench.run_method("nsga2@12", search_ofa.baseline_method("nsga2", 12))
    bench.run_method("random@12", search_ofa.shared_random(12))
    space = get_space("ofa_mbv3")
    for key, problem in bench.problems.items():
        ref = ofa_latency_table().reference_values(key[0])
        direct = baselines.nsga2(problem, 12, 0)  # deterministic: the same run again
        F = bench.runs["nsga2@12"][key][0].F
        np.testing.assert_array_equal(F, direct.F)
        codes = [tuple(c) for c in direct.codes]
        # the error column is the supernet's validation error in %, the latency column the
        # predictor's zero-shot value from the configuration's reference latencies
        np.testing.assert_allclose(F[:, 0], 100.0 * oracle.error(codes))
        np.testing.assert_allclose(
            F[:, 1], predictor.predict_features(arch_features(space, codes), ref)
        )
        rnd = space.sample(12, seed=0)
        np.testing.assert_allclose(
            bench.runs["random@12"][key][0].F[:, 0], 100.0 * oracle.error(rnd)
        )


def test_error_is_evaluated_once_for_all_targets_and_persists(supernet, predictor, tmp_path):
    oracle, _ = supernet
    error = SupernetErrorOracle.from_supernet(oracle, tmp_path)
    codes = get_space("ofa_mbv3").sample(5, seed=9)
    a = ofa_problem(TEST_CONFIG, error, predictor, bounds_samples=5)
    b = ofa_problem("titan_rtx_1", error, predictor, bounds_samples=5)
    Fa = a.evaluate(codes)
    assert error.evaluations == 5
    Fb = b.evaluate(codes)
    assert error.evaluations == 5  # the second target costs no error evaluation
    np.testing.assert_array_equal(Fa[:, 0], Fb[:, 0])
    assert not np.allclose(Fa[:, 1], Fb[:, 1])  # latency is the target's own
    assert error.save() is not None
    again = SupernetErrorOracle.from_supernet(oracle, tmp_path)
    assert again.loaded == 5
    np.testing.assert_array_equal(again(codes), Fa[:, 0])
    assert again.evaluations == 0
    # a cache of other weights is never mixed in
    other = SupernetErrorOracle(oracle, fingerprint="other", cache_file=error.cache_file)
    assert other.loaded == 0


def test_cached_supernet_is_reloaded_with_its_training_record(supernet, data):
    oracle, cache = supernet
    again, record = cached_supernet(cache, OFATrainSettings(**TINY), data=data)
    assert record["trained_now"] is False and record["epochs"] == 1
    codes = get_space("ofa_mbv3").sample(3, seed=2)
    np.testing.assert_array_equal(again.error(codes), oracle.error(codes))


def test_bad_input_names_the_fix(supernet, predictor):
    oracle, _ = supernet
    error = SupernetErrorOracle.from_supernet(oracle)
    with pytest.raises(NotFoundError, match="titan_rtx_64"):
        search_ofa.OFASearchBenchmark(
            devices=("no_such_gpu",), error_oracle=error, predictor=predictor
        )
    with pytest.raises(InvalidInputError, match="exclude fewer"):
        latency_predictor(ofa_latency_table().devices[:8], table=ofa_latency_table())
    with pytest.raises(NotFoundError, match="reference_values"):
        ofa_problem("my_phone", error, predictor)


@pytest.mark.slow
def test_the_cpu_sweep_is_measured_with_onnx_runtime(supernet, predictor):
    """Hardware in the loop on this machine (real export, real ONNX Runtime sessions)."""
    oracle, _ = supernet
    res = search_ofa.benchmark(
        _settings(devices=(TEST_CONFIG,), cpu=True, sweep=3, reps=3, warmup=1),
        cache_dir=None,
        supernet=oracle,
        predictor=predictor,
        quick=True,
    )
    cpu = res["cpu"]
    assert cpu["device"] in res["hypernet"]["train_targets"]  # the CPU joined the search
    sweep = cpu["sweep"]
    assert sweep["measured"] == 3 and len(sweep["points"]) == 3
    assert [p["weight_on_error"] for p in sweep["points"]] == [1.0, 0.5, 0.0]
    assert cpu["front"]["measured"] == len(cpu["front"]["points"]) >= 1
    for p in sweep["points"] + cpu["front"]["points"]:
        assert p["measured_latency_ms"] > 0 and p["predicted_latency_ms"] > 0
        assert 0.0 <= p["supernet_val_error_pct"] <= 100.0
    assert cpu["reference_remeasured_over_start_median"] > 0
    w = res["wall_time"]
    assert w["export_per_subnet"]["n"] >= 10 and w["profile_per_subnet"]["median_s"] > 0
    assert "## This CPU, measured" in search_ofa.markdown(res)
