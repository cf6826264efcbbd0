"""The Prefect flows on the test harness (ephemeral API), on the real stack: the local CPU from
discovery, the real ONNX exporter, the real ONNX Runtime profiler, a real SQLite store (in the
test's HILNAS_HOME) and the real fit / surrogate search / fronts, at tiny settings (2 timed
repetitions, no warm-up, a one-epoch search of 2 steps on 4 accuracy queries).

Only a GPU is simulated, since this machine has none: ``pynvml`` is replaced by
:class:`hilnas.devices.testing.FakeNvml` (NVML's interface, simulated GPUs), so the real NVIDIA
discovery lists a GPU; :class:`VanishingNvml` makes that GPU fall off the bus right after the
first discovery has seen it. Everything else runs for real.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import pytest
from hilnas.devices import get_device
from hilnas.devices.testing import FakeGpu, FakeNvml
from hilnas.flows import jobs
from hilnas.pipeline.store import MeasurementStore

pytestmark = pytest.mark.usefixtures("prefect_harness")

#: A one-epoch surrogate search of a few steps (seconds, not minutes); SearchConfig fields.
TINY_SEARCH = {
    "steps_per_epoch": 2,
    "accuracy_queries": 4,
    "query_rounds": 0,
    "surrogate_members": 1,
}


@pytest.fixture(autouse=True)
def no_agent(monkeypatch):
    """These runs are not inside a measurement agent (whatever the caller's environment says)."""
    monkeypatch.delenv(jobs.AGENT_DEVICE_ENV, raising=False)


@pytest.fixture(scope="module")
def cpu():
    """The local CPU as the real discovery reports it."""
    return get_device("cpu")


class VanishingNvml(FakeNvml):
    """Simulated NVML (this machine has no GPU) whose GPUs fall off the bus once the first
    discovery is over (its ``nvmlShutdown``): later discoveries list none, as after a GPU is
    lost or its driver unloaded between the pipeline's discovery and the device's profiling."""

    def nvmlShutdown(self) -> None:
        super().nvmlShutdown()
        self.gpus.clear()


def simulate_gpu(monkeypatch, nvml: FakeNvml) -> FakeNvml:
    """Install the simulated NVML in place of ``pynvml`` (imported lazily by the discovery)."""
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    return nvml


def read_artifacts(key: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )


def test_profile_flow_measures_then_resumes(cpu, hilnas_home):
    from hilnas.flows.flows import profile_flow

    state = profile_flow(device="cpu", archs=3, reps=2, warmup=0, return_state=True)
    first = state.result()
    assert first["device_id"] == cpu.id
    assert (first["measured"], first["skipped"], first["failed"]) == (13, 0, 0), first["failures"]
    store = MeasurementStore()  # the default store, under this test's HILNAS_HOME
    try:
        assert store.count_measurements(device_id=cpu.id, status="ok") == 13
        assert store.config_keys(cpu.id) == [first["config_key"]]
    finally:
        store.close()
    state_again = profile_flow(device="cpu", archs=3, reps=2, warmup=0, return_state=True)
    again = state_again.result()
    assert (again["measured"], again["skipped"], again["failed"]) == (0, 13, 0)
    # each run published its summary (the harness is shared: other tests' runs use this key too)
    runs = {state.state_details.flow_run_id: 13, state_again.state_details.flow_run_id: 0}
    arts = [a for a in read_artifacts(f"profile-{jobs.slug(cpu.id)}") if a.flow_run_id in runs]
    assert len(arts) == 2 and all(a.type == "table" for a in arts)
    assert {a.flow_run_id: json.loads(a.data)[0]["measured"] for a in arts} == runs


def test_missing_device_fails_its_run_with_the_fix_and_no_retry():
    from hilnas.flows.flows import profile_flow

    t0 = time.perf_counter()
    state = profile_flow(device="gpu7", archs=1, reps=1, return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match="hilnas devices list"):
        state.result()
    assert time.perf_counter() - t0 < 5  # not retried (retries wait 5 s)


def test_agent_refuses_a_run_for_another_device(cpu, monkeypatch):
    gpu = FakeGpu(uuid="GPU-0000beef-0000-0000-0000-000000000000")
    simulate_gpu(monkeypatch, FakeNvml([gpu]))
    assert get_device("gpu0").id.startswith("gpu-")  # the simulated GPU is discovered
    monkeypatch.setenv(jobs.AGENT_DEVICE_ENV, "cpu")
    with pytest.raises(ValueError, match="this agent serves device"):
        jobs.resolve_device("gpu0")
    assert jobs.resolve_device(None).id == cpu.id
    assert jobs.resolve_device("cpu0").id == cpu.id  # another name of the device it serves


def test_pipeline_goes_on_when_a_device_disappears(cpu, hilnas_home, monkeypatch, tmp_path):
    """Discovery saw a (simulated) GPU that is gone when its profiling starts: that device fails
    with the reason and is not retried; the CPU is profiled for real and fit, search and fronts
    run for real on what it measured."""
    from hilnas.flows.config import RunConfig
    from hilnas.flows.flows import pipeline_flow

    nvml = simulate_gpu(monkeypatch, VanishingNvml([FakeGpu(name="NVIDIA Vanished GPU")]))
    run_dir = tmp_path / "run"
    cfg = RunConfig(
        archs=2,
        reps=2,
        warmup=0,
        mode="surrogate",
        epochs=1,
        search=TINY_SEARCH,
        points=3,
        run_dir=run_dir,
    )
    state = pipeline_flow(config=cfg.model_dump(mode="json"), return_state=True)
    result = state.result()

    assert list(result["devices"]) == [cpu.id]
    assert result["devices"][cpu.id]["measured"] == 12
    (gone,) = result["failed_devices"]
    assert gone.startswith("gpu-") and nvml.calls.count("nvmlInit") >= 2
    assert "DeviceNotFoundError" in result["failed_devices"][gone]
    assert "hilnas devices list" in result["failed_devices"][gone]

    # the search trained on the reference devices and on the CPU just measured
    cpu_key = result["devices"][cpu.id]["config_key"]
    settings = json.loads((Path(result["search"]) / "settings.json").read_text())
    assert settings["mode"] == "surrogate" and cpu_key in settings["train_targets"]
    assert Path(result["search"]).is_relative_to(hilnas_home)

    fronts = result["fronts"]
    assert fronts[0]["target"] == cpu_key and len(fronts) == 1 + 27
    assert all(f["error"] is None and f["points"] >= 1 for f in fronts), fronts
    first = fronts[0]
    doc = json.loads(Path(first["json"]).read_text())
    assert doc["device"] == cpu_key and Path(first["png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    best = {k: min(p["objectives"][k] for p in doc["points"]) for k in ("error", "latency_ms")}
    assert first["best"] == pytest.approx(best)
    assert all(math.isfinite(v) and v > 0 for v in best.values())
    onnx = sorted((Path(first["json"]).parent / "onnx").glob("*.onnx"))
    assert first["onnx"] == len(onnx) >= 1

    timings = json.loads((run_dir / "timings.json").read_text())
    assert {"profiling_s", "fitting_s", "search_s", "writing_s", "total_s"} <= set(timings)
    assert all(timings[k] > 0 for k in ("profiling_s", "search_s", "writing_s"))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["fronts"][0]["best"] == pytest.approx(best)
    assert json.loads((run_dir / "config.json").read_text())["archs"] == 2
    key = f"front-{jobs.slug(cpu_key)}"
    run_id = state.state_details.flow_run_id
    (table,) = [a for a in read_artifacts(key) if a.flow_run_id == run_id]
    assert table.type == "table" and len(json.loads(table.data)) == len(doc["points"])
    (plot,) = [a for a in read_artifacts(f"{key}-plot") if a.flow_run_id == run_id]
    assert plot.type == "markdown" and "data:image/png;base64," in plot.data


def test_pipeline_fails_clearly_when_no_device_can_be_profiled(hilnas_home, monkeypatch, tmp_path):
    """The only device asked for is a (simulated) GPU that vanishes after discovery: the run
    fails naming every device's reason, and neither fit nor search runs."""
    from hilnas.flows.config import RunConfig
    from hilnas.flows.flows import pipeline_flow

    simulate_gpu(monkeypatch, VanishingNvml([FakeGpu()]))
    run_dir = tmp_path / "run"
    cfg = RunConfig(devices=["gpu0"], archs=1, reps=1, run_dir=run_dir)
    state = pipeline_flow(config=cfg.model_dump(mode="json"), return_state=True)
    assert state.is_failed()
    with pytest.raises(
        RuntimeError, match="profiling failed on every local device: gpu-.*hilnas devices list"
    ):
        state.result()
    assert (run_dir / "config.json").exists() and not (run_dir / "summary.json").exists()
    assert not (hilnas_home / "search").exists() or not any((hilnas_home / "search").iterdir())
