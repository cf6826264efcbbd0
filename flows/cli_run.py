"""`hilnas run`: the main job in one command (Prefect's embedded API, SQLite store)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from hilnas.flows.cli_common import UserError, console
from rich.table import Table

RUN_HELP = (
    "Run the whole pipeline on this machine: profile the local devices (10 reference "
    "architectures + a sample), fit the predictors, train the hypernetwork, and write every "
    "known device's Pareto front (JSON, PNG, ONNX of the chosen subnets) into a run directory "
    "(default ./runs/<UTC timestamp>). Rerunning reuses what the store holds. Every flag can "
    "also be set in a TOML file given with --config (keys as the flags, with underscores)."
)


def register(app: typer.Typer) -> None:
    @app.command("run", help=RUN_HELP)
    def run(
        config: Path | None = typer.Option(
            None, "--config", "-c", help="TOML file with any of the settings below."
        ),
        devices: str | None = typer.Option(
            None,
            "--devices",
            help="Local devices to profile, comma-separated ids or aliases "
            "(default: all discovered).",
        ),
        archs: int | None = typer.Option(
            None, "--archs", help="Sampled architectures per device (default: 50)."
        ),
        reps: int | None = typer.Option(
            None, "--reps", help="Timed repetitions per model (default: 30)."
        ),
        warmup: int | None = typer.Option(
            None, "--warmup", help="Warm-up runs per model (default: 5)."
        ),
        threads: int | None = typer.Option(
            None, "--threads", help="ONNX Runtime threads (default: 1)."
        ),
        batch_size: int | None = typer.Option(
            None, "--batch-size", help="Batch size (default: 1)."
        ),
        seed: int | None = typer.Option(None, "--seed", help="Seed (default: 0)."),
        mode: str | None = typer.Option(
            None,
            "--mode",
            help="Search mode: supernet (on digits) or surrogate (default: supernet).",
        ),
        objectives: str | None = typer.Option(
            None, "--objectives", help="Comma-separated: error,latency_ms[,energy_mj]."
        ),
        epochs: int | None = typer.Option(
            None,
            "--epochs",
            help="Search epochs (default: 8 in supernet mode, the search's own in surrogate mode).",
        ),
        points: int | None = typer.Option(
            None, "--points", help="Architectures per front (default: 8)."
        ),
        reference_devices: bool | None = typer.Option(
            None,
            "--reference-devices/--no-reference-devices",
            help="Also write the 27 reference devices' fronts (default: yes).",
        ),
        onnx: bool | None = typer.Option(
            None, "--onnx/--no-onnx", help="Export the chosen subnets to ONNX (default: yes)."
        ),
        run_dir: Path | None = typer.Option(None, "--run-dir", help="Run directory."),
        space: str | None = typer.Option(
            None,
            "--space",
            help="Search space: nb201 (default), ofa_mbv3 or gpt_s (`hilnas space list`); "
            "also the key `space` of --config.",
        ),
        quality: str | None = typer.Option(
            None,
            "--quality",
            help="Spaces other than nb201: surrogate (gpt_s) or supernet (ofa_mbv3, gpt_s).",
        ),
        queries: int | None = typer.Option(
            None, "--queries", help="Spaces other than nb201: quality queries in total [300]."
        ),
        steps: int | None = typer.Option(
            None, "--steps", help="Spaces other than nb201: hypernetwork steps [600]."
        ),
    ) -> None:
        import os

        # Embedded mode (set before Prefect is imported): the temporary server needs no
        # telemetry (its first start on a fresh PREFECT_HOME logs a spurious "database is
        # locked" from that service), and its first start (database migrations) can take longer
        # than Prefect's 20 s on a busy 2-core machine.
        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
        from hilnas.flows.config import ConfigError, read_config_file
        from hilnas.pipeline.spaces import get_space

        file_values: dict[str, Any] = {}
        if config is not None:
            try:
                file_values = read_config_file(config)
            except ConfigError as exc:
                raise UserError(str(exc)) from None
        in_file = file_values.get("space")
        if in_file is not None and not isinstance(in_file, str):
            raise UserError(
                f"bad value for 'space' in config file {str(config)!r}: {in_file!r} is not a "
                'space name; use e.g. space = "gpt_s" (`hilnas space list`)'
            )
        if (
            space is not None
            and in_file is not None
            and get_space(space).name != get_space(in_file).name
        ):
            raise UserError(
                f"--space {space} contradicts space = {in_file!r} in {str(config)!r}; drop one "
                "of the two"
            )
        space = get_space(space or in_file or "nb201").name
        if space != "nb201":
            nb201_only = {
                "--mode": mode is not None,
                "--epochs": epochs is not None,
                "--batch-size": batch_size is not None,
            }
            given = [k for k, v in nb201_only.items() if v]
            if given:
                raise UserError(
                    f"{', '.join(given)} belong(s) to the nb201 main job; for --space {space} "
                    "use --quality, --queries, --steps and the profiling flags"
                )
            flags = {
                "devices": [d.strip() for d in devices.split(",")] if devices else None,
                "archs": archs,
                "reps": reps,
                "warmup": warmup,
                "threads": threads,
                "seed": seed,
                "objectives": objectives,
                "quality": quality,
                "queries": queries,
                "steps": steps,
                "points": points,
                "reference_devices": reference_devices,
                "onnx": onnx,
                "run_dir": str(run_dir) if run_dir else None,
            }
            values = {
                **file_values,
                **{k: v for k, v in flags.items() if v is not None},
                "space": space,
            }
            result = run_space_job(values, config_file=config)
            print_summary(result)
            return
        if quality is not None or queries is not None or steps is not None:
            raise UserError(
                "--quality, --queries and --steps are for spaces other than nb201; the nb201 "
                "main job takes --mode, --epochs and a [search] table in --config"
            )
        from hilnas.flows.config import resolve_config

        overrides: dict[str, Any] = {
            "devices": devices,
            "archs": archs,
            "reps": reps,
            "warmup": warmup,
            "threads": threads,
            "batch_size": batch_size,
            "seed": seed,
            "mode": mode,
            "objectives": objectives,
            "epochs": epochs,
            "points": points,
            "reference_devices": reference_devices,
            "onnx": onnx,
            "run_dir": str(run_dir) if run_dir else None,
        }
        try:
            cfg = resolve_config(config, overrides)
        except ConfigError as exc:
            raise UserError(str(exc)) from None
        result = run_main_job(cfg)
        print_summary(result)


def run_main_job(cfg: Any) -> dict[str, Any]:
    """Run the pipeline flow for a validated RunConfig; translate known faults to UserError."""
    from hilnas.flows.flows import pipeline_flow

    return _run_flow(pipeline_flow, cfg, "hilnas run")


def run_space_job(values: dict[str, Any], config_file: Path | None = None) -> dict[str, Any]:
    """``hilnas run --space S`` (S not nb201): validate, then run the space's flow.

    ``values``: the settings (a ``config_file``'s keys, with the flags over them)."""
    from hilnas.flows.config import describe_errors
    from hilnas.flows.space_flows import SpaceRunConfig, space_pipeline_flow
    from pydantic import ValidationError

    if isinstance(values.get("devices"), str):  # as in the nb201 config: "cpu,gpu0"
        values = {**values, "devices": [d.strip() for d in values["devices"].split(",")]}
    try:
        cfg = SpaceRunConfig.model_validate(values)
    except ValidationError as exc:
        if config_file is not None:
            source = f"config file {str(config_file)!r} (flags over it)"
            raise UserError(describe_errors(exc, source, SpaceRunConfig)) from None
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        raise UserError(
            f"bad value for --{key.replace('_', '-')}: {err['msg']}; got {err.get('input')!r}"
        ) from None
    return _run_flow(space_pipeline_flow, cfg, f"hilnas run --space {cfg.space}")


def _run_flow(flow_fn: Any, cfg: Any, label: str) -> dict[str, Any]:
    """Check the Prefect API, make the run directory, run ``flow_fn`` on ``cfg`` with it."""
    from hilnas.flows import jobs
    from hilnas.flows.server import PrefectSetupError, check_api

    try:
        check_api()
    except PrefectSetupError as exc:
        raise UserError(str(exc)) from None
    try:
        run_dir = jobs.new_run_dir(cfg.run_dir)
    except OSError as exc:
        raise UserError(
            f"cannot create the run directory ({exc}); pass a writable --run-dir"
        ) from None
    console.print(f"[bold]{label}[/]: run directory {run_dir}", highlight=False)
    params = cfg.model_copy(update={"run_dir": run_dir}).model_dump(mode="json")
    try:
        return flow_fn(config=params)
    except Exception as exc:
        if _is_user_fault(exc):
            raise UserError(f"{exc} (run directory: {run_dir})") from None
        raise


def _is_user_fault(exc: Exception) -> bool:
    """A fault the user can fix (a :class:`UserError`: bad input, a missing device, an
    unusable store); anything else raised by the flow is a bug and keeps its type."""
    return isinstance(exc, UserError)


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "-"
    return f"{v:.3g}{unit}" if isinstance(v, float) else str(v)


def print_summary(result: dict[str, Any]) -> None:
    """The closing summary: fronts per device, stage times, and the run directory."""
    table = Table(title="Pareto fronts", show_lines=False)
    table.add_column("device")
    table.add_column("points", justify="right")
    quality = "perplexity" if result.get("space") == "gpt_s" else "error"
    table.add_column(
        "min perplexity" if quality == "perplexity" else "min error %", justify="right"
    )
    table.add_column("min latency ms", justify="right")
    table.add_column("min energy mJ", justify="right")
    table.add_column("ONNX", justify="right")
    table.add_column("front")
    for f in result.get("fronts", []):
        best = f.get("best") or {}
        table.add_row(
            f["target"],
            str(f.get("points", 0)),
            _fmt(best.get(quality)),
            _fmt(best.get("latency_ms")),
            _fmt(best.get("energy_mj")),
            str(f.get("onnx", 0)),
            "[red]" + str(f["error"]) + "[/]"
            if f.get("error")
            else str(Path(f["json"]).parent.name),
        )
    console.print(table)
    for dev, reason in (result.get("failed_devices") or {}).items():
        console.print(f"[yellow]profiling of {dev} failed:[/] {reason}", highlight=False)
    timings = result.get("timings") or {}
    t = Table(title="Wall time (s)")
    for k in timings:
        t.add_column(k.removesuffix("_s"), justify="right")
    t.add_row(*(f"{v:.1f}" for v in timings.values()))
    console.print(t)
    console.print(f"[bold green]run directory:[/] {result.get('run_dir')}", highlight=False)
