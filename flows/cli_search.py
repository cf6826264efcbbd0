"""``hilnas search`` and ``hilnas front``: train the MetaHypernetwork once, read fronts for any device."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import typer
from hilnas.flows import cli_common
from rich.table import Table

DB_HELP = (
    "Database URL of the measurement store (default: $HILNAS_DATABASE_URL, else "
    "sqlite:///$HILNAS_HOME/hilnas.db)."
)


_user_errors = cli_common.user_errors


def _split(values: list[str] | None) -> list[str]:
    out: list[str] = []
    for v in values or []:
        out += [x.strip() for x in v.split(",") if x.strip()]
    return out


def _store(db: str | None, needed: bool):
    """The measurement store, or None when nothing needs it (reference devices only)."""
    if not needed and db is None:
        return None
    from hilnas.pipeline.store import MeasurementStore

    return MeasurementStore(db)


def _needs_store(names: list[str]) -> bool:
    from hilnas.pipeline.refdata import load_nb201

    ref = load_nb201()
    known = set(ref.latency_devices) | set(ref.energy_devices)
    return any(n not in known for n in names)


@_user_errors
def search_command(
    mode: str = typer.Option(
        "surrogate",
        "--mode",
        help="surrogate (NB201 accuracy table, seconds per step) or supernet (trains on --dataset).",
    ),
    objectives: str = typer.Option(
        "error,latency", "--objectives", help="Comma-separated: error, latency, energy."
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
    queries: int = typer.Option(
        200, "--queries", help="Surrogate mode: true accuracies read in total."
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
    from hilnas.pipeline.search import SearchConfig, TrainedSearch, run_search
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    kwargs: dict[str, Any] = {
        "mode": mode,
        "objectives": objectives,
        "epochs": epochs,
        "seed": seed,
        "accuracy_queries": queries,
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
    cfg = SearchConfig(**kwargs)
    store = _store(db, _needs_store(list(cfg.train_targets)))
    try:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            console=cli_common.err_console,
            transient=as_json,
        ) as bar:
            tasks: dict[str, Any] = {}

            def on_progress(p) -> None:
                if p.stage not in tasks:
                    tasks[p.stage] = bar.add_task(p.stage, total=p.total, note="")
                bar.update(tasks[p.stage], completed=p.done, total=p.total, note=p.message)

            path = run_search(cfg, store=store, progress=on_progress)
    finally:
        if store is not None:
            store.close()
    summary = TrainedSearch.load(path).describe()
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    cli_common.console.print(
        f"saved search [bold]{summary['run_id']}[/] ({summary['mode']}, "
        f"{', '.join(summary['objectives'])}; {len(summary['train_targets'])} training targets; "
        f"{summary['wall_s']:.0f} s) to {path}\n"
        f"fronts: `hilnas front --device NAME` (any device with its 10 reference measurements)"
    )


@_user_errors
def front_command(
    device: str = typer.Option(
        ...,
        "--device",
        "-d",
        help="Target: a reference device, a device id / config key, or an imported device.",
    ),
    points: int | None = typer.Option(
        None, "--points", "-k", help="Preference points of the sweep [100]."
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
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """The architectures the trained hypernetwork picks for a device (no retraining)."""
    from hilnas.pipeline import fronts
    from hilnas.pipeline.search import SearchError, TrainedSearch

    if points is not None and preference is not None:
        raise cli_common.UserError("give either --points or --preference, not both")
    if export_onnx and out is None:
        raise cli_common.UserError("--export-onnx writes into --out DIR; give --out too")
    trained = TrainedSearch.load(search)
    pref = None
    if preference is not None:
        try:
            pref = [float(x) for x in preference.split(",")]
        except ValueError:
            raise SearchError(
                f"--preference {preference!r} is not a comma-separated list of numbers, "
                f"e.g. 0.3,0.7 for {', '.join(trained.objectives)}"
            ) from None
    store = _store(db, _needs_store([device]))
    try:
        pts = trained.front(device, points=points, preference=pref, store=store)
    finally:
        if store is not None:
            store.close()
    objectives = trained.objectives
    meta = {"search": trained.describe(), "points": points, "preference": pref}
    written: list[Path] = []
    if out is not None:
        reference = _exact_front(trained, device)
        written.append(fronts.write_front_json(out / "front.json", device, objectives, pts, meta))
        written.append(
            fronts.plot_front_png(out / "front.png", device, objectives, pts, reference=reference)
        )
        if export_onnx:
            written += _export(trained, pts, out / "onnx")
    if as_json:
        doc = {
            "device": device,
            "objectives": list(objectives),
            "units": {o: fronts.OBJECTIVE_UNITS.get(o, "") for o in objectives},
            "search": meta["search"],
            "points": fronts.point_records(pts, objectives),
            "files": [str(p) for p in written],
        }
        typer.echo(json.dumps(doc, indent=2))
        return
    table = Table(title=f"front on {device} ({len(pts)} architectures; search {trained.path.name})")
    table.add_column("#", justify="right")
    table.add_column("architecture", overflow="fold")
    table.add_column("preference")
    for o in objectives:
        table.add_column(fronts.OBJECTIVE_LABELS.get(o, o), justify="right")
    for i, p in enumerate(pts):
        err_note = " (queried)" if p.error_source == "queried" else ""
        cells = [f"{p.objectives[o]:.2f}" + (err_note if o == "error" else "") for o in objectives]
        pref = "-" if p.preference is None else ",".join(f"{v:.2f}" for v in p.preference)
        table.add_row(str(i), p.arch, pref, *cells)
    cli_common.console.print(table)
    for path in written:
        cli_common.console.print(f"wrote {path}")


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
