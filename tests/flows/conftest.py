"""Fixtures of the flows tests: one Prefect test harness per session, CLI runs."""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory):
    """Prefect's test harness (a temporary database and API), started once per session."""
    home = tmp_path_factory.mktemp("prefect-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREFECT_HOME", str(home))
        mp.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        mp.delenv("PREFECT_API_URL", raising=False)
        from prefect.testing.utilities import prefect_test_harness

        with prefect_test_harness(server_startup_timeout=60):
            yield


@pytest.fixture
def wide_console(monkeypatch):
    """One-line messages stay on one line (rich wraps at the terminal width otherwise); a test
    module opts in with ``pytestmark = pytest.mark.usefixtures("wide_console")``."""
    from hilnas.flows import cli_common

    for console in (cli_common.console, cli_common.err_console):
        monkeypatch.setattr(console, "_width", 300)


def invoke(*args: str):
    """``hilnas ARGS`` in-process through typer's runner (the exception stays on the result)."""
    from hilnas.flows.cli import app
    from typer.testing import CliRunner

    return CliRunner().invoke(app, list(args))


def user_error(result) -> str:
    """The message of the UserError a failed ``invoke`` raised (asserts it was one)."""
    from hilnas.flows.cli_common import UserError

    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, UserError), (result.exception, result.output)
    return str(result.exception)


@pytest.fixture
def hilnas_cli(capsys):
    """``hilnas_cli(args, env=None) -> (exit code, stdout, stderr)``."""
    return lambda args, env=None: run_cli(args, capsys, env)


def run_cli(args: list[str], capsys, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run ``hilnas ARGS`` in-process through the console-script entry point."""
    from hilnas.flows import cli

    old_argv = sys.argv
    old_env = {k: os.environ.get(k) for k in (env or {})}
    sys.argv = ["hilnas", *args]
    os.environ.update(env or {})
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = old_argv
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="session")
def cli_main():
    """``run_cli`` itself, for module-scoped set-up (pass any object with ``readouterr``)."""
    return run_cli


def reference_csv(path: Path, device: str = "raspi4", scale: float = 1.3) -> Path:
    """A device CSV (arch, latency_ms): NB201's 10 reference architectures with ``device``'s
    reference latencies times ``scale`` (an imported device that is not a reference one)."""
    from hilnas.pipeline import refdata
    from hilnas.pipeline.spaces import get_space

    ref = refdata.load_nb201()
    sp = get_space("nb201")
    lat = ref.latency(device)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["arch", "latency_ms"])
        for i in ref.reference_indices:
            w.writerow([sp.format(ref.arch_codes[i]), f"{lat[i] * scale:.6g}"])
    return path
