"""The main job's steps as plain functions (no Prefect): flows/flows.py wraps them as tasks.

Each step calls the layers below (pipeline/, devices/) and adds only orchestration: which
devices, which targets, where files go, how long each stage took. Heavy libraries (torch for the
search, matplotlib for plots) are imported inside the steps that need them, so that profiling
on an agent never imports torch.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any

from hilnas.devices.errors import InvalidInputError

log = logging.getLogger(__name__)

Progress = Callable[[str], None]

AGENT_DEVICE_ENV = "HILNAS_AGENT_DEVICE"


def slug(name: str) -> str:
    """A file- and Prefect-key-safe name for a target (``cpu-1a2b/cpu/t1/b1`` -> ``cpu-1a2b-cpu-t1-b1``)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "target"


def plain(value: Any) -> Any:
    """A JSON-ready view of a report object (dataclass, enum, path, numpy scalar)."""
    if is_dataclass(value) and not isinstance(value, type):
        return plain(asdict(value))
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            return value.item()
        except Exception:  # noqa: BLE001
            return str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


# ----------------------------------------------------------------------------- timing
@dataclass
class StageTimes:
    """Wall time per stage of the main job (seconds), written to ``timings.json``."""

    stages: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = self.stages.get(name, 0.0) + time.perf_counter() - t0

    def as_dict(self) -> dict[str, Any]:
        total = time.perf_counter() - self.started
        out: dict[str, Any] = {f"{k}_s": round(v, 3) for k, v in self.stages.items()}
        out["other_s"] = round(max(0.0, total - sum(self.stages.values())), 3)
        out["total_s"] = round(total, 3)
        return out


# ----------------------------------------------------------------------------- devices
def resolve_device(name: str | None) -> Any:
    """The local device a profiling run is for (``name``, else the agent's, else ``cpu``).

    An agent started for device X (``HILNAS_AGENT_DEVICE``) refuses runs for another device.
    A device that is not attached (any more) raises ``DeviceNotFoundError`` naming the fix.
    """
    from hilnas.devices import get_device

    agent = os.environ.get(AGENT_DEVICE_ENV) or None
    info = get_device(name or agent or "cpu")
    if agent and name:
        served = get_device(agent)
        if served.id != info.id:
            raise InvalidInputError(
                f"this agent serves device {served.id} but the run asks for {info.id} ({name}); "
                "point the deployment at the work pool of that device's agent"
            )
    return info


def local_devices(names: list[str] | None = None) -> list[Any]:
    """Devices to profile: the named ones, or every discovered local CPU and GPU."""
    from hilnas.devices import discover, get_device

    if names:
        return [get_device(n) for n in names]
    return list(discover())


# ----------------------------------------------------------------------------- profiling
def agent_mode() -> bool:
    """True inside a measurement agent (``hilnas agent start`` sets ``HILNAS_AGENT_DEVICE``):
    ONNX files then come from the artifact location, never from a local export (no torch)."""
    return bool(os.environ.get(AGENT_DEVICE_ENV))


def profile(
    device: str | None = None,
    *,
    archs: int | None = None,
    reps: int | None = None,
    warmup: int | None = None,
    seed: int = 0,
    space: str = "nb201",
    threads: int = 1,
    batch_size: int = 1,
    force: bool = False,
    artifacts: bool | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Profile one device (10 reference architectures + ``archs`` sampled); resumable.

    The keyword form of :func:`profile_job` (see there for the summary it returns).
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
    return profile_job(request, artifacts=artifacts, progress=progress)


def profile_job(
    request: Any, *, artifacts: bool | None = None, progress: Progress | None = None
) -> dict[str, Any]:
    """Run a profiling request: a ``ProfileRequest`` or its JSON form (``to_dict``), whose
    ``device`` may be None (the agent's device, else ``cpu``; :func:`resolve_device`).

    Every workload of the space is measured, as ``hilnas profile`` does (gpt_s: prefill and
    decode, each its own measurement key); a space with one workload measures its default.
    ``artifacts``: take the ONNX files from the artifact location by content hash instead of
    exporting them here (default: in agent mode). Returns a JSON-ready summary of the report
    (counts, timings, latency statistics; not the per-architecture rows); with several
    workloads the counts and times are summed, ``config_key`` lists every workload's key, and
    ``workloads`` holds one summary per workload.
    """
    from dataclasses import replace

    from hilnas.pipeline.profiling import ProfileRequest, profile_request

    values = request.to_dict() if isinstance(request, ProfileRequest) else dict(request or {})
    info = resolve_device(values.get("device"))
    # validates every input (the space and its workloads included) before any work
    req = ProfileRequest.from_dict({**values, "device": info.id})
    exporter = None
    if agent_mode() if artifacts is None else artifacts:
        from hilnas.flows.artifacts import ArtifactExporter

        # the artifact location holds the published (random) plan only; active selection
        # would ask for architectures nobody exported
        if req.strategy not in (None, "random"):
            raise InvalidInputError(
                f"strategy {req.strategy!r} cannot use the artifact location (it holds the "
                "published random plan); use strategy random or export locally "
                "(artifacts=False)"
            )
        exporter = ArtifactExporter()
        req = replace(req, strategy="random")

    def on_progress(event: Any) -> None:
        if progress is not None:
            text = progress_text(info.id, event)
            if text:
                progress(text)

    summaries = []
    for report in profile_request(req, progress=on_progress, exporter=exporter):
        summary = plain({k: v for k, v in report.to_dict().items() if k != "rows"})
        summary["failures"] = [
            {"arch": r.arch, "error": r.error} for r in report.rows if r.outcome == "failed"
        ][:10]
        summaries.append(summary)
    return summaries[0] if len(summaries) == 1 else _combined(summaries)


#: Counts and times that add up over the workloads of one profiling job.
_SUMMED = (
    "planned", "measured", "failed", "skipped", "kept", "stored_ok", "export_s",
    "session_create_s", "warmup_s", "timed_s", "measure_wall_s", "store_s", "wall_s",
)  # fmt: skip


def _combined(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """One summary for a job that measured several workloads (see :func:`profile`)."""
    out = dict(summaries[0])
    for key in _SUMMED:
        values = [s.get(key) for s in summaries]
        if all(isinstance(v, (int, float)) for v in values):
            out[key] = sum(values)
    for key in ("config_key", "model_config_key"):  # distinct values, in order
        out[key] = ", ".join(dict.fromkeys(s[key] for s in summaries))
    out["failures"] = [f for s in summaries for f in s["failures"]][:10]
    out["workloads"] = summaries
    return out


def progress_text(device_id: str, event: Any) -> str | None:
    """One log line for a profiling progress event (None for the ones not worth a line)."""
    kind = getattr(event, "kind", None)
    if kind == "plan":
        return f"{device_id}: {event.total} to measure, {event.skipped} already stored"
    if kind == "wait":
        return event.message
    if kind == "done" and event.row is not None:
        row = event.row
        lat = f"{row.latency_ms_median:.3f} ms" if row.latency_ms_median else (row.error or "")
        return f"{device_id}: {event.done}/{event.total} {row.outcome} {row.arch} {lat}"
    return None


# ----------------------------------------------------------------------------- fitting
def fit(*, store: Any = None, seed: int = 0, progress: Progress | None = None) -> dict[str, Any]:
    """Refit the predictors from what the store holds.

    - the cross-device meta-predictor of each metric, with the store's well-measured targets on
      top of the reference devices (saved under HILNAS_HOME/models, where the search loads it);
      a metric without such targets keeps the shipped weights;
    - a per-device predictor (chosen by cross-validation) for every target with enough
      measurements of its own; its CV quality is reported.
    """
    from hilnas.pipeline.predictors import device as D
    from hilnas.pipeline.store import MeasurementStore

    st = store if store is not None else MeasurementStore()
    try:
        rep = D.fit_store_targets(
            st, meta=True, meta_only_with_store_targets=True, seed=seed, progress=progress
        )
    finally:
        if store is None:
            st.close()
    out: dict[str, Any] = {"meta": {}, "devices": {}}
    for metric, r in rep.meta.items():
        out["meta"][metric] = (
            f"refit with {', '.join(r['store_targets'])}"
            if r["status"] == "refit"
            else "shipped weights (no store target with enough measurements)"
        )
    for r in rep.fitted():
        chosen = r["cv"][r["chosen"]]
        out["devices"][f"{r['target']}:{r['metric']}"] = {
            "model": r["chosen"],
            **{k: round(float(chosen[k]), 4) for k in ("spearman", "kendall", "within10")},
            "n": int(chosen["n"]),
            **({"flagged": r["flagged"]} if "flagged" in r else {}),
        }
    return out


# ----------------------------------------------------------------------------- search
def reference_devices() -> list[str]:
    from hilnas.pipeline.refdata import load_nb201

    return list(load_nb201().latency_devices)


def training_targets(store: Any, local: list[str] | None = None) -> list[str]:
    """The hypernetwork's training targets: the 13 MODNAS training devices of the reference
    data plus every measured device configuration in the store that has an embedding (its 10
    reference architectures); ``local`` restricts the latter to those device ids."""
    from hilnas.pipeline.predictors import PredictorError, embedding_for
    from hilnas.pipeline.refdata import MODNAS_TRAIN_DEVICES

    names = list(MODNAS_TRAIN_DEVICES)
    for key in store.config_keys(ok_only=True):
        if local is not None and key.split("/")[0] not in local:
            continue
        try:
            embedding_for(key, "latency_ms", store, with_support=False)
        except PredictorError:
            continue
        names.append(key)
    return names


def search(
    *,
    mode: str = "surrogate",
    objectives: list[str] | tuple[str, ...] = ("error", "latency_ms"),
    devices: list[str] | None = None,
    epochs: int | None = None,
    seed: int = 0,
    options: dict[str, Any] | None = None,
    store: Any = None,
    progress: Progress | None = None,
) -> Path:
    """Train the MetaHypernetwork; return the directory of the saved search.

    ``devices``: training targets (default :func:`training_targets`); ``options``: further
    :class:`~hilnas.pipeline.search.SearchConfig` fields.
    """
    from hilnas.pipeline.search import SearchConfig, run_search
    from hilnas.pipeline.store import MeasurementStore

    st = store if store is not None else MeasurementStore()
    try:
        targets = list(devices) if devices else training_targets(st)
        cfg = SearchConfig(
            mode=mode,
            objectives=tuple(objectives),
            train_targets=tuple(targets),
            epochs=epochs,
            seed=seed,
            **(options or {}),
        )
        last: dict[str, float] = {}

        def on_progress(event: Any) -> None:
            # one line per stage and about every 10 % of it
            if progress is None:
                return
            total = max(int(getattr(event, "total", 0) or 0), 1)
            frac = int(getattr(event, "done", 0)) / total
            stage = getattr(event, "stage", "search")
            if stage not in last or frac - last[stage] >= 0.1 or frac >= 1:
                last[stage] = frac
                progress(f"search {stage} {event.done}/{event.total} {event.message}".rstrip())

        if progress is not None:
            progress(f"search ({mode}) on {len(targets)} training targets: {', '.join(targets)}")
        return Path(run_search(cfg, store=st, progress=on_progress))
    finally:
        if store is None:
            st.close()


def front_targets(store: Any, *, reference: bool = True, space: str = "nb201") -> list[str]:
    """Every known device: measured configurations and external devices in the store, then
    (``reference``) the 27 reference device configurations."""
    names = list(store.targets())
    if reference:
        names += [d for d in reference_devices() if d not in names]
    return names


@dataclass(frozen=True, slots=True)
class FrontFiles:
    target: str
    json: Path
    png: Path | None
    onnx: tuple[Path, ...]
    points: list[dict[str, Any]]
    error: str | None = None


def write_fronts(
    search_path: Path | str,
    targets: list[str],
    out_dir: Path | str,
    *,
    points: int = 8,
    onnx: bool = True,
    store: Any = None,
    progress: Progress | None = None,
) -> list[FrontFiles]:
    """For each target: its front from the trained hypernetwork (no retraining) as
    ``<out>/<slug>/front.json`` and ``front.png``, and (``onnx``) the chosen subnets as ONNX
    files built on the skeleton the search used (``<out>/<slug>/onnx/``).

    A target that cannot be served (e.g. no embedding) is reported with its error; the others
    go on.
    """
    from hilnas.pipeline.fronts import front_with_intervals, plot_front_png, write_front_json
    from hilnas.pipeline.search import TrainedSearch
    from hilnas.pipeline.store import MeasurementStore

    trained = TrainedSearch.load(Path(search_path))
    objectives = tuple(trained.objectives)
    exporter = None
    out_dir = Path(out_dir)
    st = store if store is not None else MeasurementStore()
    results: list[FrontFiles] = []
    try:
        for n, target in enumerate(targets, start=1):
            folder = out_dir / slug(target)
            try:
                pts = trained.front(target, points=points, store=st)
                records, note = front_with_intervals(
                    target, pts, objectives, space=trained.space, store=st
                )
                meta = {
                    "search": str(trained.path),
                    "mode": trained.settings.get("mode"),
                    "costs": trained.cost_sources(target, st),
                }
                if note:
                    meta["intervals"] = note
                json_path = write_front_json(
                    folder / "front.json", target, objectives, records, meta
                )
                png_path = plot_front_png(folder / "front.png", target, objectives, records)
                onnx_paths: list[Path] = []
                if onnx:
                    if exporter is None:
                        from hilnas.pipeline.export import OnnxExporter

                        exporter = OnnxExporter()
                    onnx_paths = _export_front(exporter, trained, records, folder / "onnx")
                results.append(FrontFiles(target, json_path, png_path, tuple(onnx_paths), records))
            except Exception as exc:  # noqa: BLE001 - one bad target must not stop the others
                log.warning("front for %s failed: %s", target, exc)
                results.append(FrontFiles(target, folder / "front.json", None, (), [], str(exc)))
            if progress is not None:
                progress(f"front {n}/{len(targets)}: {target}")
    finally:
        if store is None:
            st.close()
    return results


def _export_front(
    exporter: Any, trained: Any, records: list[dict[str, Any]], folder: Path
) -> list[Path]:
    """ONNX files of a front's architectures, named ``<rank>-arch<index>.onnx``."""
    space = trained.space
    config = trained.model_config()
    folder.mkdir(parents=True, exist_ok=True)
    out: list[Path] = []
    for rank, rec in enumerate(records):
        code = space.parse(rec["arch"])
        model = exporter.export(space, code, config=config)
        target = folder / f"{rank:02d}-arch{space.index(code):05d}.onnx"
        if not target.exists():
            tmp = target.with_suffix(".onnx.tmp")
            shutil.copyfile(model.path, tmp)
            tmp.replace(target)
        out.append(target)
    return out


# ----------------------------------------------------------------------------- run directory
def new_run_dir(base: Path | None = None) -> Path:
    """``base`` as given, or ``./runs/<UTC timestamp>`` (never reused)."""
    if base is not None:
        base.mkdir(parents=True, exist_ok=True)
        return base
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    path = Path("runs") / stamp
    i = 1
    while path.exists():
        i += 1
        path = Path("runs") / f"{stamp}-{i}"
    path.mkdir(parents=True)
    return path.resolve()


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(plain(data), indent=2) + "\n")
    tmp.replace(path)
    return path
