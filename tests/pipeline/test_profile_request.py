"""ProfileRequest: one validated, JSON-ready record of a profiling run, and profile_request.

The record is checked on its own (defaults of each space, JSON round trip, the messages of bad
values) and then run for real: the local CPU, the real ONNX exporter, ONNX Runtime's isolated
worker and a real SQLite store, with a tiny NB201 model so a run takes seconds.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
from hilnas.devices.base import DeviceNotFoundError
from hilnas.devices.errors import InvalidInputError
from hilnas.pipeline.export import OnnxExporter
from hilnas.pipeline.profiling import (
    DEFAULT_ARCHS,
    DEFAULT_REPS,
    DEFAULT_WARMUP,
    ProfileRequest,
    profile_defaults,
    profile_device,
    profile_request,
)
from hilnas.pipeline.spaces import ArchitectureError, UnknownSpaceError, get_space
from hilnas.pipeline.store import MeasurementStore
from hilnas.profilers import OrtProfiler

#: A tiny NB201 workload, given as strings the way ``--config-set`` passes them.
TINY = {"channels": "4", "cells_per_stage": "1", "input_size": "8"}


def roundtrip(request: ProfileRequest) -> ProfileRequest:
    return ProfileRequest.from_dict(json.loads(json.dumps(request.to_dict())))


def test_defaults_of_each_space_are_resolved_in_the_record():
    nb = ProfileRequest(device="cpu")
    assert (nb.space, nb.archs, nb.reps, nb.warmup) == (
        "nb201",
        DEFAULT_ARCHS,
        DEFAULT_REPS,
        DEFAULT_WARMUP,
    )
    gpt = ProfileRequest(device="cpu", space="GPT_S")
    d = profile_defaults("gpt_s")
    assert (gpt.space, gpt.archs, gpt.reps, gpt.warmup) == ("gpt_s", d.archs, d.reps, d.warmup)
    assert (gpt.archs, gpt.reps) != (DEFAULT_ARCHS, DEFAULT_REPS)  # gpt_s has its own
    # a value the caller gives wins over the space's default
    assert ProfileRequest(device="cpu", space="gpt_s", reps=7).reps == 7
    settings = gpt.profile_settings()
    assert (settings.warmup, settings.repetitions) == (d.warmup, d.reps)


def test_round_trips_through_json_and_stays_equal():
    req = ProfileRequest(
        device="cpu",
        space="nb201",
        archs=4,
        reps=3,
        warmup=1,
        seed=9,
        threads=1,
        batch_size=2,
        force=True,
        retry_flagged=True,
        include=(
            5,
            "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|",
            (1, 2, 3, 4, 0, 1),
        ),
        settings=TINY,
        timeout_s=30,
        strategy="random",
        execution_provider="CPUExecutionProvider",
    )
    again = roundtrip(req)
    assert again == req and hash(again) == hash(req)
    assert again.to_dict()["settings"] == TINY
    assert again.include[2] == (1, 2, 3, 4, 0, 1) and isinstance(again.timeout_s, float)
    (cfg,) = again.workloads()
    assert (cfg.channels, cfg.cells_per_stage, cfg.input_size) == (4, 1, 8)


def test_gpt_s_sweep_is_two_workloads_unless_a_phase_is_set():
    both = ProfileRequest(device="cpu", space="gpt_s")
    assert [c.phase for c in both.workloads()] == ["prefill", "decode"] and both.labelled
    decode = roundtrip(dataclasses.replace(both, settings={"phase": "decode"}))
    assert [c.phase for c in decode.workloads()] == ["decode"] and decode.labelled
    plain = ProfileRequest(device="cpu")
    assert plain.workloads() == [get_space("nb201").default_model_config()]
    assert not plain.labelled


@pytest.mark.parametrize(
    "kw, error, match",
    [
        ({"reps": 0}, InvalidInputError, r"repetitions \(--reps\)"),
        ({"warmup": -1}, InvalidInputError, r"warmup \(--warmup\)"),
        ({"timeout_s": 0}, InvalidInputError, r"timeout_s \(--timeout\)"),
        ({"threads": 100_000}, InvalidInputError, r"threads \(--threads\).*logical CPUs"),
        ({"batch_size": 0}, InvalidInputError, r"batch_size \(--batch-size\)"),
        ({"archs": 10**9}, InvalidInputError, r"archs \(--archs\)=.*out of range"),
        ({"archs": 2.5}, InvalidInputError, r"archs \(--archs\) must be an integer"),
        ({"seed": -1}, InvalidInputError, r"seed \(--seed\)"),
        ({"opset": 3}, InvalidInputError, r"use an opset from 7"),
        ({"strategy": "greedy"}, InvalidInputError, r"unknown strategy 'greedy' \(--strategy\)"),
        ({"space": "nb999"}, UnknownSpaceError, r"unknown search space 'nb999'"),
        ({"settings": {"depth": "3"}}, InvalidInputError, r"no workload setting depth"),
        ({"settings": {"channels": "four"}}, InvalidInputError, r"channels='four' is not an int"),
        ({"include": ("not an arch",)}, ArchitectureError, r"malformed architecture string"),
        ({"include": (10**9,)}, ArchitectureError, r"cannot measure architecture"),
        ({"force": "false"}, InvalidInputError, r"force must be true or false"),
        ({"device": ""}, InvalidInputError, r"hilnas devices list"),
    ],
)
def test_bad_values_are_refused_with_the_options_messages(kw, error, match):
    with pytest.raises(error, match=match):
        ProfileRequest(**{"device": "cpu", **kw})


def test_from_dict_refuses_unknown_fields_and_a_missing_device():
    with pytest.raises(InvalidInputError, match=r"unknown profile request field\(s\) repss"):
        ProfileRequest.from_dict({"device": "cpu", "repss": 3})
    with pytest.raises(InvalidInputError, match="needs a device"):
        ProfileRequest.from_dict({"reps": 3})
    with pytest.raises(InvalidInputError, match="mapping of its fields"):
        ProfileRequest.from_dict(["cpu"])
    with pytest.raises(InvalidInputError, match=r"repetitions \(--reps\)"):
        ProfileRequest.from_dict({"device": "cpu", "reps": 0})  # validated as when built


def test_a_missing_device_fails_before_the_store_is_opened(tmp_path):
    db = tmp_path / "never.db"
    with pytest.raises(DeviceNotFoundError, match="hilnas devices list"):
        profile_request(ProfileRequest(device="gpu7", archs=0), store=f"sqlite:///{db}")
    assert not db.exists()
    with pytest.raises(InvalidInputError, match="needs a ProfileRequest"):
        profile_request({"device": "cpu"}, store=f"sqlite:///{db}")  # type: ignore[arg-type]
    assert not db.exists()


def test_profile_request_measures_then_its_json_twin_resumes(tmp_path):
    store = MeasurementStore(f"sqlite:///{tmp_path / 'p.db'}")
    exporter = OnnxExporter(cache_dir=tmp_path / "onnx")
    seen = []
    try:
        req = ProfileRequest(device="cpu", archs=1, reps=2, warmup=0, settings=TINY)
        (first,) = profile_request(
            req,
            store=store,
            exporter=exporter,
            profiler_factory=OrtProfiler,
            on_workload=lambda cfg: seen.append(cfg.key()),
        )
        n = len(get_space("nb201").reference_architectures()) + 1
        assert (first.measured, first.skipped, first.failed) == (n, 0, 0)
        assert seen == [first.model_config_key] == [req.workloads()[0].key()]
        assert (first.repetitions, first.warmup, first.seed) == (2, 0, 0)
        (again,) = profile_request(
            roundtrip(req), store=store, exporter=exporter, profiler_factory=OrtProfiler
        )
        assert (again.measured, again.skipped) == (0, n)
        # the keyword wrapper builds the same request: same keys, nothing new to measure
        (cfg,) = req.workloads()
        wrapped = profile_device(
            "cpu",
            archs=1,
            reps=2,
            warmup=0,
            model_config=cfg,
            store=store,
            exporter=exporter,
            profiler_factory=OrtProfiler,
        )
        assert (wrapped.measured, wrapped.skipped) == (0, n)
        assert wrapped.model_config_key == first.model_config_key
    finally:
        store.close()
