"""``hilnas search --space S`` and ``hilnas front --space S`` for spaces beyond NB201.

The commands themselves live in :mod:`hilnas.flows.cli_search`; for ``--space`` other than
nb201 they hand over to the functions here, which drive :mod:`hilnas.pipeline.spacesearch`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from hilnas.devices.errors import InvalidInputError, PreconditionError
from hilnas.flows import cli_common
from rich.table import Table

#: Options of ``hilnas search`` that only the NB201 search has (refused for other spaces).
NB201_ONLY = (
    "--mode",
    "--epochs",
    "--dataset",
    "--data-dir",
    "--data-limit",
    "--supernet-error",
    "--supernet-epochs",
    "--sampler",
    "--scalarization",
)


def _store(db: str | None, names: list[str], space: str, metrics: tuple[str, ...], read_only: bool):
    """The store, when a name is not a reference device of the space (or --db was given)."""
    from hilnas.pipeline.spacesearch.targets import reference_targets

    refs = set(reference_targets(space, metrics))
    if db is None and all(n in refs for n in names):
        return None
    from hilnas.pipeline.store import MeasurementStore

    return MeasurementStore(db, read_only=read_only)


def run_search(
    *,
    space: str,
    objectives: str | None,
    devices: list[str],
    quality: str | None,
    queries: int,
    steps: int | None,
    seed: int,
    threads: int | None,
    db: str | None,
    as_json: bool,
    nb201_options: dict[str, bool],
) -> None:
    from hilnas.pipeline.spacesearch.search import (
        SpaceSearchConfig,
        SpaceSearchModel,
        run_space_search,
    )

    given = [flag for flag, was_given in nb201_options.items() if was_given]
    if given:
        raise InvalidInputError(
            f"{', '.join(given)} belong(s) to the NB201 search; for --space {space} use "
            "--quality, --queries, --steps, --objectives, --devices"
        )
    kwargs: dict[str, Any] = {"space": space, "seed": seed, "queries": queries}
    if threads is not None:
        kwargs["threads"] = threads
    if objectives:
        kwargs["objectives"] = objectives
    if quality:
        kwargs["quality"] = quality
    if steps is not None:
        kwargs["steps"] = steps
    if devices:
        kwargs["targets"] = tuple(devices)
    cfg = SpaceSearchConfig(**kwargs)
    store = _store(db, list(cfg.targets), cfg.space, cfg.hardware, read_only=False)
    cli_common.train_search(
        lambda update: run_space_search(cfg, store=store, progress=update),
        store,
        lambda path: SpaceSearchModel.load(path).describe(),
        as_json,
        lambda summary, path: (
            f"saved search [bold]{summary['run_id']}[/] ({space}, {summary['mode']}, "
            f"{', '.join(summary['objectives'])}; {len(summary['train_targets'])} training "
            f"targets; {summary['queries_used']} quality queries; {summary['wall_s']:.0f} s) "
            f"to {path}\nfronts: `hilnas front --space {space} --device NAME` (any device "
            "with its reference measurements)"
        ),
    )


def load(space: str | None, search: str | None):
    """The saved search to read a front from: ``search`` (or the space's latest), checked to
    be of ``space``; a saved NB201 search asked about another space is a clear error."""
    from hilnas.pipeline.search import SETTINGS_FILE, SearchMismatchError, resolve_run
    from hilnas.pipeline.spacesearch.search import (
        FORMAT,
        SpaceSearchModel,
        latest_space_run,
    )

    path = (
        resolve_run(search)
        if search is not None or space in (None, "nb201")
        else latest_space_run(space)
    )
    try:
        settings = json.loads((path / SETTINGS_FILE).read_text())
    except (OSError, ValueError):
        settings = {}
    is_space = isinstance(settings, dict) and settings.get("format") == FORMAT
    saved_space = settings.get("space", "nb201") if isinstance(settings, dict) else "nb201"
    if space is not None and saved_space != space:
        raise SearchMismatchError(
            f"the saved search {path.name} is a {saved_space} search, not {space}; run "
            f"`hilnas search --space {space}` or pass --search with a {space} run"
        )
    return SpaceSearchModel.load(path) if is_space else None


def front(
    trained: Any,
    *,
    device: str,
    points: int | None,
    preference: list[float] | None,
    out: Path | None,
    export_onnx: bool,
    db: str | None,
    as_json: bool,
    measure: dict[str, Any] | None = None,
) -> None:
    """``hilnas front`` for a space search; ``measure`` (``{"reps", "warmup"}``, from
    ``--measure``): measure the front on the local device too (see
    :func:`hilnas.flows.cli_search.run_measure`)."""
    from hilnas.flows.cli_search import check_measure, print_check, run_measure
    from hilnas.pipeline import fronts

    space = trained.cfg.space
    names = [t.name for t in trained.targets]
    from hilnas.pipeline.fronts import front_with_intervals

    if measure is not None:  # refused before the front is read or anything is measured
        check_measure(device, space, db, measure)

    store = None if device in names else _store(db, [device], space, trained.cfg.hardware, True)
    objectives = trained.objectives
    try:
        pts = trained.front(device, points=points, preference=preference, store=store)
        records, note = front_with_intervals(
            device, pts, tuple(objectives), space=trained.space, store=store,
            priors=trained.predictors,
        )  # fmt: skip
    finally:
        if store is not None:
            store.close()
    meta = {"search": trained.describe(), "points": points, "preference": preference}
    if note:
        meta["intervals"] = note
    check = None
    if measure is not None:
        check = run_measure(records, space, device, db, measure, as_json)
        records = check.attach(records)
        meta["check"] = check.to_dict()
    written: list[Path] = []
    if out is not None:
        try:
            written.append(
                fronts.write_front_json(out / "front.json", device, objectives, records, meta)
            )
            written.append(
                fronts.plot_front_png(
                    out / "front.png",
                    device,
                    objectives,
                    records,
                    points_label="predicted",
                    title=f"{space} front on {device} ({len(pts)} points, predicted)",
                )
            )
            if export_onnx:
                written += export(trained.space, pts, out / "onnx")
        except OSError as exc:
            raise PreconditionError(
                f"cannot write into --out {str(out)!r} ({exc.strerror or exc}); pass a "
                "writable directory"
            ) from None
    if as_json:
        from hilnas.flows.cli_search import echo_front_json

        extra = {"space": space, **({"intervals": note} if note else {})}
        if check is not None:
            extra["check"] = check.to_dict()
        echo_front_json(device, objectives, records, meta["search"], written, extra)
        return
    table = Table(
        title=f"{space} front on {device} ({len(pts)} architectures; search "
        f"{trained.path.name if trained.path else '-'})"
    )
    table.add_column("#", justify="right")
    table.add_column("architecture", overflow="fold")
    table.add_column("preference")
    for o in objectives:
        table.add_column(fronts.OBJECTIVE_LABELS.get(o, o), justify="right")
    for i, (p, rec) in enumerate(zip(pts, records, strict=True)):
        pref = "-" if p.preference is None else ",".join(f"{v:.2f}" for v in p.preference)
        bands = rec.get("intervals") or {}
        cells = []
        for o in objectives:
            queried = o == trained.cfg.quality_objective and p.quality_source == "queried"
            band = f" [{bands[o][0]:.2f}, {bands[o][1]:.2f}]" if o in bands else ""
            cells.append(f"{p.objectives[o]:.2f}{' (queried)' if queried else ''}{band}")
        table.add_row(str(i), p.arch, pref, *cells)
    cli_common.console.print(table)
    cli_common.print_interval_notes(note)
    if check is not None:
        print_check(check)
    for path in written:
        cli_common.console.print(f"wrote {path}")


def export(space: Any, pts: list[Any], folder: Path) -> list[Path]:
    """ONNX files of a front's architectures at the space's default workload."""
    from hilnas.pipeline.export import OnnxExporter

    exporter = OnnxExporter()
    config = space.default_model_config()
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for rank, p in enumerate(pts):
        code = space.parse(p.arch)
        model = exporter.export(space, code, config=config)
        tag = hashlib.sha256(p.arch.encode()).hexdigest()[:10]
        target = folder / f"{rank:02d}-{space.name}-{tag}.onnx"
        tmp = target.with_suffix(".onnx.tmp")
        shutil.copyfile(model.path, tmp)
        tmp.replace(target)
        out.append(target)
    return out
