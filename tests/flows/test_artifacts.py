"""The artifact location: content-addressed ONNX files by hash, any fsspec URL, no pickles,
and the agent's profiling path that never imports torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hilnas.flows.artifacts import ArtifactError, ArtifactExporter, ArtifactLocation, sha256_file
from hilnas.pipeline.spaces import get_space

SPACE = get_space("nb201")


def test_default_location_is_under_hilnas_home(hilnas_home, monkeypatch):
    monkeypatch.delenv("HILNAS_ARTIFACTS", raising=False)
    loc = ArtifactLocation()
    assert Path(loc.root) == hilnas_home / "artifacts" and loc.local


def test_put_get_lookup_roundtrip(tmp_path):
    loc = ArtifactLocation(tmp_path / "art")
    f = tmp_path / "m.onnx"
    f.write_bytes(b"model-bytes")
    entry = loc.publish("key-1", f, arch="|x|")
    assert entry.sha256 == sha256_file(f) and loc.has(entry.sha256)
    assert loc.publish("key-1", f, arch="|x|") == entry  # idempotent
    assert loc.lookup("key-1").meta == {"arch": "|x|"} and loc.lookup("other") is None
    assert loc.get_file(entry.sha256).read_bytes() == b"model-bytes"


def test_fsspec_url_and_corruption(tmp_path, monkeypatch):
    monkeypatch.setenv("HILNAS_ARTIFACTS", "memory://hilnas-test-artifacts")
    loc = ArtifactLocation()
    assert not loc.local
    f = tmp_path / "m.onnx"
    f.write_bytes(b"abc")
    sha = loc.put_file(f)
    local = loc.get_file(sha, cache_dir=tmp_path / "cache")
    assert local.parent == tmp_path / "cache" and local.read_bytes() == b"abc"
    # a blob whose bytes do not match its name is refused (and not kept in the cache)
    with loc.fs.open(loc._blob(sha), "wb") as fh:
        fh.write(b"tampered")
    local.unlink()
    with pytest.raises(ArtifactError, match="does not match its hash"):
        loc.get_file(sha, cache_dir=tmp_path / "cache")
    assert not local.exists()
    with pytest.raises(ArtifactError, match="hilnas agent publish|export it"):
        loc.get_file("0" * 64)


def test_unknown_protocol_is_a_clear_error():
    with pytest.raises(ArtifactError, match="HILNAS_ARTIFACTS"):
        ArtifactLocation("nosuchproto://bucket/x")


def test_artifact_exporter_names_the_fix_for_a_missing_model(tmp_path):
    exp = ArtifactExporter(ArtifactLocation(tmp_path / "art"))
    with pytest.raises(ArtifactError, match="hilnas agent publish"):
        exp.export(SPACE, SPACE.reference_architectures()[0])


@pytest.mark.slow
def test_publish_then_profile_without_torch(tmp_path):
    """Publish a plan here (exporter: torch/onnx), then profile it on the real local CPU in a
    process where importing torch or onnx fails: the agent path fetches the files by hash."""
    import hilnas.devices
    import hilnas.profilers

    if not hasattr(hilnas.profilers, "OrtProfiler") or not hasattr(hilnas.devices, "get_device"):
        pytest.skip("the device and profiler layers are not built yet")
    from hilnas.flows.artifacts import publish_plan

    art = tmp_path / "art"
    out = publish_plan(archs=2, seed=3, location=ArtifactLocation(art))
    assert out["published"] == 12
    index = list((art / "index").glob("*.json"))
    assert len(index) == 12 and all(json.loads(p.read_text())["sha256"] for p in index)
    assert not list(art.rglob("*.pkl")) and not list(art.rglob("*.pt"))

    out = _run_agent(
        art,
        tmp_path / "agent-home",
        """
        summary = jobs.profile("cpu", archs=2, seed=3, reps=2, warmup=0)
        assert summary["measured"] == 12 and summary["failed"] == 0, summary
        print("OK", summary["measured"])
        """,
    )
    assert out == "OK 12"


def _run_agent(art: Path, home: Path, body: str) -> str:
    """Run ``body`` as an agent in a fresh interpreter where importing torch or onnx fails
    (what an agent without the search extra has); returns its standard output, stripped."""
    script = (
        textwrap.dedent(
            """
        import sys
        for name in ("torch", "onnx"):
            sys.modules[name] = None  # any import of them raises ImportError
        from hilnas.flows import jobs
        """
        )
        + textwrap.dedent(body)
        + textwrap.dedent(
            """
        assert not [m for m in ("torch", "onnx") if sys.modules.get(m) is not None]
        """
        )
    )
    env = dict(os.environ, HILNAS_ARTIFACTS=str(art), HILNAS_HOME=str(home))
    env["HILNAS_AGENT_DEVICE"] = "cpu"
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.strip()


@pytest.mark.slow
def test_agent_profiles_every_gpt_workload_from_artifacts(tmp_path):
    """gpt_s has two workloads (prefill, decode): publishing exports both, and an agent without
    torch measures both from the artifact location, each stored under its own measurement key."""
    from hilnas.flows.artifacts import publish_plan

    art = tmp_path / "art"
    out = publish_plan(archs=0, seed=0, space="gpt_s", location=ArtifactLocation(art))
    assert out["published"] == 20  # 10 reference architectures x 2 workloads
    index = [json.loads(p.read_text()) for p in (art / "index").glob("*.json")]
    keys = {entry["meta"]["config_key"] for entry in index}
    assert {k.rsplit("-", 2)[1] for k in keys} == {"prefill", "decode"}

    out = _run_agent(
        art,
        tmp_path / "agent-home",
        """
        from hilnas.pipeline.store import MeasurementStore
        s = jobs.profile("cpu", archs=0, reps=2, warmup=0, space="gpt_s")
        assert s["measured"] == 20 and s["failed"] == 0, s
        assert [w["measured"] for w in s["workloads"]] == [10, 10], s["workloads"]
        phases = sorted(w["model_config_key"].rsplit("-", 2)[1] for w in s["workloads"])
        assert phases == ["decode", "prefill"], phases
        with MeasurementStore() as st:
            rows = st.measurements(space="gpt_s")
        assert len({r.key.model_config_key for r in rows}) == 2 and len(rows) == 20
        print("OK", s["measured"])
        """,
    )
    assert out == "OK 20"
