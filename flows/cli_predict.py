"""``hilnas predict``, ``hilnas fit`` and ``hilnas devices import``: hardware cost predictions.

``devices import`` lives in the ``hilnas devices`` sub-app (flows/cli_devices.py); this module
installs its validating version there (it checks the 10 reference architectures and every row
before anything is stored).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

import typer
from hilnas.devices.errors import InvalidInputError, NotFoundError, check_number
from hilnas.flows import cli_common
from rich.table import Table

DB_HELP = (
    "Database URL of the measurement store (default: $HILNAS_DATABASE_URL, else "
    "sqlite:///$HILNAS_HOME/hilnas.db)."
)
METRIC_CHOICES = ("all", "latency_ms", "energy_mj")
#: Cross-validation folds of `hilnas fit` (each fold refits every model).
MAX_FOLDS = 50


def _open_store(db: str | None, *, read_only: bool = False):
    """The store; ``read_only`` for commands that only read (an archived home works)."""
    from hilnas.pipeline.store import MeasurementStore

    return MeasurementStore(db, read_only=read_only)


# ----------------------------------------------------------------------------------------------
# hilnas devices import
# ----------------------------------------------------------------------------------------------
def import_device_command(
    name: str = typer.Argument(..., help="Name of the external device, e.g. jetson_nano."),
    measurements: Path | None = typer.Option(
        None, "--measurements", "-m", help="CSV with columns arch, latency_ms[, energy_mj]."
    ),
    csv_path: Path | None = typer.Option(None, "--csv", help="Same as --measurements."),
    replace: bool = typer.Option(False, "--replace", help="Replace earlier data of this name."),
    space: str = typer.Option(
        "nb201", "--space", help="Search space of the architectures in the CSV."
    ),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """Register an external device from a CSV of its measurements (all or nothing).

    The CSV needs the 10 reference architectures (their latencies are the device's hardware
    embedding); for nb201 at least 6 of them are enough, the missing ones are imputed from the
    shipped reference devices whenever the device is used (only the measured rows are stored).
    Every row is checked before anything is stored.
    """
    from hilnas.pipeline.predictors.io import (
        check_device_name,
        import_device,
        read_measurements_csv,
    )

    path = measurements or csv_path
    if path is None:
        raise InvalidInputError("pass the measurements file: --measurements FILE.csv")
    if measurements is not None and csv_path is not None and measurements != csv_path:
        raise InvalidInputError("pass either --measurements or --csv, not both")
    option = "--measurements" if measurements is not None else "--csv"
    cli_common.existing_file(path, option)
    # everything that can be checked without the store is, before the store is opened
    from hilnas.pipeline.spaces import get_space

    space = get_space(space).name
    check_device_name(name, space)
    try:
        read_measurements_csv(path, space=space, allow_partial=True)
    except csv.Error as exc:  # the csv module's own limits (e.g. a field over 128 KiB)
        raise InvalidInputError(
            f"{option} {str(path)!r} is not a CSV hilnas can read ({exc}); write one row per "
            "architecture: arch,latency_ms[,energy_mj]"
        ) from None
    store = _open_store(db)
    try:
        store.require_persistent("`hilnas devices import`")
        table = import_device(name, path, store, replace=replace, space=space)
    finally:
        store.close()
    extra = " with energy_mj" if table.has_energy else ""
    if table.missing_references:
        from hilnas.pipeline.predictors.io import shipped_reference_table

        n_miss = len(table.missing_references)
        cli_common.console.print(
            f"{n_miss} of the 10 reference architectures missing; they are imputed from the "
            f"{len(shipped_reference_table())} shipped nb201 reference devices when {name!r} is "
            "used (only the measured rows are stored; predictions carry wider intervals)"
            + ("; energy_mj cannot be imputed, so it is not predicted" if table.has_energy else ""),
            markup=False,
            highlight=False,
        )
    cli_common.console.print(
        f"imported {len(table.archs)} {space} measurements{extra} of external device "
        f"{name!r}; "
        + (
            f"predict it with `hilnas predict --device {name}`"
            if space == "nb201"
            else f"use it with `hilnas front --space {space} --device {name}`"
        )
    )


# ----------------------------------------------------------------------------------------------
# hilnas predict
# ----------------------------------------------------------------------------------------------
def predict_command(
    device: str = typer.Option(
        ...,
        "--device",
        "-d",
        help="Target: reference device, config key, device id or imported name.",
    ),
    archs: Path | None = typer.Option(
        None,
        "--archs",
        help="Architectures to predict (CSV with an arch column, or one per line); default: the whole space.",
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Write the CSV here (default: standard output)."
    ),
    metric: str = typer.Option("all", "--metric", help="all, latency_ms or energy_mj."),
    model: str = typer.Option(
        "auto",
        "--model",
        help="auto (a per-device model from `hilnas fit` when current, else the meta-predictor) or meta.",
    ),
    space: str = typer.Option(
        "nb201",
        "--space",
        help="Search space. Spaces other than nb201 need --archs and predict for their "
        "reference devices (`hilnas space show SPACE`).",
    ),
    interval: float = typer.Option(
        0.8,
        "--interval",
        help="Also write METRIC_lo and METRIC_hi, a prediction interval at this level "
        "(0.5 to 0.99) from a learning predictor fit on the target's measurements; 0 = off.",
    ),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """Predict latency (ms) and, where an energy model exists, energy (mJ) for a target.

    ``--interval`` (default 0.8) adds the columns ``latency_ms_lo``,
    ``latency_ms_hi`` (and ``energy_mj_lo``, ``energy_mj_hi``): split-conformal intervals of a
    learning predictor (the meta-predictor as prior, a residual model chosen by
    cross-validation on the target's further measurements), extended where needed to contain
    the written prediction. Their coverage is a benchmark figure, not a guarantee.
    """
    import numpy as np
    from hilnas.pipeline import refdata
    from hilnas.pipeline.predictors import io as pio
    from hilnas.pipeline.spaces import get_space

    space = get_space(space).name  # an unknown space is refused before anything else
    if metric not in METRIC_CHOICES:
        raise InvalidInputError(
            f"--metric must be one of {', '.join(METRIC_CHOICES)}, got {metric!r}"
        )
    if model not in ("auto", "meta"):
        raise InvalidInputError(f"--model must be auto or meta, got {model!r}")
    if interval != 0:
        check_number(
            "--interval",
            interval,
            low=0.5,
            high=0.99,
            integer=False,
            fix="use --interval from 0.5 to 0.99, or 0 for no interval columns",
        )
    if archs is not None:
        cli_common.existing_file(archs, "--archs")
    if out is not None:
        cli_common.check_output_file(out, "--out")
    if space != "nb201":
        _predict_other_space(space, device, archs, out, metric, db, interval)
        return
    codes = (
        np.asarray(pio.read_arch_list(archs), dtype=np.int64)
        if archs is not None
        else refdata.load_nb201().arch_codes.astype(np.int64)
    )
    metrics = ("latency_ms", "energy_mj") if metric == "all" else (metric,)
    strict = () if metric == "all" else (metric,)
    store = _lazy_store(db, device)
    try:
        preds = pio.predict_target(
            device,
            codes,
            metrics=metrics,
            store=store,
            strict_metrics=strict or ("latency_ms",),
            use_device_models=(model == "auto"),
        )
        bands = (
            pio.predict_intervals(device, codes, preds, level=interval, store=store)
            if preds and interval
            else {}
        )
    finally:
        if store is not None:
            store.close()
    if not preds:
        raise NotFoundError(
            f"no prediction for {device!r}; profile it (`hilnas profile --device ...`) or import "
            "its measurements (`hilnas devices import`)"
        )
    _write_predictions(out, codes, preds, device, intervals=bands)


def _predict_other_space(
    space: str,
    device: str,
    archs: Path | None,
    out: Path | None,
    metric: str,
    db: str | None,
    interval: float = 0.8,
) -> None:
    """``hilnas predict --space S`` for a space other than NB201.

    The prior is the space-generic cross-device predictor
    (:mod:`hilnas.pipeline.predictors.space`), zero-shot from the device's values on the space's
    reference architectures: a reference device's from the shipped table, a profiled or
    imported device's from the store. A store device's further measurements (the space's default
    workload) then fit a per-device residual model on top of it
    (:func:`hilnas.pipeline.predictors.learning.learning_predictor`, chosen by cross-validation;
    the prior alone when nothing beats it), which also gives the ``interval`` columns. The
    prior is trained on first use (tens of seconds) and cached under HILNAS_HOME/models."""
    import numpy as np
    from hilnas.pipeline.home import HomeError, home_dir
    from hilnas.pipeline.predictors import io as pio
    from hilnas.pipeline.predictors import space as PS
    from hilnas.pipeline.spacesearch.targets import learning_predictor_for

    if archs is None:
        raise InvalidInputError(
            f"{space} is too large to predict whole; pass --archs FILE with one {space} "
            "architecture string per line"
        )
    codes = np.asarray(pio.read_arch_list(archs, space), dtype=np.int64)
    metrics = PS.METRICS if metric == "all" else (metric,)
    try:
        cache: Path | None = home_dir() / "models" / "spaces"
    except HomeError:
        cache = None  # a read-only home: train in memory, save nothing
    preds: dict[str, np.ndarray] = {}
    bands: dict[str, pio.PredictionIntervals] = {}
    for m in metrics:
        try:
            model = PS.default_predictor(space, m, cache_dir=cache)
        except NotFoundError:
            if metric != "all":
                raise
            continue  # e.g. no energy table for this space
        level = interval if interval else 0.8
        store = None
        if device not in model.devices:
            from hilnas.pipeline.store import MeasurementStore, StoreNotFoundError

            try:
                store = MeasurementStore(db, read_only=True)
            except StoreNotFoundError:
                raise NotFoundError(
                    f"{device!r} is not a {space} reference device ({', '.join(model.devices)}) "
                    f"and there is no store yet; import it with `hilnas devices import "
                    f"{device} --space {space} --csv FILE` or profile it"
                ) from None
        try:
            learner = learning_predictor_for(space, device, m, model, store, level=level)
        except NotFoundError:
            if metric != "all" or m == "latency_ms":
                raise
            continue  # the device has no energy measurements of its references
        finally:
            if store is not None:
                store.close()
        preds[m], band = pio.PredictionIntervals.from_learner(learner, codes, level)
        if interval:
            bands[m] = band
    if not preds:
        raise NotFoundError(f"no {space} predictor for {metric}")
    _write_predictions(out, codes, preds, device, space, intervals=bands)


def _write_predictions(
    out: Path | None,
    codes: Any,
    preds: dict[str, Any],
    device: str,
    space: str = "nb201",
    intervals: dict[str, Any] | None = None,
) -> None:
    """The predictions as CSV (to ``out`` or standard output) and one summary line."""
    from hilnas.pipeline.predictors import io as pio

    text = pio.write_predictions_csv(out, codes, preds, space, intervals=intervals)
    if text is not None:
        sys.stdout.write(text)
    what = "architectures" if space == "nb201" else f"{space} architectures"
    where = f" to {out}" if out else ""
    band = ""
    if intervals:
        first = next(iter(intervals.values()))
        band = (
            f", with {100 * first.level:g}% intervals ("
            + "; ".join(
                f"{m}: residual model {b.kind}, {b.n_extra} measurements beyond the references"
                + (f", {b.imputed} reference(s) imputed" if b.imputed else "")
                for m, b in intervals.items()
            )
            + ")"
        )
    cli_common.err_console.print(
        f"predicted {', '.join(preds)} of {len(codes)} {what} for {device!r}{where}{band}",
        markup=False,
        highlight=False,
    )


def _lazy_store(db: str | None, device: str):
    """The store, unless the target is a reference device and no store was asked for."""
    from hilnas.pipeline.predictors import reference_targets

    if db is None and any(device in reference_targets(m) for m in ("latency_ms", "energy_mj")):
        return None
    from hilnas.pipeline.store import StoreNotFoundError

    try:
        return _open_store(db, read_only=True)
    except StoreNotFoundError:
        if db is not None:
            raise
        return None  # no store yet: only the reference devices are known (the error says so)


# ----------------------------------------------------------------------------------------------
# hilnas fit
# ----------------------------------------------------------------------------------------------
def fit_command(
    device: list[str] = typer.Option(
        [],
        "--device",
        "-d",
        help="Only these targets (repeatable; default: every target in the store).",
    ),
    meta: bool = typer.Option(
        False,
        "--meta",
        help="Also retrain the meta-predictor from the reference data plus the store.",
    ),
    meta_devices: str = typer.Option(
        "all",
        "--meta-devices",
        help="Reference devices for --meta: all (27) or modnas (the 13 MODNAS training devices).",
    ),
    folds: int = typer.Option(5, "--folds", help="Cross-validation folds."),
    seed: int = typer.Option(0, "--seed", help="Seed of the folds and the meta-predictor."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """Refit per-device models (cross-validated) for targets with enough measurements of their
    own, and with --meta the meta-predictor, from what the store holds."""
    from hilnas.pipeline.predictors import device as PD

    check_number("--folds", folds, low=2, high=MAX_FOLDS, fix=f"use --folds from 2 to {MAX_FOLDS}")
    check_number("--seed", seed, low=0, high=2**32 - 1)
    if meta_devices not in ("all", "modnas"):
        raise InvalidInputError(f"--meta-devices must be all or modnas, got {meta_devices!r}")
    from hilnas.pipeline import refdata

    lat = (
        refdata.load_nb201().latency_devices
        if meta_devices == "all"
        else refdata.MODNAS_TRAIN_DEVICES
    )
    store = _open_store(db)
    try:
        fit = PD.fit_store_targets(
            store,
            devices=list(device) or None,
            meta=meta,
            meta_latency_devices=lat,
            folds=folds,
            seed=seed,
        )
    finally:
        store.close()
    report: dict[str, Any] = {"devices": fit.devices, "meta": "refit" if meta else None}
    if meta:
        report["meta_models"] = [
            {"metric": m, "path": r["path"], "targets": r["targets"]}
            for m, r in fit.meta.items()
            if r["status"] == "refit"
        ]
    if as_json:
        typer.echo(json.dumps(report, indent=2, default=str))
        return
    table = Table(
        title="per-device models (k-fold CV over non-reference measurements)", title_justify="left"
    )
    for col in ("target", "metric", "n", "status", "model", "spearman", "kendall", "within ±10%"):
        table.add_column(col, overflow="fold")
    for r in report["devices"]:
        cv = r.get("cv", {}).get(r.get("chosen", ""), {})
        table.add_row(
            r["target"],
            r["metric"],
            str(r.get("n", "-")),
            r["status"],
            r.get("chosen", "-"),
            f"{cv['spearman']:.3f}" if cv else "-",
            f"{cv['kendall']:.3f}" if cv else "-",
            f"{100 * cv['within10']:.1f}%" if cv else "-",
        )
    cli_common.console.print(table)
    for r in report["devices"]:
        if r["status"] == "skipped":
            cli_common.err_console.print(f"{r['target']} ({r['metric']}): {r['reason']}")
        if r.get("flagged"):
            f = r["flagged"]
            what = (
                f"{f['kept']} flagged measurements kept (most of its rows are flagged)"
                if f["kept"]
                else f"{f['left_out']} flagged measurement(s) left out of the fit"
            )
            cli_common.err_console.print(
                f"{r['target']} ({r['metric']}): {what}; re-measure them with `hilnas profile "
                "--retry-flagged` on a quiet machine",
                highlight=False,
            )
    for m in report.get("meta_models", []):
        cli_common.console.print(
            f"meta-predictor {m['metric']} refit on {len(m['targets'])} targets -> {m['path']}"
        )
    if not report["devices"] and not meta:
        cli_common.err_console.print(
            "the store holds no targets yet; profile a device or import one"
        )


def register(app: typer.Typer) -> None:
    app.command("predict")(predict_command)
    app.command("fit")(fit_command)
    try:
        from hilnas.flows.cli_devices import devices_app
    except ModuleNotFoundError:  # pragma: no cover - devices CLI not built
        return
    # our validating import replaces a plain one registered by cli_devices
    devices_app.registered_commands[:] = [
        c
        for c in devices_app.registered_commands
        if (c.name or getattr(c.callback, "__name__", "")) != "import"
    ]
    devices_app.command("import")(import_device_command)
