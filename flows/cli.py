"""The ``hilnas`` command line.

Each area registers its commands from its own module (``flows/cli_*.py``) so that the heavy
libraries (torch, prefect) are imported only by the commands that need them; ``hilnas devices``
runs on an agent without torch.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import click
import typer
from hilnas.flows import cli_common
from typer.core import TyperGroup


class _RootGroup(TyperGroup):
    """The root command group: Ctrl-C inside a command becomes :class:`cli_common.Interrupted`.

    typer turns a ``KeyboardInterrupt`` into a silent exit 130; raising our own exception past
    it lets :func:`main` say what happened and how to resume.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise cli_common.Interrupted() from None


app = typer.Typer(
    name="hilnas",
    cls=_RootGroup,
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

    for name in (
        "cli_devices",
        "cli_profile",
        "cli_predict",
        "cli_search",
        "cli_run",
        "cli_agent",
        "cli_space",
    ):
        try:
            module = importlib.import_module(f"hilnas.flows.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"hilnas.flows.{name}":
                continue  # that area is not built yet
            raise
        module.register(app)


_register_all()


def main() -> None:
    """Console-script entry point: the one place where exceptions become exit codes.

    A :class:`~hilnas.devices.errors.UserError` is one line ``error: ...`` and exit code 2;
    Ctrl-C is one line and exit code 130; click's usage errors keep their own message and exit
    code 2; anything else is a bug in hilnas: one line naming the log file that holds its
    traceback, exit code 1 (see :mod:`hilnas.flows.cli_common`).
    """
    try:
        app()
    except cli_common.UserError as exc:
        cli_common.fail(str(exc))
    except (cli_common.Interrupted, KeyboardInterrupt) as exc:
        message = str(exc) if isinstance(exc, cli_common.Interrupted) else ""
        cli_common.fail(message or cli_common.INTERRUPTED_MESSAGE, code=cli_common.EXIT_INTERRUPTED)
    except Exception as exc:
        cli_common.internal_error(exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
