"""The Prefect flows on the test harness (ephemeral API): profiling, failures, the pipeline's
orchestration (run directory, timings, artifacts). Fakes stand in for the exporter/profiler;
the search layer is faked where only the orchestration is under test."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from hilnas.flows import jobs

pytestmark = pytest.mark.usefixtures("prefect_harness")


def read_artifacts(key: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))


def test_profile_flow_measures_then_resumes(fakes):
    from hilnas.flows.flows import profile_flow

    first = profile_flow(device="cpu", archs=3, reps=2, warmup=0)
    assert first["device_id"] == fakes.CPU.id
    assert (first["measured"], first["skipped"], first["failed"]) == (13, 0, 0)
    again = profile_flow(device="cpu", archs=3, reps=2, warmup=0)
    assert (again["measured"], again["skipped"]) == (0, 13)
    (art,) = read_artifacts(f"profile-{jobs.slug(fakes.CPU.id)}")[:1]
    assert art.type == "table"


def test_missing_device_fails_its_run_with_the_fix_and_no_retry(fakes):
    from hilnas.flows.flows import profile_flow

    t0 = time.perf_counter()
    state = profile_flow(device="gpu7", archs=1, reps=1, return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match="hilnas devices list"):
        state.result()
    assert time.perf_counter() - t0 < 5  # not retried (retries wait 5 s)


def test_agent_refuses_a_run_for_another_device(fakes, monkeypatch):
    monkeypatch.setenv("HILNAS_AGENT_DEVICE", "cpu")
    monkeypatch.setattr(
        "hilnas.devices.get_device",
        lambda name: fakes.CPU if name in ("cpu", fakes.CPU.id) else _other(fakes, name),
    )
    with pytest.raises(ValueError, match="this agent serves device"):
        jobs.resolve_device("gpu0")
    assert jobs.resolve_device(None).id == fakes.CPU.id


def _other(fakes, name):
    from dataclasses import replace

    if name == "gpu0":
        return replace(fakes.CPU, id="gpu-0000beef", aliases=("gpu0",))
    return fakes.fake_get_device(name)


@pytest.fixture
def fake_search(monkeypatch, tmp_path):
    """fit/search/fronts replaced by fakes that record their calls (orchestration only)."""
    calls: dict[str, list] = {"fit": [], "search": [], "fronts": []}

    def fit(**kw):
        calls["fit"].append(kw)
        return {"latency_ms": "fake"}

    def search(**kw):
        calls["search"].append(kw)
        return tmp_path / "search-fake"

    def write_fronts(search_path, targets, out_dir, *, points, onnx, progress=None, store=None):
        calls["fronts"].append(list(targets))
        out = []
        for t in targets:
            folder = Path(out_dir) / jobs.slug(t)
            folder.mkdir(parents=True, exist_ok=True)
            pts = [{"arch": "|a|", "objectives": {"error": 10.0 - i, "latency_ms": 1.0 + i}}
                   for i in range(points)]
            (folder / "front.json").write_text(json.dumps(pts))
            png = folder / "front.png"
            png.write_bytes(b"\x89PNG\r\n\x1a\n")
            out.append(jobs.FrontFiles(t, folder / "front.json", png, (), pts))
        return out

    monkeypatch.setattr(jobs, "fit", fit)
    monkeypatch.setattr(jobs, "search", search)
    monkeypatch.setattr(jobs, "write_fronts", write_fronts)
    return calls


def test_pipeline_goes_on_when_a_device_disappears(fakes, fake_search, monkeypatch, tmp_path):
    """Discovery saw a GPU that is gone when its profiling starts: that device fails with the
    reason; the CPU is profiled and every other step runs."""
    from dataclasses import replace

    from hilnas.flows.config import RunConfig
    from hilnas.flows.flows import pipeline_flow

    gone = replace(fakes.CPU, id="gpu-deadbeef", name="Vanished GPU", aliases=("gpu0",))
    monkeypatch.setattr("hilnas.devices.discover", lambda: [fakes.CPU, gone])
    run_dir = tmp_path / "run"
    cfg = RunConfig(archs=2, reps=2, warmup=0, mode="surrogate", points=3, run_dir=run_dir)
    result = pipeline_flow(config=cfg.model_dump(mode="json"))

    assert list(result["devices"]) == [fakes.CPU.id]
    assert "gpu-deadbeef" in result["failed_devices"]
    assert "hilnas devices list" in result["failed_devices"]["gpu-deadbeef"]
    targets = fake_search["fronts"][0]
    assert targets[0].startswith(fakes.CPU.id) and len(targets) == 1 + 27
    assert fake_search["search"][0]["mode"] == "surrogate"
    timings = json.loads((run_dir / "timings.json").read_text())
    assert {"profiling_s", "fitting_s", "search_s", "writing_s", "total_s"} <= set(timings)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["fronts"][0]["best"] == {"error": 8.0, "latency_ms": 1.0}
    assert json.loads((run_dir / "config.json").read_text())["archs"] == 2
    key = f"front-{jobs.slug(targets[0])}"
    assert read_artifacts(key)[0].type == "table"
    assert read_artifacts(f"{key}-plot")[0].type == "markdown"


def test_pipeline_fails_clearly_when_no_device_can_be_profiled(fakes, fake_search, monkeypatch, tmp_path):
    from dataclasses import replace

    from hilnas.flows.config import RunConfig
    from hilnas.flows.flows import pipeline_flow

    gone = replace(fakes.CPU, id="cpu-gone0000", aliases=())
    monkeypatch.setattr("hilnas.devices.discover", lambda: [gone])
    cfg = RunConfig(archs=1, reps=1, run_dir=tmp_path / "run")
    state = pipeline_flow(config=cfg.model_dump(mode="json"), return_state=True)
    assert state.is_failed()
    with pytest.raises(RuntimeError, match="profiling failed on every local device"):
        state.result()
    assert not fake_search["search"]
