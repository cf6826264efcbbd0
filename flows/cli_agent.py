"""`hilnas agent ...`: measurement agents (Prefect workers) and deployments on a Prefect server.

An agent runs on the host of a device and needs only the `agent` install extra (onnxruntime,
psutil, device libraries; no torch). It serves the device's work pool: profiling runs of that
device's deployment run there, one at a time.

Plain Prefect equivalent of `hilnas agent start --device cpu`::

    prefect work-pool create hilnas-cpu --type process
    prefect work-pool set-concurrency-limit hilnas-cpu 1
    HILNAS_AGENT_DEVICE=cpu prefect worker start --pool hilnas-cpu --type process --limit 1
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import typer
from hilnas.devices.errors import PreconditionError, check_number
from hilnas.flows.cli_common import UserError, console, existing_file
from hilnas.profilers.base import MAX_REPETITIONS

agent_app = typer.Typer(
    name="agent",
    help="Measurement agents and deployments on a Prefect server (flows/DEPLOYMENT.md).",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(agent_app, name="agent")


def _setup_error(exc: Exception) -> UserError:
    return UserError(str(exc))


@agent_app.command("start")
def start(
    device: str = typer.Option(
        ..., "--device", "-d", help="Device id or alias (see `hilnas devices list`)."
    ),
    pool: str | None = typer.Option(
        None,
        "--pool",
        "-p",
        help="Work pool to serve (default: hilnas-<device alias>, e.g. hilnas-cpu).",
    ),
    create_pool: bool = typer.Option(
        True, "--create-pool/--no-create-pool", help="Create the pool (limit 1) when missing."
    ),
    onboard: bool = typer.Option(
        True,
        "--onboard/--no-onboard",
        help="Before serving, profile the device's 10 reference architectures if missing.",
    ),
    onboard_reps: int = typer.Option(30, "--onboard-reps", help="Repetitions when onboarding."),
    name: str | None = typer.Option(
        None, "--name", help="Worker name (default: hilnas-agent-<device id>)."
    ),
    run_once: bool = typer.Option(False, "--run-once", help="Poll once and exit (tests)."),
) -> None:
    """Start a measurement agent: a Prefect process worker serving this device's work pool."""
    from hilnas.devices import get_device
    from hilnas.devices.base import DeviceError
    from hilnas.flows.server import (
        DEFAULT_HEARTBEAT_S,
        HEARTBEAT_ENV,
        PrefectSetupError,
        check_api,
        ensure_pool,
        pool_name_for,
        worker_env,
    )

    check_number("--onboard-reps", onboard_reps, low=1, high=MAX_REPETITIONS)
    try:
        info = get_device(device)
    except DeviceError as exc:
        raise UserError(str(exc)) from None
    pool_name = pool or pool_name_for(info)
    try:
        url = check_api(require_server=True)
        created = ensure_pool(pool_name, create=create_pool, concurrency_limit=1)
    except PrefectSetupError as exc:
        raise _setup_error(exc) from None
    console.print(
        f"agent for [bold]{info.id}[/] ({info.name}) on pool [bold]{pool_name}[/]"
        f"{' (created, concurrency limit 1)' if created else ''} at {url}",
        highlight=False,
    )
    env = worker_env(info.id)
    env.setdefault(HEARTBEAT_ENV, str(DEFAULT_HEARTBEAT_S))
    if onboard:
        _onboard(info.id, onboard_reps, env)
    cmd = [
        sys.executable,
        "-m",
        "prefect",
        "worker",
        "start",
        "--pool",
        pool_name,
        "--type",
        "process",
        "--limit",
        "1",
        "--name",
        name or f"hilnas-agent-{info.id}",
        "--install-policy",
        "never",
    ]
    if run_once:
        cmd.append("--run-once")
    console.print("starting: " + " ".join(cmd[1:]), highlight=False)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(cmd[0], cmd, env)  # the worker replaces this process: signals reach it directly


def _onboard(device_id: str, reps: int, env: dict[str, str]) -> None:
    """Profile the reference architectures (archs=0) in a child process reporting to the server."""
    console.print(f"onboarding {device_id}: profiling its 10 reference architectures (if missing)")
    code = (
        "from hilnas.flows.flows import profile_flow; "
        f"profile_flow(device={device_id!r}, archs=0, reps={reps})"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=env)
    if proc.returncode != 0:
        raise UserError(
            f"onboarding of {device_id} failed (exit {proc.returncode}, see the log above); fix "
            "the cause and rerun, or start with --no-onboard"
        )


@agent_app.command("deploy")
def deploy(
    prefect_file: Path | None = typer.Option(
        None,
        "--prefect-file",
        help="prefect.yaml to deploy (default: the one shipped in hilnas/flows).",
    ),
    names: list[str] = typer.Option(
        [], "--name", "-n", help="Deploy only these deployments (repeatable) (default: all)."
    ),
    crash_after: int = typer.Option(
        90,
        "--crash-after",
        help="Mark a run Crashed after this many seconds without a heartbeat from its agent.",
    ),
) -> None:
    """Validate prefect.yaml, create its work pools, and run `prefect deploy` on the server."""
    from hilnas.flows.server import (
        PREFECT_FILE,
        PrefectSetupError,
        check_api,
        ensure_crash_automation,
        ensure_pool,
        pools_in,
        validate_prefect_yaml,
    )

    check_number("--crash-after", crash_after, low=31, high=7 * 86_400)
    path = prefect_file or PREFECT_FILE
    if prefect_file is not None:
        existing_file(prefect_file, "--prefect-file")
    try:
        doc = validate_prefect_yaml(path)
        known = [d["name"] for d in doc["deployments"]]
        unknown = [n for n in names if n not in known]
        if unknown:
            raise PrefectSetupError(
                f"no deployment named {', '.join(unknown)} in {path}; choose from {', '.join(known)}"
            )
        check_api(require_server=True)
        for pool in pools_in(doc, names or None):
            if ensure_pool(pool, concurrency_limit=1):
                console.print(f"created work pool {pool} (process, concurrency limit 1)")
        ensure_crash_automation(crash_after)
    except PrefectSetupError as exc:
        raise _setup_error(exc) from None
    _publish_for(doc, names)
    cmd = [sys.executable, "-m", "prefect", "deploy", "--no-prompt", "--prefect-file", str(path)]
    cmd += [a for n in names for a in ("--name", n)] if names else ["--all"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        raise PreconditionError(
            "`prefect deploy` failed: " + " | ".join(line.strip() for line in tail)
        )
    console.print(f"deployed {', '.join(names or known)} from {path}")


def _publish_for(doc: dict, names: list[str]) -> None:
    """Publish the ONNX files of every selected profiling deployment's plan, so that agents
    without torch find them; skipped with a note where this host cannot export."""
    import importlib.util

    from hilnas.flows.artifacts import publish_plan

    plans = set()
    for dep in doc["deployments"]:
        if names and dep["name"] not in names:
            continue
        if not str(dep.get("entrypoint", "")).endswith(":profile_flow"):
            continue
        p = dep.get("parameters") or {}
        plans.add(
            (p.get("archs", 50), p.get("seed", 0), p.get("space", "nb201"), p.get("batch_size", 1))
        )
    if not plans:
        return
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("onnx") is None:
        console.print(
            "[yellow]note:[/] this host cannot export ONNX (no torch/onnx); run `hilnas agent "
            "publish` where the search extra is installed so that agents find their models"
        )
        return
    for archs, seed, space, batch in sorted(plans):
        out = publish_plan(archs=archs, seed=seed, space=space, batch_size=batch)
        console.print(
            f"published {out['published']} ONNX files ({space}, seed {seed}) to {out['location']}"
        )


@agent_app.command("publish")
def publish(
    archs: int = typer.Option(
        50, "--archs", help="Sampled architectures besides the 10 reference ones."
    ),
    seed: int = typer.Option(0, "--seed", help="Sampling seed (as in the profiling deployment)."),
    space: str = typer.Option("nb201", "--space", help="Search space."),
    batch_size: int = typer.Option(1, "--batch-size", help="Batch size of the models."),
) -> None:
    """Export a profiling plan to ONNX and publish it to the artifact location (HILNAS_ARTIFACTS)
    for agents without torch. Run it where the `search` extra is installed."""
    from hilnas.flows.artifacts import publish_plan
    from hilnas.pipeline.profiling import MAX_BATCH_SIZE

    check_number("--archs", archs, low=0, high=15_615, fix="use --archs from 0 to 15,615")
    check_number("--seed", seed, low=0, high=2**32 - 1)
    check_number("--batch-size", batch_size, low=1, high=MAX_BATCH_SIZE)
    out = publish_plan(archs=archs, seed=seed, space=space, batch_size=batch_size)
    console.print(f"published {out['published']} ONNX files to {out['location']}")


@agent_app.command("validate")
def validate(
    prefect_file: Path | None = typer.Argument(
        None, help="prefect.yaml (default: the shipped one)."
    ),
) -> None:
    """Check a prefect.yaml (entrypoints, parameters, pools, cron, limits, triggers)."""
    from hilnas.flows.server import PREFECT_FILE, PrefectSetupError, validate_prefect_yaml

    path = prefect_file or PREFECT_FILE
    if prefect_file is not None:
        existing_file(prefect_file, "the prefect.yaml argument")
    try:
        doc = validate_prefect_yaml(path)
    except PrefectSetupError as exc:
        raise _setup_error(exc) from None
    console.print(f"{path}: {len(doc['deployments'])} deployments, valid")
