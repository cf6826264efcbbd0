"""The ``hilnas`` command line.

Each area registers its commands from its own module (``flows/cli_*.py``) so that the heavy
libraries (torch, prefect) are imported only by the commands that need them; ``hilnas devices``
runs on an agent without torch.
"""

from __future__ import annotations

import logging
import sys

import typer
from hilnas.flows import cli_common

app = typer.Typer(
    name="hilnas",
    help="Hardware-in-the-loop multi-objective NAS: profile devices, fit predictors, search once.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at DEBUG level."),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


def _register_all() -> None:
    import importlib

    for name in ("cli_devices", "cli_profile", "cli_predict", "cli_search", "cli_run", "cli_agent"):
        try:
            module = importlib.import_module(f"hilnas.flows.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"hilnas.flows.{name}":
                continue  # that area is not built yet
            raise
        module.register(app)


_register_all()


def main() -> None:
    """Console-script entry point: clean one-line errors, non-zero exit codes."""
    try:
        app()
    except cli_common.UserError as exc:
        cli_common.fail(str(exc))
    except KeyboardInterrupt:
        cli_common.fail("interrupted; rerun the same command to resume", code=130)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
