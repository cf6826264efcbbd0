"""``profile_device(strategy=...)``: the sampled part of the plan chosen actively or at random.

Real stack as in test_profiling.py: the local CPU, the real ONNX exporter and ONNX Runtime
profiler on a tiny NB201 model, a real SQLite store. The active strategy fits the real
learning predictor (NB201's shipped meta-predictor as its prior) on what the store holds.
"""

from __future__ import annotations

import dataclasses

import pytest
from hilnas.devices.errors import InvalidInputError, PreconditionError
from hilnas.pipeline.export import OnnxExporter
from hilnas.pipeline.profiling import (
    default_strategy,
    plan_active,
    plan_architectures,
    profile_device,
)
from hilnas.pipeline.spaces import ModelConfig, get_space
from hilnas.pipeline.store import MeasurementKey, MeasurementStore
from hilnas.profilers import OrtProfiler

SPACE = get_space("nb201")
REFS = [tuple(r) for r in SPACE.reference_architectures()]
TINY = ModelConfig(channels=4, cells_per_stage=1, input_size=8)


@pytest.fixture
def store(tmp_path):
    s = MeasurementStore(f"sqlite:///{tmp_path / 'p.db'}")
    yield s
    s.close()


@pytest.fixture
def exporter(tmp_path):
    return OnnxExporter(cache_dir=tmp_path / "onnx")


def run(store, exporter, **kw):
    kw.setdefault("reps", 3)
    kw.setdefault("warmup", 1)
    kw.setdefault("model_config", TINY)
    return profile_device("cpu", store=store, exporter=exporter, profiler_factory=OrtProfiler, **kw)


def codes(report):
    return [SPACE.parse(r.arch) for r in report.rows]


def test_default_is_random_first_then_active_and_active_resumes(store, exporter):
    first = run(store, exporter, archs=2, seed=5)
    assert first.strategy == "random"  # no references stored yet
    assert codes(first) == [c for c, _ in plan_architectures(SPACE, 2, seed=5)]
    second = run(store, exporter, archs=6, seed=5)
    assert second.strategy == "active"
    got = codes(second)
    assert got[:10] == REFS and len(got) == 16 == len(set(got))
    assert got[10:12] == codes(first)[10:12]  # the two stored ones count towards --archs 6
    assert (second.measured, second.skipped) == (4, 12)
    # the four picks are not the random sample of the same seed
    assert set(got[12:]) != set(c for c, _ in plan_architectures(SPACE, 6, seed=5)[12:])
    again = run(store, exporter, archs=6, seed=5)
    assert again.strategy == "active" and (again.measured, again.skipped) == (0, 16)
    # the same architectures (their order may differ: a flagged row re-measured at the end of a
    # run under load is stored anew, and the plan lists stored rows oldest first)
    assert codes(again)[:10] == REFS and sorted(codes(again)) == sorted(got)
    assert store.count_measurements() == 16


def key_of(report, **change):
    key = MeasurementKey(
        space="nb201",
        arch="",
        model_config_key=TINY.key(),
        opset=report.opset,
        device_id=report.device_id,
        execution_provider=report.execution_provider,
        threads=report.threads,
        batch_size=report.batch_size,
        warmup=report.warmup,
        repetitions=report.repetitions,
    )
    return dataclasses.replace(key, **change)


def test_active_picks_are_deterministic_for_a_seed_and_stored_data(store, exporter):
    key = key_of(run(store, exporter, archs=0))
    base = plan_architectures(SPACE, 0, seed=0)
    a = plan_active(store, SPACE, key, base, 5, seed=1, pool_size=300)
    assert a == plan_active(store, SPACE, key, base, 5, seed=1, pool_size=300)
    b = plan_active(store, SPACE, key, base, 5, seed=2, pool_size=300)
    assert a[:10] == b[:10] == base and a[10:] != b[10:]
    picked = [c for c, ref in a[10:]]
    assert len(set(picked)) == 5 and not set(picked) & set(REFS)
    assert not any(ref for _, ref in a[10:])


def test_explicit_random_keeps_the_seeded_sample(store, exporter):
    run(store, exporter, archs=0)
    rep = run(store, exporter, archs=2, seed=3, strategy="random")
    assert rep.strategy == "random"
    assert codes(rep) == [c for c, _ in plan_architectures(SPACE, 2, seed=3)]


def test_active_without_references_is_refused_and_stores_nothing(store, exporter):
    with pytest.raises(PreconditionError, match="reference architectures measured"):
        run(store, exporter, archs=2, strategy="active")
    assert store.count_measurements() == 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"strategy": "greedy", "archs": 2}, "unknown strategy 'greedy'"),
        ({"archs": 20_000}, "archs"),
    ],
)
def test_bad_strategy_and_budget_are_refused(store, exporter, kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        run(store, exporter, **kwargs)
    assert store.count_measurements() == 0


def test_default_strategy_needs_every_reference_ok_with_these_settings(store, exporter):
    nine = run(
        store, exporter, archs=0, references=False, include=[SPACE.format(r) for r in REFS[:9]]
    )
    key = key_of(nine)
    assert default_strategy(store, SPACE, key) == "random"  # 9 of 10 references
    run(store, exporter, archs=0)
    assert default_strategy(store, SPACE, key) == "active"
    assert default_strategy(store, SPACE, dataclasses.replace(key, repetitions=4)) == "random"
