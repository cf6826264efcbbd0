"""`hilnas run`: the main job on the embedded default (real layers, tiny sizes), its rerun,
and its setup errors."""

from __future__ import annotations

import json
import socket

import pytest


def test_unreachable_server_names_the_fix(hilnas_cli, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, _, err = hilnas_cli(
        ["run", "--archs", "0", "--run-dir", str(tmp_path / "r")],
        env={"PREFECT_API_URL": f"http://127.0.0.1:{port}/api", "COLUMNS": "400"},
    )
    assert code == 2
    assert f"cannot reach the Prefect API at http://127.0.0.1:{port}/api" in err
    assert "prefect server start" in err and "unset it" in err
    assert not (tmp_path / "r").exists()


def _layers_ready() -> bool:
    import importlib.util

    import hilnas.profilers

    return (
        hasattr(hilnas.profilers, "OrtProfiler")
        and importlib.util.find_spec("hilnas.pipeline.search") is not None
    )


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_main_job_writes_the_run_directory_and_reruns_from_the_store(hilnas_cli, tmp_path):
    if not _layers_ready():
        pytest.skip("the profiler or search layer is not built yet")
    run_dir = tmp_path / "run1"
    config = tmp_path / "tiny.toml"
    config.write_text(
        'mode = "surrogate"\narchs = 2\nreps = 3\nepochs = 1\npoints = 3\n'
        "reference_devices = false\n[search]\naccuracy_queries = 20\nquery_rounds = 0\n"
        "surrogate_members = 1\nsteps_per_epoch = 5\n"
    )
    args = ["run", "--config", str(config), "--run-dir", str(run_dir)]
    code, out, err = hilnas_cli(args, env={"COLUMNS": "200"})
    assert code == 0, out + err
    assert "Pareto fronts" in out and str(run_dir) in out.replace("\n", "")
    summary = json.loads((run_dir / "summary.json").read_text())
    (device,) = summary["devices"].values()
    assert device["measured"] == 12 and device["failed"] == 0
    (front,) = summary["fronts"]
    from hilnas.flows.jobs import slug

    folder = run_dir / "fronts" / slug(front["target"])
    assert front["error"] is None and front["points"] >= 1
    doc = json.loads((folder / "front.json").read_text())
    assert doc["device"] == front["target"] and doc["points"]
    assert (folder / "front.png").read_bytes()[:4] == b"\x89PNG"
    onnx = sorted((folder / "onnx").glob("*.onnx"))
    assert len(onnx) == front["onnx"] >= 1
    timings = json.loads((run_dir / "timings.json").read_text())
    for stage in ("profiling_s", "fitting_s", "search_s", "writing_s", "total_s"):
        assert timings[stage] >= 0

    # rerun: the store already holds every measurement
    code, out, err = hilnas_cli([*args[:-1], str(tmp_path / "run2")], env={"COLUMNS": "200"})
    assert code == 0, out + err
    again = json.loads((tmp_path / "run2" / "summary.json").read_text())
    (device,) = again["devices"].values()
    assert device["measured"] == 0 and device["skipped"] == 12

    # onboarding: a new device configuration gets only its 10 reference architectures measured
    # (as an agent's first run does); its front then comes from the trained hypernetwork as is
    from hilnas.flows.flows import profile_flow
    from hilnas.pipeline.home import home_dir

    searches = sorted(p.name for p in (home_dir() / "search").iterdir())
    onboard = profile_flow(device="cpu", archs=0, reps=3, threads=2)
    assert onboard["measured"] == 10 and onboard["config_key"].endswith("/t2/b1")
    new = onboard["config_key"]
    code, out, err = hilnas_cli(["front", "--device", new, "--points", "5", "--json"])
    if code == 2 and "No such command" in err:  # the search CLI is not built yet
        from hilnas.pipeline.search import TrainedSearch

        points = TrainedSearch.load().front(new, points=5)
        assert points and all(p.objectives["latency_ms"] > 0 for p in points)
    else:
        assert code == 0, out + err
        assert "latency_ms" in out
    assert sorted(p.name for p in (home_dir() / "search").iterdir()) == searches  # no retraining
