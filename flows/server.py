"""Talking to a Prefect server: reachability, work pools, prefect.yaml validation.

Every failure becomes a :class:`PrefectSetupError` whose message names the fix. No torch here.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

from hilnas.devices.errors import InvalidInputError, PreconditionError
from hilnas.flows.deploy_steps import hilnas_root

#: Where flows/prefect.yaml lives in this installation.
PREFECT_FILE = Path(__file__).with_name("prefect.yaml")
SEARCH_POOL = "hilnas-search"
COLLISION_STRATEGIES = ("ENQUEUE", "CANCEL_NEW")


class PrefectSetupError(PreconditionError, RuntimeError):
    """The Prefect side is not set up as hilnas needs it; the message says how to fix it."""


def api_url() -> str | None:
    """The configured ``PREFECT_API_URL`` (None: Prefect's embedded ephemeral API)."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def check_api(timeout_s: float = 5.0, *, require_server: bool = False) -> str | None:
    """Make sure the Prefect API answers; return its URL (None when ephemeral mode is used).

    ``require_server``: a worker needs a real server (the ephemeral API lives in one process).
    """
    url = api_url()
    if url is None:
        if require_server:
            raise PrefectSetupError(
                "PREFECT_API_URL is not set: an agent needs a running Prefect server. Start one "
                "with `prefect server start --host 0.0.0.0` and set "
                "PREFECT_API_URL=http://SERVER:4200/api on this host (flows/DEPLOYMENT.md)"
            )
        return None
    import httpx

    headers: dict[str, str] = {}
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_KEY

    auth = PREFECT_API_AUTH_STRING.value()
    auth = auth.get_secret_value() if hasattr(auth, "get_secret_value") else auth
    key = PREFECT_API_KEY.value()
    key = key.get_secret_value() if hasattr(key, "get_secret_value") else key
    if auth:
        import base64

        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    elif key:
        headers["Authorization"] = f"Bearer {key}"
    base = url.rstrip("/")
    try:
        # /health answers without credentials; /admin/version needs them when auth is on
        response = httpx.get(f"{base}/health", timeout=timeout_s, headers=headers)
        if response.status_code == 200:
            response = httpx.get(f"{base}/admin/version", timeout=timeout_s, headers=headers)
    except httpx.HTTPError as exc:
        raise PrefectSetupError(
            f"cannot reach the Prefect API at {url} ({type(exc).__name__}: {exc}); start the "
            "server there (`prefect server start`), correct PREFECT_API_URL, or unset it to run "
            "on the embedded ephemeral API"
        ) from None
    if response.status_code == 401:
        raise PrefectSetupError(
            f"the Prefect API at {url} refused the credentials (401); set PREFECT_API_AUTH_STRING "
            "to the server's PREFECT_SERVER_API_AUTH_STRING ('user:password')"
        )
    if response.status_code != 200:
        raise PrefectSetupError(
            f"the Prefect API at {url} answered with HTTP {response.status_code}; check that "
            "PREFECT_API_URL ends in /api and points at `prefect server start`"
        )
    return url


# ----------------------------------------------------------------------------- work pools
def pool_name_for(device: Any) -> str:
    """Default work pool of a device: ``hilnas-<first alias>`` (``hilnas-cpu``, ``hilnas-gpu0``)
    or ``hilnas-<id>`` for a device without aliases."""
    aliases = getattr(device, "aliases", ()) or ()
    return f"hilnas-{aliases[0] if aliases else device.id}"


def ensure_pool(name: str, *, create: bool = True, concurrency_limit: int | None = 1) -> bool:
    """Make sure a process work pool exists; return True when it was created.

    A created pool gets ``concurrency_limit`` (1: the device measures one thing at a time).
    With ``create=False`` a missing pool raises :class:`PrefectSetupError`.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(name)
        except ObjectNotFound:
            pool = None
        if pool is not None:
            if pool.type != "process":
                raise PrefectSetupError(
                    f"work pool {name!r} has type {pool.type!r}; hilnas agents serve 'process' "
                    f"pools: choose another --pool or delete it (`prefect work-pool delete {name}`)"
                )
            return False
        if not create:
            raise PrefectSetupError(
                f"work pool {name!r} does not exist on {api_url() or 'the ephemeral API'}; create "
                f"it with `prefect work-pool create {name} --type process` or start the agent "
                "without --no-create-pool"
            )
        try:
            client.create_work_pool(
                WorkPoolCreate(
                    name=name,
                    type="process",
                    description="hilnas measurement agent pool"
                    if name != SEARCH_POOL
                    else "hilnas search",
                    base_job_template=ProcessWorker.get_default_base_job_template(),
                    concurrency_limit=concurrency_limit,
                )
            )
        except ObjectAlreadyExists:  # created concurrently by another agent
            return False
    return True


# ----------------------------------------------------------------------------- prefect.yaml
def _flow_for(entrypoint: str) -> Any:
    from prefect import Flow
    from prefect.utilities.importtools import import_object

    try:
        obj = import_object(entrypoint)
    except Exception as exc:  # noqa: BLE001 - any import failure is a config error here
        raise InvalidInputError(
            f"cannot import {entrypoint!r} ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(obj, Flow):
        raise InvalidInputError(f"{entrypoint!r} is not a Prefect flow")
    return obj


def validate_prefect_yaml(path: Path | str = PREFECT_FILE) -> dict[str, Any]:
    """Parse and check a prefect.yaml the way hilnas uses it; return the parsed document.

    Checks each deployment's name, entrypoint (importable flow), parameters (names and types
    against the flow's signature), work pool, cron schedules, concurrency limit and triggers.
    Raises :class:`PrefectSetupError` listing every problem with its location and fix.
    """
    import yaml
    from pydantic import TypeAdapter, ValidationError

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise PrefectSetupError(f"cannot read {path} ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise PrefectSetupError(f"{path} is not valid YAML ({exc}); fix the syntax") from None
    problems: list[str] = []
    if not isinstance(doc, dict) or not isinstance(doc.get("deployments"), list):
        raise PrefectSetupError(f"{path}: expected a mapping with a `deployments:` list")
    names: set[str] = set()
    for i, dep in enumerate(doc["deployments"]):
        where = f"{path.name}: deployments[{i}]"
        if not isinstance(dep, dict):
            problems.append(f"{where}: expected a mapping")
            continue
        name = dep.get("name")
        if not isinstance(name, str) or not name:
            problems.append(f"{where}.name: missing; give every deployment a unique name")
        elif name in names:
            problems.append(f"{where}.name: {name!r} is used twice; names must be unique")
        else:
            names.add(name)
            where = f"{path.name}: deployment {name!r}"
        flow = None
        entry = dep.get("entrypoint")
        if not isinstance(entry, str) or ":" not in entry:
            problems.append(
                f"{where}.entrypoint: {entry!r} is not 'module:flow'; e.g. "
                "hilnas.flows.flows:profile_flow"
            )
        else:
            try:
                flow = _flow_for(entry)
            except ValueError as exc:
                problems.append(f"{where}.entrypoint: {exc}; use hilnas.flows.flows:<flow>")
        params = dep.get("parameters") or {}
        if not isinstance(params, dict):
            problems.append(f"{where}.parameters: expected a mapping of flow parameters")
        elif flow is not None:
            known = set(inspect.signature(flow.fn).parameters)
            unknown = sorted(set(params) - known)
            if unknown:
                problems.append(
                    f"{where}.parameters: unknown parameter(s) {', '.join(unknown)}; "
                    f"{flow.name} takes {', '.join(sorted(known))}"
                )
            else:
                try:
                    flow.validate_parameters(dict(params))
                except Exception as exc:  # noqa: BLE001 - Prefect raises ParameterTypeError
                    problems.append(f"{where}.parameters: {exc}")
        pool = (
            (dep.get("work_pool") or {}).get("name")
            if isinstance(dep.get("work_pool"), dict)
            else None
        )
        if not isinstance(pool, str) or not pool:
            problems.append(
                f"{where}.work_pool.name: missing; name the device's pool, e.g. hilnas-cpu"
            )
        for j, sched in enumerate(dep.get("schedules") or []):
            problems.extend(_check_schedule(f"{where}.schedules[{j}]", sched))
        limit = dep.get("concurrency_limit")
        if limit is not None:
            problems.extend(_check_limit(f"{where}.concurrency_limit", limit))
        triggers = dep.get("triggers") or []
        if triggers:
            from prefect.events import DeploymentTriggerTypes

            adapter = TypeAdapter(DeploymentTriggerTypes)
            for j, trig in enumerate(triggers):
                try:
                    adapter.validate_python(trig)
                except ValidationError as exc:
                    first = exc.errors()[0]
                    loc = ".".join(str(p) for p in first["loc"])
                    problems.append(
                        f"{where}.triggers[{j}]: {loc}: {first['msg']} (see Prefect's "
                        "deployment triggers: type, expect, match, match_related)"
                    )
    if problems:
        raise PrefectSetupError("invalid prefect.yaml:\n  " + "\n  ".join(problems))
    return doc


def _check_schedule(where: str, sched: Any) -> list[str]:
    from pydantic import ValidationError

    if not isinstance(sched, dict):
        return [f"{where}: expected a mapping such as {{cron: '0 2 * * *', timezone: UTC}}"]
    if "cron" not in sched:
        return []  # interval / rrule schedules are Prefect's to check
    from prefect.client.schemas.schedules import CronSchedule

    try:
        CronSchedule(cron=sched["cron"], timezone=sched.get("timezone"))
    except (ValidationError, ValueError) as exc:
        msg = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
        return [
            (
                f"{where}.cron: {sched['cron']!r} is not a valid cron schedule ({msg}); use five "
                "fields 'minute hour day month weekday', e.g. '0 2 * * *', and an IANA timezone"
            )
        ]
    return []


def _check_limit(where: str, limit: Any) -> list[str]:
    value = limit.get("limit") if isinstance(limit, dict) else limit
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        return [f"{where}: {value!r} is not a positive integer; use 1 (one measurement at a time)"]
    if isinstance(limit, dict):
        strategy = limit.get("collision_strategy", "ENQUEUE")
        if strategy not in COLLISION_STRATEGIES:
            return [
                f"{where}.collision_strategy: {strategy!r}; choose one of "
                + ", ".join(COLLISION_STRATEGIES)
            ]
    return []


def pools_in(doc: dict[str, Any], names: list[str] | None = None) -> list[str]:
    """Work pool names used by the (selected) deployments of a parsed prefect.yaml."""
    pools: list[str] = []
    for dep in doc.get("deployments", []):
        if names and dep.get("name") not in names:
            continue
        pool = dep["work_pool"]["name"]
        if pool not in pools:
            pools.append(pool)
    return pools


def prefect_executable() -> list[str]:
    """The command that runs this environment's Prefect CLI."""
    import sys

    return [sys.executable, "-m", "prefect"]


def worker_env(device_id: str | None = None) -> dict[str, str]:
    """Environment for a worker: this one plus where the checkout is and which device it serves."""
    env = dict(os.environ)
    env.setdefault("HILNAS_CHECKOUT", str(hilnas_root()))
    if device_id:
        env["HILNAS_AGENT_DEVICE"] = device_id
    return env


# ----------------------------------------------------------------------------- crashed runs
CRASH_AUTOMATION = "hilnas: mark flow runs crashed when their agent stops sending heartbeats"
HEARTBEAT_ENV = "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"
DEFAULT_HEARTBEAT_S = 30
DEFAULT_CRASH_AFTER_S = 90


def ensure_crash_automation(after_s: int = DEFAULT_CRASH_AFTER_S) -> bool:
    """Create (or update) the automation that marks a hilnas flow run Crashed when its agent
    stopped sending heartbeats for ``after_s`` seconds (a killed worker, a dead host).

    Agents send a heartbeat every ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` seconds (30 when
    started by ``hilnas agent start``), so ``after_s`` must exceed it. Returns True if created.
    """
    from datetime import timedelta

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    if after_s <= DEFAULT_HEARTBEAT_S:
        raise PrefectSetupError(
            f"crash detection after {after_s} s would fire between two heartbeats (every "
            f"{DEFAULT_HEARTBEAT_S} s); use more than {DEFAULT_HEARTBEAT_S} s"
        )
    automation = AutomationCore(
        name=CRASH_AUTOMATION,
        description="Zombie detection for hilnas agents (Prefect flow-run heartbeats).",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
            },
            match={"prefect.resource.id": ["prefect.flow-run.*"]},
            match_related={"prefect.resource.role": "flow", "prefect.resource.name": ["hilnas-*"]},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=after_s),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"no heartbeat from its agent for {after_s} s: the worker or its host "
                "died. Rerun the deployment: what was measured is kept and only the rest is "
                "measured.",
            )
        ],
    )
    with get_client(sync_client=True) as client:
        existing = client.read_automations_by_name(CRASH_AUTOMATION)
        if existing:
            client.update_automation(existing[0].id, automation)
            return False
        client.create_automation(automation)
    return True
