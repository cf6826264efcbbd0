"""``hilnas profile`` and ``hilnas measurements``: measure a local device, inspect and export."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import typer
from hilnas.devices.errors import check_number
from hilnas.flows import cli_common
from hilnas.flows.cli_devices import DB_OPTION_HELP, open_store
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

#: Bounds of the model-size options of ``hilnas profile`` (NB201's default is C16, N5).
MAX_CHANNELS = 512
MAX_CELLS = 32

measurements_app = typer.Typer(
    name="measurements",
    help="Stored measurements: list them, export a device's table as CSV.",
    no_args_is_help=True,
)

#: Columns of ``hilnas measurements export`` (the first three are the external-device format).
CSV_COLUMNS = (
    "arch",
    "latency_ms",
    "energy_mj",
    "energy_method",
    "energy_reason",
    "energy_mj_estimate",
    "status",
    "error",
    "latency_ms_p90",
    "latency_ms_iqr",
    "latency_ms_cv",
    "latency_ms_mean",
    "latency_ms_min",
    "peak_memory_mb",
    "memory_method",
    "quality",
    "quality_reason",
    "load_1m",
    "other_cpu_cores",
    "sentinel_drift",
    "arch_index",
    "space",
    "model_config_key",
    "opset",
    "device_id",
    "device_fingerprint",
    "config_key",
    "execution_provider",
    "threads",
    "batch_size",
    "warmup",
    "repetitions",
    "onnxruntime_version",
    "onnx_sha256",
    "exporter",
    "host",
    "hilnas_version",
    "started_at",
    "created_at",
)


def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


# ----------------------------------------------------------------------------------------------
# hilnas profile
# ----------------------------------------------------------------------------------------------
#: Friendly options of ``hilnas profile`` and the configuration field each one sets; an option
#: is accepted only for a space whose configuration has that field.
CONFIG_ALIASES: dict[str, str] = {
    "--channels": "channels",
    "--cells": "cells_per_stage",
    "--phase": "phase",
    "--seq-len": "seq_len",
    "--vocab": "vocab_size",
    "--context": "context_length",
}


def _workload_settings(
    sp: Any, aliases: dict[str, object | None], config_set: list[str]
) -> dict[str, object]:
    """Configuration fields from the friendly options and ``--config-set KEY=VALUE``.

    Refuses (one line, exit 2) an option of another space, a malformed or repeated KEY=VALUE,
    and NB201's model sizes beyond their bounds.
    """
    from hilnas.pipeline.profiling import config_fields

    fields = config_fields(sp)
    own = [opt for opt, name in CONFIG_ALIASES.items() if name in fields]
    menu = (
        f"{', '.join(own) + ', or ' if own else ''}--config-set KEY=VALUE with KEY one of "
        f"{', '.join(fields)}"
    )
    out: dict[str, object] = {}
    for opt, value in aliases.items():
        if value is None:
            continue
        if CONFIG_ALIASES[opt] not in fields:
            raise cli_common.UserError(
                f"{opt} is not an option of the space {sp.name}; its workload options: {menu}"
            )
        out[CONFIG_ALIASES[opt]] = value
    for item in config_set:
        key, eq, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or not key:
            raise cli_common.UserError(
                f"--config-set {item!r} is not KEY=VALUE; e.g. --config-set "
                f"{next(iter(fields))}=VALUE (KEY one of {', '.join(fields)})"
            )
        if key not in fields:
            raise cli_common.UserError(
                f"{key} is not a setting of the space {sp.name}; its workload options: {menu}"
            )
        if key in out:
            raise cli_common.UserError(
                f"{key} is given twice (an option and --config-set, or two --config-set); "
                "give it once"
            )
        out[key] = value
    bounds = {"channels": ("--channels", MAX_CHANNELS), "cells_per_stage": ("--cells", MAX_CELLS)}
    base = sp.default_model_config()
    for key, (opt, most) in bounds.items():
        if key in out and key in fields:
            value = out[key]
            if isinstance(value, str):
                value = value.strip()
                value = int(value) if value.lstrip("-").isdigit() else value
            out[key] = check_number(
                opt,
                value,
                low=1,
                high=most,
                fix=f"use {opt} from 1 to {most} (the space's default is {getattr(base, key)})",
            )
    return out


def profile_command(
    device: str = typer.Option(
        ..., "--device", "-d", help="Local device id or alias (see `hilnas devices list`)."
    ),
    archs: int | None = typer.Option(
        None,
        "--archs",
        help="Architectures sampled besides the 10 reference ones (default 50; gpt_s: 20).",
    ),
    reps: int | None = typer.Option(
        None, "--reps", help="Timed repetitions per architecture (default 30; gpt_s: 20)."
    ),
    warmup: int | None = typer.Option(
        None, "--warmup", help="Untimed warm-up runs per architecture (default 5; gpt_s: 3)."
    ),
    space: str = typer.Option("nb201", "--space", help="Search space."),
    seed: int = typer.Option(0, "--seed", help="Seed of the architecture sample."),
    strategy: str | None = typer.Option(
        None,
        "--strategy",
        help="How the sampled architectures are chosen: active (where a learning predictor fit "
        "on the stored measurements is least sure, spread over the space; --archs counts the "
        "non-reference ones already stored) or random (a seeded uniform sample). Default: "
        "active for nb201 once the device's 10 references are stored, else random.",
    ),
    threads: int = typer.Option(
        1, "--threads", help="ONNX Runtime intra-op threads (0 = runtime default)."
    ),
    batch_size: int = typer.Option(1, "--batch-size", help="Batch size of the measured models."),
    arch: list[str] = typer.Option(
        [], "--arch", help="Also measure this architecture (string or index; repeatable)."
    ),
    force: bool = typer.Option(
        False, "--force", help="Measure again even what is stored (replaces rows)."
    ),
    retry_failed: bool = typer.Option(
        False, "--retry-failed", help="Measure again architectures stored as failed."
    ),
    retry_flagged: bool = typer.Option(
        False,
        "--retry-flagged",
        help="Measure again ok measurements flagged noisy or interfered (the better one is "
        "kept); run it when the machine is quiet.",
    ),
    channels: int | None = typer.Option(
        None, "--channels", help="nb201: model width C (default: the space's)."
    ),
    cells: int | None = typer.Option(
        None, "--cells", help="nb201: cells per stage N (default: the space's)."
    ),
    phase: str | None = typer.Option(
        None,
        "--phase",
        help="gpt_s: prefill (the whole prompt), decode (one token against a cache of "
        "--seq-len tokens) or both (the default: two rows per architecture).",
    ),
    seq_len: int | None = typer.Option(
        None, "--seq-len", help="gpt_s: prompt length, or cache length of a decode (default 128)."
    ),
    vocab: int | None = typer.Option(
        None, "--vocab", help="gpt_s: vocabulary size (default GPT-2's 50257)."
    ),
    context: int | None = typer.Option(
        None, "--context", help="gpt_s: context length of the model (default 1024)."
    ),
    config_set: list[str] = typer.Option(
        [],
        "--config-set",
        help="Set any field of the space's model configuration, KEY=VALUE (repeatable; an "
        "unknown KEY is refused with the space's list; e.g. all_logits=true for gpt_s, "
        "width_mult=1.0 for ofa_mbv3, input_size=64 for nb201).",
    ),
    timeout: float = typer.Option(
        120.0, "--timeout", help="Seconds one model may take before it counts as hung."
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print the report as JSON instead of tables (a list of reports when several "
        "workloads are measured, e.g. gpt_s's two phases).",
    ),
    db: str | None = typer.Option(None, "--db", help=DB_OPTION_HELP),
) -> None:
    """Measure the 10 reference architectures plus --archs sampled ones on a local device.

    --strategy active (the nb201 default once the device's references are stored) chooses the
    sampled ones where a learning predictor fit on the stored measurements is least sure,
    spread over the space; --archs then counts the non-reference architectures already
    stored with these settings, so raise it by N to measure N more.

    Resumable: what is already stored is skipped, so rerun the same command after an
    interruption. The workload options (--channels/--cells for nb201, --phase, --seq-len,
    --vocab, --context for gpt_s, --config-set for any field) are part of every measurement's
    key: gpt_s's prefill and decode of one architecture are two rows. By default gpt_s is
    measured in both phases. The summary reports the ONNX disk use per subnet; the cache is
    bounded by HILNAS_ONNX_CACHE_MB (default 4096; least recently used entries are evicted).
    """
    from hilnas.pipeline.profiling import STRATEGIES, ProfileRequest, profile_request
    from hilnas.pipeline.spaces import get_space

    if strategy is not None and strategy not in STRATEGIES:
        raise cli_common.UserError(
            f"--strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}"
        )

    # every bound (reps, warm-up, timeout, threads, batch size, archs) and the workload are
    # checked by the request before a worker starts or the store is opened
    include: list[str | int] = [int(a) if a.strip().isdigit() else a for a in arch]
    sp = get_space(space)
    settings = _workload_settings(
        sp,
        {
            "--channels": channels,
            "--cells": cells,
            "--phase": phase,
            "--seq-len": seq_len,
            "--vocab": vocab,
            "--context": context,
        },
        config_set,
    )
    request = ProfileRequest(
        device=device,
        space=space,
        archs=archs,
        reps=reps,
        warmup=warmup,
        seed=seed,
        threads=threads,
        batch_size=batch_size,
        force=force,
        retry_failed=retry_failed,
        retry_flagged=retry_flagged,
        include=tuple(include),
        settings=settings,
        timeout_s=timeout,
        strategy=strategy,
    )
    labelled = request.labelled  # the space's default alone is just "measuring"
    progress = _ProgressBar(enabled=not as_json)

    def on_workload(cfg: Any) -> None:
        progress.label = f"measuring {cfg.key()}" if labelled else "measuring"

    try:
        with progress:
            # the store is opened by profile_request once every input has been validated
            reports = profile_request(request, store=db, progress=progress, on_workload=on_workload)
    except KeyboardInterrupt:
        raise cli_common.Interrupted(progress.interrupted_message()) from None
    if as_json:
        payload = [r.to_dict() for r in reports]
        typer.echo(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2, default=str))
    else:
        for report in reports:
            print_report(report)
    failed = kept = 0
    for report in reports:
        stored_failed = sum(
            1 for r in report.rows if r.outcome == "failed" and r.status is not None
        )
        unstored = report.failed - stored_failed
        where = f" ({report.model_config_key})" if len(reports) > 1 else ""
        if report.kept:
            cli_common.err_console.print(
                f"{report.kept} re-measurement(s) failed{where}; the earlier ok measurements "
                "were kept (the failed attempts are recorded beside them)",
                markup=False,
                highlight=False,
            )
        if stored_failed:
            cli_common.err_console.print(
                f"{stored_failed} architecture(s) failed{where} (see the table); failed "
                "measurements are stored and not retried unless you pass --retry-failed",
                markup=False,
                highlight=False,
            )
        if unstored:
            cli_common.err_console.print(
                f"{unstored} architecture(s) could not be exported{where} (see the table); "
                "nothing was stored for them, the next run tries them again",
                markup=False,
                highlight=False,
            )
        failed += report.failed
        kept += report.kept
    if failed or kept:
        raise typer.Exit(code=1)


class _ProgressBar:
    """The ``progress`` callback of :func:`profile_device` drawn as a rich progress bar."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.bar = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=cli_common.err_console,
            disable=not enabled,
        )
        self.task: Any = None
        self.started = False
        self.already = 0  # already stored when the run began (summed over workloads)
        self.new = 0  # stored by this run (ok or failed)
        self.label = "measuring"  # the task's description (the workload, when several)

    def interrupted_message(self) -> str:
        """What Ctrl-C leaves behind: every finished measurement is committed."""
        kept = self.already + self.new
        if kept == 0:
            return (
                "interrupted before any measurement was stored; rerun the same command to "
                "start again"
            )
        return (
            f"interrupted: kept {kept} measurement(s) in the store ({self.new} new in this "
            f"run, {self.already} from earlier runs); rerun the same command to resume"
        )

    def __enter__(self) -> _ProgressBar:
        # the live display starts with the plan, so that an error raised while the inputs are
        # checked is printed alone, as one line
        self.started = False
        return self

    def __exit__(self, *exc: object) -> None:
        if self.started:
            self.bar.stop()

    def __call__(self, event: Any) -> None:
        if event.kind == "wait":
            self.bar.console.print(f"[yellow]{event.message}[/]")
        elif event.kind == "plan":
            self.already += event.skipped
            if not self.started:
                self.bar.start()
                self.started = True
            if event.skipped:
                self.bar.console.print(
                    f"{event.skipped} architecture(s) already stored; measuring {event.total}"
                )
            self.task = self.bar.add_task(self.label, total=event.total, status="")
        elif event.kind == "start" and self.task is not None:
            self.bar.update(self.task, status=f"#{event.done + 1}")
        elif event.kind == "done" and self.task is not None:
            row = event.row
            if row is not None and row.outcome == "kept":
                self.already += 1  # the earlier ok row stays
            elif row is not None and row.outcome in ("measured", "failed"):
                if row.status is not None:  # an export failure stores nothing
                    self.new += 1
            note = (
                ""
                if row is None
                else (f"{row.latency_ms_median:.3f} ms" if row.latency_ms_median else row.outcome)
            )
            self.bar.update(self.task, advance=1, status=note)


def print_report(report: Any) -> None:
    console = cli_common.console
    table = Table(
        title=f"{report.config_key}  ({report.space}, {report.model_config_key}, "
        f"warm-up {report.warmup}, {report.repetitions} reps, "
        f"{getattr(report, 'strategy', 'random')} sample)",
        title_justify="left",
    )
    for col, justify in (
        ("#", "right"),
        ("index", "right"),
        ("ref", "center"),
        ("outcome", "left"),
        ("median ms", "right"),
        ("p90 ms", "right"),
        ("CV %", "right"),
        ("quality", "left"),
        ("energy mJ", "right"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for i, r in enumerate(report.rows, start=1):
        energy = _fmt(r.energy_mj) if r.energy_mj is not None else "unknown"
        if r.energy_method == "estimate_power_x_time" and r.energy_mj is not None:
            energy = f"~{_fmt(r.energy_mj)} (est.)"
        outcome = (
            r.outcome if r.status != "failed" or r.outcome == "failed" else f"{r.outcome} (failed)"
        )
        if r.status is None and r.error:
            outcome = "failed"
        table.add_row(
            str(i),
            "-" if r.arch_index is None else str(r.arch_index),
            "*" if r.reference else "",
            outcome,
            _fmt(r.latency_ms_median),
            _fmt(r.latency_ms_p90),
            _fmt(None if r.latency_ms_cv is None else 100 * r.latency_ms_cv, ".1f"),
            _quality_cell(r),
            energy if r.status == "ok" else "-",
        )
    console.print(table)

    stats = report.latency_stats()
    summary = Table(title="summary", title_justify="left", show_header=False)
    summary.add_column("what")
    summary.add_column("value", overflow="fold")
    summary.add_row("device", escape(f"{report.device_id} ({report.device_name})"))
    summary.add_row("store", report.store_url)
    summary.add_row(
        "architectures",
        f"{report.planned} planned: {report.measured} measured now, {report.skipped} already "
        f"stored, {report.failed} failed"
        + (f", {report.kept} re-measured but failed (earlier ok rows kept)" if report.kept else "")
        + f"; {report.stored_ok} ok in the store",
    )
    summary.add_row(
        "latency (median over archs)",
        f"{_fmt(stats['median_of_medians_ms'])} ms (range {_fmt(stats['min_median_ms'])} - "
        f"{_fmt(stats['max_median_ms'])} ms); median p90 {_fmt(stats['median_p90_ms'])} ms",
    )
    summary.add_row(
        "stability (CV)",
        f"median {_pct(stats['median_cv'])} %, max {_pct(stats['max_cv'])} %",
    )
    summary.add_row("quality", escape(report.quality_summary()))
    reasons = report.flag_reasons()
    if reasons:
        summary.add_row(
            "flagged because",
            escape(", ".join(f"{k}: {n}" for k, n in sorted(reasons.items()))),
        )
        summary.add_row(
            "",
            "flagged rows are kept with their flag and left out of predictor fits (the "
            "Python API's include_flagged=True uses them); `hilnas measurements export` shows "
            "the reasons; `hilnas profile --retry-flagged` re-measures them when the machine is "
            "quiet",
        )
    summary.add_row("energy", report.energy_status)
    if report.onnx_cache_bytes is not None:
        per = report.onnx_mb_per_subnet
        bound = report.onnx_cache_bound_bytes
        summary.add_row(
            "onnx disk",
            f"{_fmt(per, '.2f')} MB per subnet (model + sidecar); cache "
            f"{report.onnx_cache_bytes / 2**20:.1f} MB"
            + (f" of a {bound / 2**20:.0f} MB bound (HILNAS_ONNX_CACHE_MB)" if bound else ""),
        )
    summary.add_row(
        "time",
        f"wall {report.wall_s:.1f} s = export {report.export_s:.1f} s + sessions "
        f"{report.session_create_s:.1f} s + timed runs {report.timed_s:.1f} s + rest",
    )
    errors = sorted({r.error.strip() for r in report.rows if r.error})
    for e in errors[:5]:
        summary.add_row("error", escape(e))
    console.print(summary)


def _quality_cell(r: Any) -> str:
    """``ok``, ``noisy``/``interfered`` (``*`` when re-measured), ``-`` when not assessed."""
    q = getattr(r, "quality", None)
    if q is None:
        return "-"
    return q + ("*" if getattr(r, "remeasured", False) else "")


# ----------------------------------------------------------------------------------------------
# hilnas measurements
# ----------------------------------------------------------------------------------------------
def _resolve_device_filter(store: Any, name: str) -> tuple[str, str]:
    """``("config", key)``, ``("device", id)`` or ``("external", name)`` for --device."""
    if name in store.config_keys(ok_only=False):
        return "config", name
    stored = {d.id: d for d in store.devices()}
    externals = {e.name for e in store.external_devices()}
    if name in externals:
        return "external", name
    if name in stored:
        return "device", name
    try:  # a local alias such as `cpu` or `gpu0`
        from hilnas.devices import get_device

        local = get_device(name)
        if local.id in stored:
            return "device", local.id
    except Exception:  # noqa: BLE001 - discovery problems only mean "not a local alias"
        pass
    known = sorted(stored)
    raise cli_common.UserError(
        f"no measurements of device {name!r} in the store {store.url}; stored devices: "
        f"{', '.join(known) if known else 'none yet'}. Measure it first with "
        f"`hilnas profile --device {name}` (or see `hilnas measurements list`)"
    )


def _csv_rows(
    store: Any, kind: str, value: str, space: str, include_failed: bool
) -> list[dict[str, Any]]:
    if kind == "external":
        return [
            {
                "arch": a,
                "latency_ms": lat,
                "energy_mj": en,
                "energy_method": "imported" if en is not None else "unknown",
                "status": "ok",
                "space": space,
                "device_id": value,
                "config_key": value,
            }
            for a, lat, en in store.external_measurements(value, space)
        ]
    records = store.measurements(
        device_id=value if kind == "device" else None,
        config_key=value if kind == "config" else None,
        space=space,
        status=None if include_failed else "ok",
    )
    out = []
    for rec in records:
        d = rec.to_dict()
        m = rec.measurement
        estimate = m.energy_method.value == "estimate_power_x_time"
        d.update(
            latency_ms=m.latency_ms_median,
            energy_mj=None if (estimate or m.energy_method.value == "unknown") else m.energy_mj,
            energy_mj_estimate=m.energy_mj if estimate else None,
        )
        out.append(d)
    return out


@measurements_app.command("export")
def export_command(
    device: str = typer.Option(
        ...,
        "--device",
        "-d",
        help="Device id or alias, configuration key, or external device name.",
    ),
    csv_path: str = typer.Option(..., "--csv", help="Output CSV file ('-' for standard output)."),
    space: str = typer.Option("nb201", "--space", help="Search space."),
    include_failed: bool = typer.Option(
        False, "--include-failed", help="Also write failed measurements (empty latency)."
    ),
    db: str | None = typer.Option(None, "--db", help=DB_OPTION_HELP),
) -> None:
    """Write a device's measurements as CSV: arch, latency_ms (median), energy_mj (empty when
    unknown; estimates go to energy_mj_estimate), energy_method, then provenance columns."""
    from hilnas.pipeline.store import StoreNotFoundError, default_url, redact

    try:
        with open_store(db, read_only=True) as store:
            kind, value = _resolve_device_filter(store, device)
            rows = _csv_rows(store, kind, value, space, include_failed)
    except StoreNotFoundError as exc:
        where = redact(db or default_url(create=False))
        raise StoreNotFoundError(
            f"no measurements of {device!r} to export: there is no store at {where} yet; "
            f"measure it with `hilnas profile --device {device}`"
        ) from exc
    if not rows:
        raise cli_common.UserError(
            f"no {space} measurements of {device!r} to export; measure it with "
            f"`hilnas profile --device {device}`"
        )
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in CSV_COLUMNS})
    if csv_path == "-":
        typer.echo(buf.getvalue(), nl=False)
        return
    path = Path(csv_path).expanduser()
    if path.is_dir():
        raise cli_common.UserError(f"--csv {path} is a directory; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", newline="") as fh:
            fh.write(buf.getvalue())
        os.replace(tmp, path)
    except OSError as exc:
        raise cli_common.UserError(
            f"cannot write {path} ({exc.strerror or exc}); choose a writable location"
        ) from exc
    cli_common.err_console.print(f"wrote {len(rows)} rows to {path}")


@measurements_app.command("list")
def list_command(
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
    db: str | None = typer.Option(None, "--db", help=DB_OPTION_HELP),
) -> None:
    """Measured device configurations and external devices, with counts."""
    from hilnas.pipeline.store import StoreNotFoundError, default_url, redact

    try:
        with open_store(db, read_only=True) as store:
            summaries = store.config_summaries()
            externals = store.external_devices()
            url = store.url
    except StoreNotFoundError:  # no store yet: an empty listing, and nothing is created
        summaries, externals = [], []
        url = redact(db or default_url(create=False))
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "store": url,
                    "configurations": [
                        {
                            **{k: getattr(s, k) for k in s.__dataclass_fields__},
                            "energy_methods": list(s.energy_methods),
                            "last_created_at": s.last_created_at.isoformat()
                            if s.last_created_at
                            else None,
                        }
                        for s in summaries
                    ],
                    "external": [
                        {
                            "name": e.name,
                            "space": e.space,
                            "rows": e.count,
                            "with_energy": e.with_energy,
                            "source": e.source_name,
                            "source_sha256": e.source_sha256,
                            "imported_at": e.imported_at.isoformat() if e.imported_at else None,
                        }
                        for e in externals
                    ],
                },
                indent=2,
            )
        )
        return
    if not summaries and not externals:
        cli_common.console.print(
            f"no measurements in {url} yet; run `hilnas profile --device cpu` to measure this CPU"
        )
        return
    table = Table(title=f"measurements (store: {url})", title_justify="left")
    table.add_column("configuration", no_wrap=True)
    table.add_column("settings", overflow="fold")
    table.add_column("ok", justify="right", no_wrap=True)
    table.add_column("failed", justify="right", no_wrap=True)
    table.add_column("flagged", justify="right", no_wrap=True)
    table.add_column("energy", overflow="fold")
    for s in summaries:
        table.add_row(
            s.config_key,
            f"{s.space} {s.model_config_key} opset {s.opset}, warm-up {s.warmup}, "
            f"{s.repetitions} reps",
            str(s.ok),
            str(s.failed),
            str(s.flagged),
            ", ".join(s.energy_methods) or "-",
        )
    for e in externals:
        table.add_row(
            f"{e.name} (external)",
            f"{e.space}, imported from {e.source_name or '-'}",
            str(e.count),
            "0",
            "-",
            f"{e.with_energy} with energy",
        )
    cli_common.console.print(table)
    if any(s.flagged for s in summaries):
        cli_common.console.print(
            "flagged = ok measurements taken under interference (quality noisy or interfered): "
            "kept, but left out of predictor fits; `hilnas measurements export` shows the "
            "reasons (quality, quality_reason columns)"
        )


def register(app: typer.Typer) -> None:
    app.command("profile")(profile_command)
    app.add_typer(measurements_app, name="measurements")
