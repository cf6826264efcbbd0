"""End to end against a real `prefect server start` on 127.0.0.1 (ephemeral mode runs no
scheduler and fires no triggers reliably).

Deploy flows/prefect.yaml, start a measurement agent for the local CPU and a search worker, run
the profiling deployment, and check that its completion triggered the search deployment, which
wrote the device's front. Faults: a killed agent leaves a crashed run whose rerun measures only
what is missing; an unreachable server, an unknown device or work pool get errors naming the fix.

With HILNAS_TEST_PREFECT_POSTGRES_URL / HILNAS_TEST_POSTGRES_URL set (.ci/services.sh), the
server and the measurement store run on fresh PostgreSQL databases; else on SQLite files.
Everything started here is stopped in a finally.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml
from hilnas.flows import jobs
from hilnas.flows.server import PREFECT_FILE

pytestmark = [pytest.mark.prefect_server, pytest.mark.slow]

STARTUP_TIMEOUT_S = 60
PROFILE_PARAMS = {"archs": 2, "reps": 3, "warmup": 5, "seed": 0}
TINY_SEARCH = {
    "accuracy_queries": 20,
    "query_rounds": 0,
    "surrogate_members": 1,
    "steps_per_epoch": 5,
}
SEARCH_PARAMS = {
    "mode": "surrogate",
    "epochs": 1,
    "points": 3,
    "reference_devices": False,
    "search_options": TINY_SEARCH,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- databases
@contextlib.contextmanager
def fresh_postgres_db(url: str | None, prefix: str) -> Iterator[str | None]:
    """A new database on the server of ``url`` (dropped afterwards), or None without a URL."""
    if not url:
        yield None
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = make_url(url)
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(
        base.set(drivername="postgresql+psycopg", database="postgres"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# ----------------------------------------------------------------------------- processes
@dataclass
class Server:
    url: str
    env: dict[str, str]
    home: Path
    logs: Path
    procs: list[subprocess.Popen] = field(default_factory=list)

    def api(self, method: str, path: str, **kw) -> httpx.Response:
        r = httpx.request(method, f"{self.url}{path}", timeout=30, **kw)
        r.raise_for_status()
        return r

    def spawn(self, name: str, cmd: list[str], **env: str) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            cmd,
            env={**self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        proc.log_path = self.logs / f"{name}.log"  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def run(self, cmd: list[str], timeout: float = 180, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            cmd, env={**self.env, **env}, capture_output=True, text=True, timeout=timeout
        )

    def hilnas(self, *args: str, timeout: float = 180, **env: str) -> subprocess.CompletedProcess:
        return self.run([sys.executable, "-m", "hilnas.flows.cli", *args], timeout=timeout, **env)

    # ---- flow runs ----
    def deployment_id(self, flow: str, name: str) -> str:
        return self.api("GET", f"/deployments/name/{flow}/{name}").json()["id"]

    def runs(self, deployment_id: str) -> list[dict]:
        body = {
            "flow_runs": {"deployment_id": {"any_": [deployment_id]}},
            "sort": "START_TIME_DESC",
        }
        return self.api("POST", "/flow_runs/filter", json=body).json()

    def wait_state(self, run_id: str, states: set[str], timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            run = self.api("GET", f"/flow_runs/{run_id}").json()
            if run["state_type"] in states:
                return run
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"flow run {run_id} is {run['state_type']} after {timeout} s "
                    f"({run['state'].get('message')}); logs: {self.tail()}"
                )
            time.sleep(1)

    def create_run(self, deployment_id: str, parameters: dict | None = None) -> str:
        body = {"parameters": parameters or {}}
        return self.api("POST", f"/deployments/{deployment_id}/create_flow_run", json=body).json()[
            "id"
        ]

    def tail(self, n: int = 2500) -> str:
        out = []
        for p in sorted(self.logs.glob("*.log")):
            out.append(f"--- {p.name}\n{p.read_text(errors='replace')[-n:]}")
        return "\n".join(out)


def kill_tree(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Signal a process and every descendant (its own group and any new session it started)."""
    import psutil

    try:
        parent = psutil.Process(proc.pid)
        family = parent.children(recursive=True) + [parent]
    except psutil.NoSuchProcess:
        family = []
    for p in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(sig)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=15)
    if sig == signal.SIGKILL:  # the whole family is gone before the caller goes on
        psutil.wait_procs([p for p in family if p.pid != proc.pid], timeout=15)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("e2e")
    home, hilnas_home, logs = root / "prefect-home", root / "hilnas-home", root / "logs"
    for d in (home, hilnas_home, logs):
        d.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env = {
        **base,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "HILNAS_HOME": str(hilnas_home),
        "COLUMNS": "400",  # one-line error messages
    }
    with (
        fresh_postgres_db(os.environ.get("HILNAS_TEST_PREFECT_POSTGRES_URL"), "prefect_e2e") as pg,
        fresh_postgres_db(os.environ.get("HILNAS_TEST_POSTGRES_URL"), "hilnas_e2e") as store_url,
    ):
        if pg:
            env["PREFECT_API_DATABASE_CONNECTION_URL"] = pg
        if store_url:
            env["HILNAS_DATABASE_URL"] = store_url
        srv = Server(url=url, env=env, home=hilnas_home, logs=logs)
        try:
            proc = srv.spawn(
                "server",
                [
                    sys.executable,
                    "-m",
                    "prefect",
                    "server",
                    "start",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--no-ui",
                ],
            )
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"prefect server exited ({proc.returncode}): {srv.tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"prefect server not healthy after {STARTUP_TIMEOUT_S} s: {srv.tail()}"
                    )
                time.sleep(0.5)
            yield srv
        finally:
            for p in reversed(srv.procs):
                kill_tree(p, signal.SIGTERM)
                kill_tree(p, signal.SIGKILL)


def tiny_prefect_yaml(path: Path, **profile_overrides) -> Path:
    doc = yaml.safe_load(PREFECT_FILE.read_text())
    for dep in doc["deployments"]:
        if dep["name"].startswith("profile-"):
            dep["parameters"].update(PROFILE_PARAMS, **profile_overrides)
        if dep["name"] == "search":
            dep["parameters"].update(SEARCH_PARAMS)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def cpu_config_key(srv: Server) -> str:
    proc = srv.hilnas("devices", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    devices = json.loads(proc.stdout)
    devices = devices.get("devices", devices) if isinstance(devices, dict) else devices
    cpu = next(d for d in devices if d["kind"] == "cpu")
    return f"{cpu['id']}/cpu/t1/b1"


# ----------------------------------------------------------------------------- the main path
def test_deploy_profile_trigger_search(server: Server, tmp_path):
    srv = server
    # 1. the shipped file, through hilnas (validates, creates pools, publishes ONNX, deploys)
    out = srv.hilnas("agent", "deploy", "--crash-after", "32", timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    pools = {p["name"]: p for p in srv.api("POST", "/work_pools/filter", json={}).json()}
    assert {"hilnas-cpu", "hilnas-gpu0", "hilnas-search"} <= set(pools)
    assert pools["hilnas-cpu"]["concurrency_limit"] == 1
    # 2. plain Prefect on the same layout, tiny parameters for the test
    tiny = tiny_prefect_yaml(tmp_path / "prefect.yaml")
    out = srv.run(
        [
            sys.executable,
            "-m",
            "prefect",
            "deploy",
            "--all",
            "--no-prompt",
            "--prefect-file",
            str(tiny),
        ],
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    profile_id = srv.deployment_id("hilnas-profile", "profile-cpu")
    search_id = srv.deployment_id("hilnas-search", "search")
    dep = srv.api("GET", f"/deployments/{profile_id}").json()
    assert (
        dep["parameters"]["archs"] == 2 and dep["schedules"][0]["schedule"]["cron"] == "0 2 * * *"
    )
    assert dep["global_concurrency_limit"]["limit"] == 1
    automations = srv.api("POST", "/automations/filter", json={}).json()
    assert any(a["actions"][0]["type"] == "run-deployment" for a in automations)

    # 3. agents: the CPU's measurement agent (onboards its 10 reference archs) and a search worker
    srv.spawn(
        "agent-cpu",
        [
            sys.executable,
            "-m",
            "hilnas.flows.cli",
            "agent",
            "start",
            "--device",
            "cpu",
            "--onboard-reps",
            str(PROFILE_PARAMS["reps"]),
        ],
    )
    srv.spawn(
        "worker-search",
        [
            sys.executable,
            "-m",
            "prefect",
            "worker",
            "start",
            "--pool",
            "hilnas-search",
            "--type",
            "process",
        ],
    )
    key = cpu_config_key(srv)

    # 4. run the profiling deployment; its completion must trigger the search deployment
    started = time.time()
    run_id = srv.create_run(profile_id)
    run = srv.wait_state(run_id, {"COMPLETED", "FAILED", "CRASHED"}, timeout=180)
    assert run["state_type"] == "COMPLETED", srv.tail()
    art = latest_artifact(srv, f"profile-{jobs.slug(key.split('/')[0])}")
    assert art["measured"] == 2 and art["skipped"] == 10  # the references came from onboarding

    deadline = time.monotonic() + 60
    while not srv.runs(search_id) and time.monotonic() < deadline:
        time.sleep(1)
    time.sleep(3)  # a duplicate firing, when it happens, comes within a second of the first
    runs = srv.runs(search_id)
    described = [(r["name"], r["state_type"], r["created"], r["created_by"]) for r in runs]
    # Prefect 3.8's reactive trigger has been seen (2 of ~8 runs here) to fire twice for one
    # Completed event; the search deployment's concurrency limit of 1 (ENQUEUE) then runs the
    # duplicate after the first, which is harmless. Both must come from the automation.
    assert 1 <= len(runs) <= 2, described
    assert all((r["created_by"] or {}).get("type") == "AUTOMATION" for r in runs), described
    for r in runs:
        search_run = srv.wait_state(r["id"], {"COMPLETED", "FAILED", "CRASHED"}, timeout=240)
        assert search_run["state_type"] == "COMPLETED", srv.tail()
    front = srv.home / "fronts" / jobs.slug(key) / "front.json"
    assert front.is_file() and front.stat().st_mtime >= started
    doc = json.loads(front.read_text())
    assert doc["device"] == key and len(doc["points"]) >= 1
    assert (front.parent / "front.png").is_file()
    assert srv.api(
        "POST",
        "/artifacts/filter",
        json={"artifacts": {"key": {"any_": [f"front-{jobs.slug(key)}"]}}},
    ).json()


def latest_artifact(srv: Server, key: str) -> dict:
    arts = srv.api(
        "POST",
        "/artifacts/filter",
        json={"artifacts": {"key": {"any_": [key]}}, "sort": "CREATED_DESC", "limit": 1},
    ).json()
    assert arts, f"no artifact {key}"
    data = arts[0]["data"]
    data = json.loads(data) if isinstance(data, str) else data
    return data[0]


# ----------------------------------------------------------------------------- faults
def test_killed_agent_leaves_a_crashed_run_and_the_rerun_measures_only_the_rest(server: Server):
    srv = server
    profile_id = srv.deployment_id("hilnas-profile", "profile-cpu")
    key = cpu_config_key(srv)
    device_id = key.split("/")[0]
    for p in srv.procs:  # stop the agent of the first test; a fresh one is killed below
        if "agent-cpu" in str(getattr(p, "log_path", "")):
            # SIGKILL, whole tree: after a SIGTERM its Prefect worker was once seen still polling
            # long enough to take the run meant for the agent killed below (CI, 1 run in ~10)
            kill_tree(p, signal.SIGKILL)
    params = {**PROFILE_PARAMS, "archs": 8, "reps": 300}
    srv.hilnas("agent", "publish", "--archs", "8")
    agent = srv.spawn(
        "agent-cpu-2",
        [
            sys.executable,
            "-m",
            "hilnas.flows.cli",
            "agent",
            "start",
            "--device",
            "cpu",
            "--no-onboard",
        ],
    )
    before = count_measurements(srv, device_id, params["reps"])
    run_id = srv.create_run(profile_id, params)
    srv.wait_state(run_id, {"RUNNING"}, timeout=60)
    deadline = time.monotonic() + 90
    while count_measurements(srv, device_id, params["reps"]) < before + 2:
        assert time.monotonic() < deadline, srv.tail()
        time.sleep(0.5)
    kill_tree(agent, signal.SIGKILL)  # the host "dies": worker, flow run and profiler at once
    partial = count_measurements(srv, device_id, params["reps"])
    assert partial < 18
    run = srv.wait_state(run_id, {"CRASHED", "FAILED", "COMPLETED"}, timeout=120)
    assert run["state_type"] == "CRASHED" and "heartbeat" in run["state"]["message"]

    srv.spawn(
        "agent-cpu-3",
        [
            sys.executable,
            "-m",
            "hilnas.flows.cli",
            "agent",
            "start",
            "--device",
            "cpu",
            "--no-onboard",
        ],
    )
    rerun = srv.wait_state(
        srv.create_run(profile_id, params), {"COMPLETED", "FAILED", "CRASHED"}, timeout=180
    )
    assert rerun["state_type"] == "COMPLETED", srv.tail()
    art = latest_artifact(srv, f"profile-{jobs.slug(device_id)}")
    assert art["skipped"] == partial and art["measured"] == 18 - partial
    assert count_measurements(srv, device_id, params["reps"]) == 18


def count_measurements(srv: Server, device_id: str, reps: int) -> int:
    code = (
        "from hilnas.pipeline.store import MeasurementStore; s = MeasurementStore(); "
        f"print(sum(1 for r in s.measurements(device_id={device_id!r}) if r.key.repetitions == {reps}))"
    )
    out = srv.run([sys.executable, "-c", code], timeout=60)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.strip())


def test_setup_errors_name_the_fix(server: Server):
    srv = server
    closed = f"http://127.0.0.1:{free_port()}/api"
    out = srv.hilnas("agent", "start", "--device", "cpu", PREFECT_API_URL=closed)
    assert out.returncode == 2 and "cannot reach the Prefect API" in out.stderr
    assert "prefect server start" in out.stderr
    out = srv.hilnas("run", "--archs", "0", PREFECT_API_URL=closed)
    assert out.returncode == 2 and "cannot reach the Prefect API" in out.stderr
    out = srv.hilnas("agent", "start", "--device", "tpu9")
    assert out.returncode == 2 and "hilnas devices list" in out.stderr
    out = srv.hilnas(
        "agent", "start", "--device", "cpu", "--pool", "no-such-pool", "--no-create-pool"
    )
    assert out.returncode == 2 and "prefect work-pool create no-such-pool" in out.stderr
    env = {k: v for k, v in srv.env.items() if k != "PREFECT_API_URL"}
    proc = subprocess.run(
        [sys.executable, "-m", "hilnas.flows.cli", "agent", "start", "--device", "cpu"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "PREFECT_API_URL is not set" in proc.stderr
