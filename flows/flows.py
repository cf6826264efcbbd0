"""Prefect flows of hilnas: thin wrappers over flows/jobs.py (which calls pipeline/).

- ``profile_flow``  (flow name ``hilnas-profile``): profile one local device; resumable; what a
  measurement agent runs (never imports torch).
- ``fit_flow``      (``hilnas-fit``): refit the predictors from the store.
- ``search_flow``   (``hilnas-search``): train the MetaHypernetwork, write every device's front
  (JSON, PNG, optionally ONNX) and publish it as Prefect artifacts (a table and the plot).
- ``pipeline_flow`` (``hilnas-pipeline``): the main job behind ``hilnas run``: profile the local
  devices, fit, search, write the run directory with the wall time of each stage.

Run locally with no server (Prefect's ephemeral API), or deploy with flows/prefect.yaml.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from hilnas.devices.errors import PreconditionError, UserError
from hilnas.flows import jobs
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

FRONT_TABLE_ROWS = 50


class NoDeviceProfiledError(PreconditionError, RuntimeError):
    """Every local device of a run failed to profile, each for a reason the user can fix."""


def _no_retry_for_user_errors(task: Any, task_run: Any, state: Any) -> bool:
    """Retry transient faults (database busy, I/O); never bad input or a missing device."""
    try:
        state.result()
    except (UserError, LookupError, ValueError, TypeError, PermissionError):
        return False  # bad input, or a bug: the same call fails the same way again
    except Exception as exc:  # noqa: BLE001
        from hilnas.devices.base import DeviceError

        return not isinstance(exc, DeviceError)
    return False


# ----------------------------------------------------------------------------- tasks
@task(
    name="profile-device",
    task_run_name="profile-{request[device]}",
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=_no_retry_for_user_errors,
)
def profile_task(request: dict[str, Any]) -> dict[str, Any]:
    """Run one profiling request (a ``ProfileRequest`` as JSON; ``device`` None: the agent's)."""
    logger = get_run_logger()
    summary = jobs.profile_job(request, progress=logger.info)
    logger.info(
        "profiled %s (%s): %s measured, %s failed, %s already stored; %.1f s",
        summary.get("device_id"),
        summary.get("config_key"),
        summary.get("measured"),
        summary.get("failed"),
        summary.get("skipped"),
        summary.get("wall_s") or 0.0,
    )
    return summary


def run_config_request(cfg: Any, device: str) -> dict[str, Any]:
    """The profiling request of one local device of a :class:`~hilnas.flows.config.RunConfig`."""
    return {
        "device": device,
        "archs": cfg.archs,
        "reps": cfg.reps,
        "warmup": cfg.warmup,
        "seed": cfg.seed,
        "space": cfg.space,
        "threads": cfg.threads,
        "batch_size": cfg.batch_size,
    }


@task(name="fit-predictors")
def fit_task() -> dict[str, Any]:
    logger = get_run_logger()
    report = jobs.fit(progress=logger.info)
    logger.info(
        "predictors: meta %s; per-device %s", report.get("meta"), list(report.get("devices", {}))
    )
    return report


@task(name="train-hypernetwork")
def search_task(
    mode: str,
    objectives: list[str],
    devices: list[str] | None,
    epochs: int | None,
    seed: int,
    options: dict[str, Any] | None = None,
) -> str:
    logger = get_run_logger()
    path = jobs.search(
        mode=mode,
        objectives=objectives,
        devices=devices,
        epochs=epochs,
        seed=seed,
        options=options,
        progress=logger.info,
    )
    logger.info("hypernetwork saved to %s", path)
    return str(path)


@task(name="write-fronts")
def fronts_task(
    search_path: str, targets: list[str], out_dir: str, points: int, onnx: bool
) -> list[jobs.FrontFiles]:
    logger = get_run_logger()
    fronts = jobs.write_fronts(
        search_path, targets, out_dir, points=points, onnx=onnx, progress=logger.info
    )
    for ff in fronts:
        if ff.error:
            logger.warning("no front for %s: %s", ff.target, ff.error)
        else:
            publish_front(ff)
    return fronts


def publish_front(ff: jobs.FrontFiles) -> None:
    """Publish a front as two Prefect artifacts: a table of its points and the plot."""
    key = f"front-{jobs.slug(ff.target)}"[:100]
    rows = []
    for p in ff.points[:FRONT_TABLE_ROWS]:
        row = {"arch": p.get("arch") or p.get("architecture")}
        row.update({k: _round(v) for k, v in (p.get("objectives") or {}).items()})
        if p.get("preference") is not None:
            row["preference"] = ", ".join(f"{x:.2f}" for x in p["preference"])
        rows.append(row)
    create_table_artifact(
        key=key, table=rows, description=f"Pareto front of {ff.target} ({ff.json})"
    )
    if ff.png is not None and Path(ff.png).exists():
        b64 = base64.b64encode(Path(ff.png).read_bytes()).decode()
        create_markdown_artifact(
            key=f"{key}-plot"[:100],
            markdown=f"### Pareto front of `{ff.target}`\n\n![front](data:image/png;base64,{b64})\n"
            f"\nFiles: `{ff.json}`, `{ff.png}`",
            description=f"plot of the Pareto front of {ff.target}",
        )


def _round(v: Any) -> Any:
    return round(v, 4) if isinstance(v, float) else v


# ----------------------------------------------------------------------------- flows
@flow(name="hilnas-profile")
def profile_flow(
    device: str | None = None,
    archs: int | None = None,
    reps: int | None = None,
    warmup: int | None = None,
    seed: int = 0,
    space: str = "nb201",
    threads: int = 1,
    batch_size: int = 1,
    force: bool = False,
) -> dict[str, Any]:
    """Profile one local device: its 10 reference architectures plus ``archs`` sampled ones.

    ``device`` is an id or alias (``cpu``, ``gpu0``); left out, the device of the agent running
    the flow (``HILNAS_AGENT_DEVICE``), else ``cpu``. Resumable: what the store holds is skipped.
    ``archs``, ``reps`` and ``warmup`` left out are the space's defaults, as for ``hilnas
    profile`` (nb201 50 / 30 / 5, gpt_s 20 / 20 / 3).
    """
    request = {
        "device": device,
        "archs": archs,
        "reps": reps,
        "warmup": warmup,
        "seed": seed,
        "space": space,
        "threads": threads,
        "batch_size": batch_size,
        "force": force,
    }
    summary = profile_task(request)
    create_table_artifact(
        key=f"profile-{jobs.slug(str(summary.get('device_id', device)))}"[:100],
        table=[{k: v for k, v in summary.items() if not isinstance(v, (list, dict))}],
        description="hilnas profiling run",
    )
    return summary


@flow(name="hilnas-fit")
def fit_flow() -> dict[str, Any]:
    """Refit the predictors from what the measurement store holds."""
    return fit_task()


@flow(name="hilnas-search")
def search_flow(
    mode: str = "surrogate",
    objectives: list[str] | None = None,
    devices: list[str] | None = None,
    epochs: int | None = None,
    seed: int = 0,
    points: int = 8,
    reference_devices: bool = True,
    onnx: bool = False,
    out_dir: str | None = None,
    search_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train the hypernetwork and write the front of every known device.

    ``devices``: training targets (default: the 13 MODNAS training devices and every measured
    device configuration with its reference architectures). Fronts go to ``out_dir`` (default
    ``<HILNAS_HOME>/fronts/<device>/front.json`` and ``front.png``, replaced by each run) and
    are published as Prefect artifacts. ``search_options``: further SearchConfig fields.
    """
    from hilnas.pipeline.home import subdir
    from hilnas.pipeline.store import MeasurementStore

    objectives = list(objectives or ["error", "latency_ms"])
    path = search_task(mode, objectives, devices, epochs, seed, search_options)
    store = MeasurementStore()
    try:
        targets = jobs.front_targets(store, reference=reference_devices)
    finally:
        store.close()
    out = out_dir or str(subdir("fronts"))
    fronts = fronts_task(path, targets, out, points, onnx)
    return {
        "search": path,
        "out_dir": out,
        "fronts": {ff.target: str(ff.json) for ff in fronts if not ff.error},
        "failed": {ff.target: ff.error for ff in fronts if ff.error},
    }


@flow(name="hilnas-pipeline")
def pipeline_flow(config: dict[str, Any]) -> dict[str, Any]:
    """The main job: profile local devices -> fit -> search -> fronts, timed per stage.

    ``config`` is a :class:`hilnas.flows.config.RunConfig` as a dict (``run_dir`` set). A
    device whose profiling fails is reported and left out; the others go on.
    """
    from hilnas.flows.config import build_config
    from hilnas.pipeline.store import MeasurementStore

    cfg = build_config(config)
    logger = get_run_logger()
    run_dir = jobs.new_run_dir(cfg.run_dir)
    jobs.write_json(run_dir / "config.json", cfg.model_dump(mode="json"))
    times = jobs.StageTimes()
    result: dict[str, Any] = {"run_dir": str(run_dir), "devices": {}, "failed_devices": {}}

    with times.stage("profiling"):
        devices = jobs.local_devices(cfg.devices)
        logger.info("devices: %s", ", ".join(d.id for d in devices))
        failures: dict[str, BaseException | None] = {}
        for info in devices:
            state = profile_task(run_config_request(cfg, info.id), return_state=True)
            if state.is_completed():
                result["devices"][info.id] = state.result()
            else:
                failures[info.id] = _failure(state)
                reason = _failure_reason(state)
                logger.error("profiling %s failed, going on without it: %s", info.id, reason)
                result["failed_devices"][info.id] = reason
        if devices and not result["devices"]:
            detail = "; ".join(f"{k}: {v}" for k, v in result["failed_devices"].items())
            if all(isinstance(e, UserError) for e in failures.values()):
                # every device failed for a reason the user can fix: say so as one error
                raise NoDeviceProfiledError(
                    f"profiling failed on every local device: {detail}; fix that and rerun"
                )
            raise RuntimeError(f"profiling failed on every local device: {detail}")

    with times.stage("fitting"):
        result["fit"] = fit_task()

    with times.stage("search"):
        epochs, options = cfg.search_settings()
        search_path = search_task(cfg.mode, list(cfg.objectives), None, epochs, cfg.seed, options)
        result["search"] = search_path

    with times.stage("writing"):
        store = MeasurementStore()
        try:
            targets = jobs.front_targets(store, reference=cfg.reference_devices)
        finally:
            store.close()
        fronts = fronts_task(search_path, targets, str(run_dir / "fronts"), cfg.points, cfg.onnx)
        result["fronts"] = [
            {
                "target": ff.target,
                "json": str(ff.json) if not ff.error else None,
                "png": str(ff.png) if ff.png else None,
                "onnx": len(ff.onnx),
                "points": len(ff.points),
                "best": _best(ff.points),
                "error": ff.error,
            }
            for ff in fronts
        ]

    result["timings"] = times.as_dict()
    jobs.write_json(run_dir / "timings.json", result["timings"])
    jobs.write_json(run_dir / "summary.json", result)
    logger.info("run directory: %s; wall time %s", run_dir, result["timings"])
    return result


def _best(points: list[dict[str, Any]]) -> dict[str, float]:
    """Per objective, the lowest value on the front (the ends of the trade-off)."""
    best: dict[str, float] = {}
    for p in points:
        for k, v in (p.get("objectives") or {}).items():
            if isinstance(v, (int, float)) and (k not in best or v < best[k]):
                best[k] = float(v)
    return best


def _failure(state: Any) -> BaseException | None:
    """The exception a failed task state holds, if any."""
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001
        return exc
    return None


def _failure_reason(state: Any) -> str:
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"
    return state.message or state.name
