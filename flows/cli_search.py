"""``hilnas search`` and ``hilnas front``: train the MetaHypernetwork once, read fronts for any device."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

import typer
from hilnas.devices.errors import (
    InvalidInputError,
    NotFoundError,
    PreconditionError,
    check_number,
)
from hilnas.flows import cli_common
from hilnas.flows.cli_common import check_output_dir
from rich.table import Table

DB_HELP = (
    "Database URL of the measurement store (default: $HILNAS_DATABASE_URL, else "
    "sqlite:///$HILNAS_HOME/hilnas.db)."
)


def _split(values: list[str] | None) -> list[str]:
    out: list[str] = []
    for v in values or []:
        out += [x.strip() for x in v.split(",") if x.strip()]
    return out


def _store(db: str | None, needed: bool, *, read_only: bool = False):
    """The measurement store, or None when nothing needs it (reference devices only)."""
    if not needed and db is None:
        return None
    from hilnas.pipeline.store import MeasurementStore

    return MeasurementStore(db, read_only=read_only)


#: ``hilnas search`` flags whose SearchConfig field has another name.
_FLAG_OF_FIELD = {
    "accuracy_queries": "--queries",
    "train_targets": "--devices",
    "data_dir": "--data-dir",
    "data_limit": "--data-limit",
    "supernet_error": "--supernet-error",
    "supernet_epochs": "--supernet-epochs",
}
_FLAGS = ("mode", "objectives", "epochs", "seed", "dataset", "sampler", "scalarization", "threads")


def _in_flags(message: str) -> str:
    """A SearchConfig message with its field names written as the flags that set them."""
    names = {**_FLAG_OF_FIELD, **{f: f"--{f}" for f in _FLAGS}}
    pattern = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, names)) + r")(?![\w-])")
    return pattern.sub(lambda m: names[m.group(1)], message, count=2)


def _needs_store(names: list[str]) -> bool:
    from hilnas.pipeline.refdata import load_nb201

    ref = load_nb201()
    known = set(ref.latency_devices) | set(ref.energy_devices)
    return any(n not in known for n in names)


def search_command(
    mode: str = typer.Option(
        "surrogate",
        "--mode",
        help="surrogate (NB201 accuracy table, seconds per step) or supernet (trains on --dataset).",
    ),
    objectives: str | None = typer.Option(
        None,
        "--objectives",
        help="Comma-separated. nb201: error, latency, energy [error,latency]; ofa_mbv3: error, "
        "latency_ms; gpt_s: perplexity, latency_ms, energy_mj [quality,latency_ms].",
    ),
    space: str = typer.Option("nb201", "--space", help="Search space (`hilnas space list`)."),
    quality: str | None = typer.Option(
        None,
        "--quality",
        help="Spaces other than nb201: where the quality objective comes from: surrogate "
        "(gpt_s: HW-GPT-Bench's perplexity surrogate) or supernet (trained here on offline "
        "data; ofa_mbv3's only mode).",
    ),
    steps: int | None = typer.Option(
        None, "--steps", help="Spaces other than nb201: hypernetwork steps [600]."
    ),
    devices: list[str] = typer.Option(
        [],
        "--devices",
        "-d",
        help="Training targets (repeatable or comma-separated; default: the 13 MODNAS training devices).",
    ),
    epochs: int | None = typer.Option(
        None,
        "--epochs",
        help="Hypernetwork epochs of 100 steps [20] (supernet mode, direct error: passes over the data [20]).",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of everything random in the search."),
    queries: int | None = typer.Option(
        None,
        "--queries",
        help="Quality-oracle queries in total for all devices (nb201 surrogate mode: true "
        "accuracies read [200]; other spaces [300]).",
    ),
    dataset: str = typer.Option("digits", "--dataset", help="Supernet mode: digits or cifar10."),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="Supernet mode, CIFAR-10: the folder holding cifar-10-batches-bin."
    ),
    data_limit: int | None = typer.Option(
        None,
        "--data-limit",
        help="Supernet mode, CIFAR-10: use at most this many training images (a quicker CPU run).",
    ),
    supernet_error: str = typer.Option(
        "surrogate",
        "--supernet-error",
        help="Supernet mode: surrogate (supernet trained first, fairly; its validation error labels the surrogate) or direct (MODNAS's straight-through error).",
    ),
    supernet_epochs: int = typer.Option(
        30, "--supernet-epochs", help="Supernet mode, surrogate error: epochs of supernet training."
    ),
    sampler: str = typer.Option("reinmax", "--sampler", help="reinmax or gdas."),
    scalarization: str = typer.Option(
        "tchebycheff", "--scalarization", help="tchebycheff or linear."
    ),
    threads: int | None = typer.Option(
        None,
        "--threads",
        help="torch CPU threads (default: 1 in surrogate mode, torch's otherwise).",
    ),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the saved run's summary as JSON."),
) -> None:
    """Train the MetaHypernetwork once for every device and preference, and save it."""
    from hilnas.pipeline.spaces import get_space

    space = get_space(space).name  # an unknown space is refused before anything else
    if space != "nb201":
        from hilnas.flows import cli_spacesearch

        cli_spacesearch.run_search(
            space=space,
            objectives=objectives,
            devices=_split(devices),
            quality=quality,
            queries=300 if queries is None else queries,
            steps=steps,
            seed=seed,
            threads=threads,
            db=db,
            as_json=as_json,
            nb201_options={
                "--mode": mode != "surrogate",
                "--epochs": epochs is not None,
                "--dataset": dataset != "digits",
                "--data-dir": data_dir is not None,
                "--data-limit": data_limit is not None,
                "--supernet-error": supernet_error != "surrogate",
                "--supernet-epochs": supernet_epochs != 30,
                "--sampler": sampler != "reinmax",
                "--scalarization": scalarization != "tchebycheff",
            },
        )
        return
    if quality is not None or steps is not None:
        raise InvalidInputError(
            "--quality and --steps are for spaces other than nb201; the NB201 search takes "
            "--mode and --epochs"
        )
    from hilnas.pipeline.search import SearchConfig, SearchError, TrainedSearch, run_search

    if data_dir is not None and not data_dir.is_dir():
        raise NotFoundError(
            f"--data-dir {str(data_dir)!r} is not a directory; pass the folder holding "
            "cifar-10-batches-bin"
        )
    kwargs: dict[str, Any] = {
        "mode": mode,
        "objectives": "error,latency" if objectives is None else objectives,
        "epochs": epochs,
        "seed": seed,
        "accuracy_queries": 200 if queries is None else queries,
        "dataset": dataset,
        "data_dir": str(data_dir) if data_dir else None,
        "sampler": sampler,
        "supernet_error": supernet_error,
        "supernet_epochs": supernet_epochs,
        "data_limit": data_limit,
        "scalarization": scalarization,
        "threads": threads,
    }
    names = _split(devices)
    if names:
        kwargs["train_targets"] = tuple(names)
    try:
        cfg = SearchConfig(**kwargs)
    except SearchError as exc:
        raise SearchError(_in_flags(str(exc))) from None
    store = _store(db, _needs_store(list(cfg.train_targets)))
    cli_common.train_search(
        lambda update: run_search(
            cfg,
            store=store,
            progress=lambda p: update(p.stage, p.done, p.total, p.message),
        ),
        store,
        lambda path: TrainedSearch.load(path).describe(),
        as_json,
        lambda summary, path: (
            f"saved search [bold]{summary['run_id']}[/] ({summary['mode']}, "
            f"{', '.join(summary['objectives'])}; {len(summary['train_targets'])} training "
            f"targets; {summary['wall_s']:.0f} s) to {path}\n"
            "fronts: `hilnas front --device NAME` (any device with its 10 reference measurements)"
        ),
    )


def front_command(
    device: str = typer.Option(
        ...,
        "--device",
        "-d",
        help="Target: a reference device, a device id / config key, or an imported device.",
    ),
    points: int | None = typer.Option(
        None,
        "--points",
        "-k",
        help="Architectures on the front, at most [100]: a sweep of that many preferences; "
        "when the refinement finds more, the ones covering the front best (largest "
        "hypervolume) are kept. Fewer when the front holds fewer distinct architectures.",
    ),
    preference: str | None = typer.Option(
        None,
        "--preference",
        "-r",
        help="One preference, e.g. 0.3,0.7 (one weight per objective, summing to 1).",
    ),
    search: str | None = typer.Option(
        None, "--search", help="Saved search (run id or path; default: the latest)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the front as JSON."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Write front.json and front.png into this directory."
    ),
    export_onnx: bool = typer.Option(
        False, "--export-onnx", help="Also export the architectures to ONNX (into --out/onnx)."
    ),
    space: str | None = typer.Option(
        None,
        "--space",
        help="Search space of the front (default: the saved search's; with no --search, the "
        "latest search of that space).",
    ),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    measure: bool = typer.Option(
        False,
        "--measure",
        help="Also measure the front's architectures on the device (a device of this machine "
        "profiled with `hilnas profile --device cpu`), store them, and compare measured with "
        "predicted latency.",
    ),
    reps: int | None = typer.Option(
        None,
        "--reps",
        help="With --measure: timed runs per architecture (default: the space's profiling "
        "default).",
    ),
    warmup: int | None = typer.Option(
        None,
        "--warmup",
        help="With --measure: untimed warm-up runs (default: the space's profiling default).",
    ),
) -> None:
    """The architectures the trained hypernetwork picks for a device (no retraining).

    With --measure, the front is then measured on the device (this machine's) and stored like
    any profiling run: a table of predicted and measured latency and a summary line (Spearman,
    share within 10 % / 25 %, interval coverage, flagged measurements) follow the front."""
    from hilnas.pipeline import fronts
    from hilnas.pipeline.search import MAX_FRONT_POINTS, TrainedSearch

    if points is not None and preference is not None:
        raise InvalidInputError("give either --points or --preference, not both")
    if points is not None:
        check_number(
            "--points",
            points,
            low=1,
            high=MAX_FRONT_POINTS,
            fix=f"ask for 1 to {MAX_FRONT_POINTS:,} points (a front holds a few dozen at most)",
        )
    if export_onnx and out is None:
        raise InvalidInputError("--export-onnx writes into --out DIR; give --out too")
    if not measure and (reps is not None or warmup is not None):
        raise InvalidInputError(
            "--reps and --warmup set how --measure times the front; add --measure or drop them"
        )
    if out is not None:
        check_output_dir(out, "--out")
    pref = None
    if preference is not None:
        try:
            pref = [float(x) for x in preference.split(",")]
        except ValueError:
            pref = None
        if pref is None or not all(math.isfinite(v) for v in pref):
            raise InvalidInputError(
                f"--preference {preference!r} is not a comma-separated list of numbers, "
                "e.g. 0.3,0.7 (one weight per objective of the search, summing to 1)"
            )
    from hilnas.flows import cli_spacesearch

    if space is not None:
        from hilnas.pipeline.spaces import get_space

        space = get_space(space).name
    other = cli_spacesearch.load(space, search)
    measuring = {"reps": reps, "warmup": warmup} if measure else None
    if other is not None:
        cli_spacesearch.front(
            other,
            device=device,
            # as for nb201: 100 points unless asked (the predicted NSGA-II may find hundreds)
            points=100 if points is None and pref is None else points,
            preference=pref,
            out=out,
            export_onnx=export_onnx,
            db=db,
            as_json=as_json,
            measure=measuring,
        )
        return
    from hilnas.pipeline.fronts import front_with_intervals

    trained = TrainedSearch.load(search)
    objectives = tuple(trained.objectives)
    if measuring is not None:  # refused before the front is read or anything is measured
        check_measure(device, trained.space.name, db, measuring)
    store = _store(db, _needs_store([device]), read_only=True)
    try:
        pts = trained.front(device, points=points, preference=pref, store=store)
        records, note = front_with_intervals(
            device, pts, objectives, space=trained.space, store=store
        )
        costs = trained.cost_sources(device, store)
    finally:
        if store is not None:
            store.close()
    meta = {"search": trained.describe(), "points": points, "preference": pref, "costs": costs}
    if note:
        meta["intervals"] = note
    check = None
    if measuring is not None:
        check = run_measure(records, trained.space.name, device, db, measuring, as_json)
        records = check.attach(records)
        meta["check"] = check.to_dict()
    written: list[Path] = []
    if out is not None:
        reference = _exact_front(trained, device)
        try:
            written.append(
                fronts.write_front_json(out / "front.json", device, objectives, records, meta)
            )
            written.append(
                fronts.plot_front_png(
                    out / "front.png", device, objectives, records, reference=reference
                )
            )
            if export_onnx:
                written += _export(trained, pts, out / "onnx")
        except OSError as exc:
            raise PreconditionError(
                f"cannot write into --out {str(out)!r} ({exc.strerror or exc}); pass a "
                "writable directory"
            ) from None
    if as_json:
        extra = {"intervals": note} if note else {}
        if check is not None:
            extra["check"] = check.to_dict()
        echo_front_json(device, objectives, records, meta["search"], written, extra or None)
        return
    table = Table(title=f"front on {device} ({len(pts)} architectures; search {trained.path.name})")
    table.add_column("#", justify="right")
    table.add_column("architecture", overflow="fold")
    table.add_column("preference")
    for o in objectives:
        table.add_column(fronts.OBJECTIVE_LABELS.get(o, o), justify="right")
    for i, (p, rec) in enumerate(zip(pts, records, strict=True)):
        err_note = " (queried)" if p.error_source == "queried" else ""
        bands = rec.get("intervals") or {}
        cells = [
            f"{p.objectives[o]:.2f}"
            + (err_note if o == "error" else "")
            + (f" [{bands[o][0]:.2f}, {bands[o][1]:.2f}]" if o in bands else "")
            for o in objectives
        ]
        pref = "-" if p.preference is None else ",".join(f"{v:.2f}" for v in p.preference)
        table.add_row(str(i), p.arch, pref, *cells)
    cli_common.console.print(table)
    asked = 100 if points is None else points
    if pref is None and len(pts) < asked:
        cli_common.err_console.print(
            f"note: {len(pts)} of the {asked} points asked for: the sweep found only "
            f"{len(pts)} distinct non-dominated architectures for {device}",
            highlight=False,
        )
    cli_common.print_interval_notes(note)
    if check is not None:
        print_check(check)
    for path in written:
        cli_common.console.print(f"wrote {path}")


def check_measure(device: str, space: str, db: str | None, measuring: dict[str, Any]) -> None:
    """``hilnas front --measure``: refuse a device this machine cannot measure (a reference
    or imported device, another machine's) and bad --reps / --warmup, before the front is
    read and before anything is profiled or written."""
    from hilnas.pipeline.front_check import check_measurable

    check_measurable(device, space=space, store=db, **measuring)


def run_measure(
    records: list[dict[str, Any]],
    space: str,
    device: str,
    db: str | None,
    measuring: dict[str, Any],
    as_json: bool,
):
    """Measure a front's records on the local device (:func:`hilnas.pipeline.front_check.
    measure_front`), with a progress bar on standard error; the results are stored."""
    from hilnas.pipeline.front_check import measure_front

    with cli_common.stage_progress(as_json) as update:

        def progress(event: Any) -> None:
            if event.kind in ("plan", "done"):
                update(f"measuring the front on {device}", event.done, max(event.total, 1))

        return measure_front(
            records, space=space, device=device, store=db, progress=progress, **measuring
        )


def print_check(check: Any) -> None:
    """The measured front: predicted and measured latency per point, then the summary line."""
    table = Table(
        title=f"measured on {check.config_key} ({check.reps} reps, {check.warmup} warm-up)"
    )
    table.add_column("#", justify="right")
    table.add_column("architecture", overflow="fold")
    table.add_column("predicted ms", justify="right")
    table.add_column("measured ms", justify="right")
    table.add_column("CV", justify="right")
    table.add_column("in interval")
    table.add_column("quality")
    for i, p in enumerate(check.points):
        quality = "failed" if p.measured_ms is None else (p.quality or "-")
        table.add_row(
            str(i),
            p.arch,
            "-" if p.predicted_ms is None else f"{p.predicted_ms:.3g}",
            "-" if p.measured_ms is None else f"{p.measured_ms:.3g}",
            "-" if p.cv is None else f"{p.cv:.2f}",
            {True: "yes", False: "no", None: "-"}[p.in_interval],
            quality + ("" if p.outcome != "stored" else " (stored)"),
        )
    cli_common.console.print(table)
    cli_common.console.print(check.summary_line(), highlight=False)
    if check.summary["n_flagged"]:
        cli_common.console.print(
            f"note: {check.quality_summary}. Flagged measurements are kept in these figures "
            "and marked; the device's predictor leaves them out by default (measure on a "
            "quieter machine for clean ones)",
            highlight=False,
        )


def echo_front_json(
    device: str,
    objectives: Any,
    pts: Any,
    search: dict[str, Any],
    written: list[Path],
    extra: dict[str, Any] | None = None,
) -> None:
    """``hilnas front --json``: the front as one JSON document on standard output."""
    from hilnas.pipeline import fronts

    doc = {
        "device": device,
        **(extra or {}),
        "objectives": list(objectives),
        "units": {o: fronts.OBJECTIVE_UNITS.get(o, "") for o in objectives},
        "search": search,
        "points": fronts.point_records(pts, objectives),
        "files": [str(p) for p in written],
    }
    typer.echo(json.dumps(doc, indent=2))


def _exact_front(trained, device: str):
    """Raw objective values of the exact NB201 front for a reference device (for the plot)."""
    from hilnas.pipeline import fronts

    try:
        problem = fronts.nb201_problem(device, tuple(trained.objectives))
    except (ValueError, KeyError):
        return None
    if trained.settings.get("mode") != "surrogate":
        return None  # the exact front is for CIFAR-10 on the NB201 skeleton
    return problem.values[problem.front]


def _export(trained, pts, folder: Path) -> list[Path]:
    """ONNX files of the front's architectures, on the skeleton the search used."""
    from hilnas.pipeline.export import OnnxExporter

    exporter = OnnxExporter()
    config = trained.model_config()
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for rank, p in enumerate(pts):
        code = trained.space.parse(p.arch)
        model = exporter.export(trained.space, code, config=config)
        target = folder / f"{rank:02d}-arch{trained.space.index(code):05d}.onnx"
        tmp = target.with_suffix(".onnx.tmp")
        shutil.copyfile(model.path, tmp)
        tmp.replace(target)
        out.append(target)
    return out


def register(app: typer.Typer) -> None:
    app.command("search")(search_command)
    app.command("front")(front_command)
