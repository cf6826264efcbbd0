"""``hilnas run --space S``: the main job for a space beyond NB201, as one Prefect flow.

Stages (each a task; the flow is timed per stage, like the NB201 pipeline):

1. **profiling**: the local devices measure the space's reference architectures and ``archs``
   sampled ones (the space's own profiling defaults: GPT-S prefill and decode), into the
   measurement store; resumable, like ``hilnas profile --space S``;
2. **search**: one MetaHypernetwork run for every target: the space's reference devices (that
   have every hardware objective) and each local device that was profiled;
3. **writing**: every target's front as JSON and PNG, and the chosen subnets as ONNX.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hilnas.flows import jobs
from prefect import flow, get_run_logger, task
from pydantic import BaseModel, ConfigDict, Field


class SpaceRunConfig(BaseModel):
    """What ``hilnas run --space S`` can be told (defaults: the embedded main job)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    space: str
    devices: list[str] = Field(default_factory=list)
    archs: int | None = Field(None, ge=0, le=100_000, strict=True)
    reps: int | None = Field(None, ge=1, le=1_000_000, strict=True)
    warmup: int | None = Field(None, ge=0, le=10_000, strict=True)
    threads: int = Field(1, ge=0, le=1024, strict=True)
    seed: int = Field(0, ge=0, le=2**31 - 1, strict=True)
    objectives: str | None = None
    quality: str | None = None
    queries: int = Field(300, ge=10, le=100_000, strict=True)
    steps: int = Field(600, ge=1, le=100_000, strict=True)
    points: int = Field(8, ge=2, le=200, strict=True)
    reference_devices: bool = True
    onnx: bool = True
    run_dir: Path | None = None
    supernet: dict[str, Any] = Field(default_factory=dict)


@task(name="profile-space-device")
def profile_space_task(device: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """Profile one local device in every workload of the space's sweep; returns its config
    keys (the default workload's first: the one a search target uses)."""
    from hilnas.pipeline.profiling import ProfileRequest, profile_request

    c = SpaceRunConfig.model_validate(cfg)
    # archs, reps and warm-up left out (None) are the space's defaults, resolved by the request
    request = ProfileRequest(
        device=device,
        space=c.space,
        archs=c.archs,
        reps=c.reps,
        warmup=c.warmup,
        seed=c.seed,
        threads=c.threads,
    )
    reports = profile_request(request)
    default_key = request.search_space().default_model_config().key()
    return {
        "config_key": reports[0].config_key,
        "workloads": [
            {
                "model_config": r.model_config_key,
                "measured": r.measured,
                "skipped": r.skipped,
                "failed": r.failed,
                "default": r.model_config_key == default_key,
            }
            for r in reports
        ],
    }


@task(name="train-space-hypernetwork")
def space_search_task(cfg: dict[str, Any], targets: list[str]) -> str:
    from hilnas.pipeline.spacesearch.search import SpaceSearchConfig, run_space_search
    from hilnas.pipeline.store import MeasurementStore

    c = SpaceRunConfig.model_validate(cfg)
    kwargs: dict[str, Any] = {
        "space": c.space,
        "targets": tuple(targets),
        "queries": c.queries,
        "steps": c.steps,
        "seed": c.seed,
        "supernet": c.supernet,
    }
    if c.objectives:
        kwargs["objectives"] = c.objectives
    if c.quality:
        kwargs["quality"] = c.quality
    store = MeasurementStore()
    try:
        return str(run_space_search(SpaceSearchConfig(**kwargs), store=store))
    finally:
        store.close()


@task(name="write-space-fronts")
def space_fronts_task(search: str, targets: list[str], folder: str, points: int, onnx: bool):
    from hilnas.pipeline.spacesearch.search import SpaceSearchModel

    model = SpaceSearchModel.load(search)
    store = _read_store()
    try:
        return _write_space_fronts(model, targets, folder, points, onnx, store)
    finally:
        if store is not None:
            store.close()


def _read_store():
    """The default store read-only (a profiled target's measurements refine its front's
    intervals), or None when there is none yet."""
    from hilnas.pipeline.store import MeasurementStore, StoreNotFoundError

    try:
        return MeasurementStore(read_only=True)
    except StoreNotFoundError:
        return None


def _write_space_fronts(model, targets, folder, points, onnx, store) -> list[dict[str, Any]]:
    from hilnas.flows.cli_spacesearch import export
    from hilnas.pipeline import fronts

    out = []
    for name in targets:
        d = Path(folder) / jobs.slug(name)
        pts = model.front(name, points=points, store=store)
        records, note = fronts.front_with_intervals(
            name, pts, tuple(model.objectives), space=model.space, store=store,
            priors=model.predictors,
        )  # fmt: skip
        meta = {"search": model.describe(), "points": points}
        if note:
            meta["intervals"] = note
        js = fronts.write_front_json(d / "front.json", name, model.objectives, records, meta)
        png = fronts.plot_front_png(
            d / "front.png", name, model.objectives, records, points_label="predicted"
        )
        files = export(model.space, pts, d / "onnx") if onnx else []
        best = {o: min(p.objectives[o] for p in pts) for o in model.objectives} if pts else {}
        out.append(
            {
                "target": name,
                "json": str(js),
                "png": str(png),
                "onnx": len(files),
                "points": len(pts),
                "best": best,
                "error": None,
            }
        )
    return out


@flow(name="hilnas-space-pipeline")
def space_pipeline_flow(config: dict[str, Any]) -> dict[str, Any]:
    """Profile the local devices -> one search for every target -> fronts (see the module)."""
    from hilnas.pipeline.spacesearch.search import SpaceSearchConfig
    from hilnas.pipeline.spacesearch.targets import reference_targets

    cfg = SpaceRunConfig.model_validate(config)
    # the search settings are validated before anything is measured
    probe: dict[str, Any] = {"space": cfg.space, "queries": cfg.queries, "steps": cfg.steps}
    if cfg.objectives:
        probe["objectives"] = cfg.objectives
    if cfg.quality:
        probe["quality"] = cfg.quality
    search_cfg = SpaceSearchConfig(**probe)
    logger = get_run_logger()
    run_dir = jobs.new_run_dir(cfg.run_dir)
    jobs.write_json(run_dir / "config.json", cfg.model_dump(mode="json"))
    times = jobs.StageTimes()
    result: dict[str, Any] = {"run_dir": str(run_dir), "space": cfg.space, "devices": {}}
    params = cfg.model_dump(mode="json")
    with times.stage("profiling"):
        for info in jobs.local_devices(cfg.devices or None):
            result["devices"][info.id] = profile_space_task(info.id, params)
            logger.info("profiled %s: %s", info.id, result["devices"][info.id])
    local = [d["config_key"] for d in result["devices"].values()]
    skipped = []
    if "energy_mj" in search_cfg.hardware:
        from hilnas.pipeline.store import MeasurementStore

        store = MeasurementStore(read_only=True)
        try:
            keep = []
            for key in local:
                table = store.energy_table(key, search_cfg.space)
                if len(table) == 0:
                    skipped.append(key)
                else:
                    keep.append(key)
            local = keep
        finally:
            store.close()
        for key in skipped:
            logger.warning("%s has no measured energy (no RAPL/NVML counter); left out", key)
    result["skipped_targets"] = skipped
    targets = reference_targets(cfg.space, search_cfg.hardware) + local
    with times.stage("search"):
        search = space_search_task(params, targets)
        result["search"] = search
    with times.stage("writing"):
        shown = targets if cfg.reference_devices else local
        result["fronts"] = space_fronts_task(
            search, shown, str(run_dir / "fronts"), cfg.points, cfg.onnx
        )
    result["timings"] = times.as_dict()
    jobs.write_json(run_dir / "timings.json", result["timings"])
    jobs.write_json(run_dir / "summary.json", result)
    logger.info("run directory: %s; wall time %s", run_dir, result["timings"])
    return result
