"""`hilnas run --space S` with a TOML --config: the space's main job through Prefect's
embedded API (real layers, tiny sizes), and its bad input, refused before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def _toml(tmp_path, text: str):
    path = tmp_path / "space.toml"
    path.write_text(text)
    return path


def test_unknown_key_in_a_space_config_names_the_valid_keys(hilnas_cli, hilnas_home, tmp_path):
    cfg = _toml(tmp_path, 'space = "gpt_s"\nquerys = 20\n')
    code, _, err = hilnas_cli(["run", "--config", str(cfg)], env={"COLUMNS": "400"})
    assert code == 2
    assert "unknown key 'querys'" in err and "did you mean 'queries'?" in err
    assert not list(hilnas_home.iterdir())  # nothing created: no store, no run directory


def test_bad_value_in_a_space_config_names_the_key_and_the_file(hilnas_cli, tmp_path):
    cfg = _toml(tmp_path, 'space = "ofa_mbv3"\nqueries = 3\n')
    code, _, err = hilnas_cli(["run", "--config", str(cfg)], env={"COLUMNS": "400"})
    assert code == 2 and "bad value for 'queries'" in err and "space.toml" in err


def test_flag_and_file_disagreeing_on_the_space_is_refused(hilnas_cli, tmp_path):
    cfg = _toml(tmp_path, 'space = "gpt_s"\n')
    code, _, err = hilnas_cli(
        ["run", "--config", str(cfg), "--space", "ofa_mbv3"], env={"COLUMNS": "400"}
    )
    assert code == 2 and "contradicts space = 'gpt_s'" in err and "drop one" in err


def test_nb201_keys_in_a_space_config_are_refused(hilnas_cli, tmp_path):
    cfg = _toml(tmp_path, 'space = "gpt_s"\nepochs = 3\n')
    code, _, err = hilnas_cli(["run", "--config", str(cfg)], env={"COLUMNS": "400"})
    assert code == 2 and "unknown key 'epochs'" in err
    code, _, err = hilnas_cli(["run", "--config", str(cfg), "--mode", "surrogate"])
    assert code == 2 and "--mode belong(s) to the nb201 main job" in err


def test_non_string_space_in_the_file(hilnas_cli, tmp_path):
    cfg = _toml(tmp_path, "space = 3\n")
    code, _, err = hilnas_cli(["run", "--config", str(cfg)], env={"COLUMNS": "400"})
    assert code == 2 and "is not a space name" in err


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_gpt_main_job_from_a_config_file(hilnas_cli, hilnas_home, tmp_path):
    """The space, its sizes and the search settings all come from the file; a flag overrides
    one of them (--points). The local CPU is profiled in both gpt_s workloads and gets a
    three-objective front from the one search."""
    run_dir = tmp_path / "run"
    cfg = _toml(
        tmp_path,
        'space = "gpt_s"\narchs = 0\nreps = 2\nwarmup = 0\nqueries = 20\nsteps = 5\n'
        'points = 9\nreference_devices = false\nonnx = false\nrun_dir = "run"\n',
    )
    code, out, err = hilnas_cli(["run", "--config", str(cfg), "--points", "3"], {"COLUMNS": "200"})
    assert code == 0, out + err
    summary = json.loads((run_dir / "summary.json").read_text())  # run_dir relative to the file
    assert summary["space"] == "gpt_s"
    (device,) = summary["devices"].values()
    workloads = {w["model_config"].rsplit("-", 2)[1]: w for w in device["workloads"]}
    assert sorted(workloads) == ["decode", "prefill"]  # both gpt_s workloads, 10 references each
    assert all(w["measured"] == 10 and w["failed"] == 0 for w in workloads.values())
    (front,) = summary["fronts"]
    assert front["error"] is None and 1 <= front["points"] <= 3
    doc = json.loads(Path(front["json"]).read_text())
    assert doc["metadata"]["intervals"]["latency_ms"]["measured"] == 0  # references only
    assert all("latency_ms" in p["intervals"] for p in doc["points"])
