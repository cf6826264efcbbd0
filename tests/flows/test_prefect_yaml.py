"""flows/prefect.yaml: the shipped file is valid; bad values get errors naming place and fix.

Deploying it to a real server is tested in test_e2e_server.py.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from hilnas.flows.server import PREFECT_FILE, PrefectSetupError, pools_in, validate_prefect_yaml


@pytest.fixture(scope="module")
def shipped():
    return yaml.safe_load(PREFECT_FILE.read_text())


def test_shipped_file_is_valid(shipped):
    doc = validate_prefect_yaml(PREFECT_FILE)
    names = [d["name"] for d in doc["deployments"]]
    assert {"profile-cpu", "profile-gpu0", "search"} <= set(names)
    assert pools_in(doc) == ["hilnas-cpu", "hilnas-gpu0", "hilnas-search"]


def test_profiling_is_scheduled_and_limited(shipped):
    for dep in shipped["deployments"]:
        if dep["entrypoint"].endswith(":profile_flow"):
            assert dep["schedules"][0]["cron"]
            assert dep["concurrency_limit"]["limit"] == 1
            assert dep["work_pool"]["name"] == f"hilnas-{dep['parameters']['device']}"


def test_search_is_triggered_by_completed_profiling_runs(shipped):
    (search,) = [d for d in shipped["deployments"] if d["name"] == "search"]
    (trigger,) = search["triggers"]
    assert trigger["expect"] == ["prefect.flow-run.Completed"]
    related = {
        (r["prefect.resource.role"], r["prefect.resource.name"]) for r in trigger["match_related"]
    }
    assert related == {("flow", "hilnas-profile"), ("deployment", "profile-*")}
    from hilnas.flows.flows import profile_flow

    assert profile_flow.name == "hilnas-profile"


def test_pull_step_enters_the_checkout(tmp_path, monkeypatch, shipped):
    from hilnas.flows.deploy_steps import enter_hilnas_root

    (step,) = shipped["pull"]
    assert list(step) == ["hilnas.flows.deploy_steps.enter_hilnas_root"]
    monkeypatch.chdir(tmp_path)
    out = enter_hilnas_root()
    assert Path.cwd() == Path(out["directory"]) != tmp_path
    assert (Path(out["directory"]) / "flows" / "prefect.yaml").is_file()
    monkeypatch.setenv("HILNAS_CHECKOUT", str(tmp_path))
    with pytest.raises(RuntimeError, match="HILNAS_CHECKOUT"):
        enter_hilnas_root()


def _broken(tmp_path, shipped, edit):
    doc = copy.deepcopy(shipped)
    edit(doc)
    path = tmp_path / "prefect.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(PrefectSetupError) as e:
        validate_prefect_yaml(path)
    return str(e.value)


def _dep(doc, name):
    return next(d for d in doc["deployments"] if d["name"] == name)


def test_bad_cron(tmp_path, shipped):
    msg = _broken(
        tmp_path,
        shipped,
        lambda d: _dep(d, "profile-cpu")["schedules"][0].update(cron="61 2 * * *"),
    )
    assert "deployment 'profile-cpu'.schedules[0].cron" in msg and "'0 2 * * *'" in msg


def test_unknown_parameter_and_bad_type(tmp_path, shipped):
    msg = _broken(
        tmp_path, shipped, lambda d: _dep(d, "profile-cpu")["parameters"].update(repetitions=3)
    )
    assert "unknown parameter(s) repetitions" in msg and "reps" in msg
    msg = _broken(
        tmp_path, shipped, lambda d: _dep(d, "profile-cpu")["parameters"].update(reps="many")
    )
    assert "profile-cpu" in msg and "parameters" in msg


def test_bad_entrypoint_pool_limit_trigger(tmp_path, shipped):
    msg = _broken(
        tmp_path, shipped, lambda d: _dep(d, "search").update(entrypoint="hilnas.flows.flows:nope")
    )
    assert "deployment 'search'.entrypoint" in msg
    msg = _broken(tmp_path, shipped, lambda d: _dep(d, "search").pop("work_pool"))
    assert "work_pool.name: missing" in msg
    msg = _broken(tmp_path, shipped, lambda d: _dep(d, "profile-cpu").update(concurrency_limit=0))
    assert "concurrency_limit" in msg and "positive integer" in msg
    msg = _broken(
        tmp_path,
        shipped,
        lambda d: _dep(d, "profile-cpu").update(
            concurrency_limit={"limit": 1, "collision_strategy": "DROP"}
        ),
    )
    assert "ENQUEUE" in msg
    msg = _broken(
        tmp_path, shipped, lambda d: _dep(d, "search")["triggers"][0].update(posture="Sometimes")
    )
    assert "triggers[0]" in msg


def test_not_yaml(tmp_path):
    path = tmp_path / "prefect.yaml"
    path.write_text("deployments: [\n")
    with pytest.raises(PrefectSetupError, match="not valid YAML"):
        validate_prefect_yaml(path)


def test_cli_validate(tmp_path, shipped, hilnas_cli):
    code, out, _ = hilnas_cli(["agent", "validate"])
    assert code == 0 and "valid" in out
    doc = copy.deepcopy(shipped)
    _dep(doc, "profile-cpu")["schedules"][0]["cron"] = "every night"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    code, _, err = hilnas_cli(["agent", "validate", str(bad)])
    assert code == 2 and "cron" in err
