"""Helpers shared by the CLI modules: one error style, one console, one place for faults.

The mapping from exceptions to exit codes lives here and in :func:`hilnas.flows.cli.main`:

- :class:`~hilnas.devices.errors.UserError` (any subclass): one line ``error: ...`` naming the
  fix, exit code 2;
- ``KeyboardInterrupt`` (Ctrl-C): one line saying how to resume, exit code 130
  (:class:`Interrupted` carries a command's own account of what was kept);
- anything else is a bug in hilnas: one line naming the exception and a log file holding the
  full traceback (:func:`internal_error`), exit code 1.

Builtin ``ValueError`` / ``LookupError`` are *not* user errors: a library raising one means
hilnas failed to check its input first, and that is reported as the bug it is.
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

from hilnas.devices.errors import InvalidInputError, NotFoundError, UserError
from rich.console import Console
from rich.text import Text

console = Console()
err_console = Console(stderr=True)

#: Exit codes of the command line.
EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1
EXIT_INTERRUPTED = 130

#: An internal error's message is cut to this length on the terminal (the log has all of it).
MAX_MESSAGE_CHARS = 500

INTERRUPTED_MESSAGE = "interrupted; rerun the same command to resume where it stopped"


class Interrupted(Exception):
    """Ctrl-C reached a command; the message says what was kept and how to resume (exit 130).

    ``KeyboardInterrupt`` itself is turned into this by the root command group (typer would
    otherwise swallow it into a silent exit 130); a command may raise it with its own message.
    """

    def __init__(self, message: str = INTERRUPTED_MESSAGE) -> None:
        super().__init__(message)


def one_line(message: str) -> str:
    """``message`` as one line: its non-empty lines joined by ``; `` (errors are one line)."""
    parts = [line.strip() for line in str(message).splitlines() if line.strip()]
    out = ""
    for part in parts:
        out += (" " if out.endswith(":") else "; ") + part if out else part
    return out or "(no message)"


def fail(message: str, code: int = EXIT_USER_ERROR) -> NoReturn:
    """Print ``error: MESSAGE`` as one line on stderr (no markup interpreted) and exit."""
    err_console.print(
        Text.assemble(("error:", "bold red"), " ", one_line(message)),
        highlight=False,
        soft_wrap=True,
    )
    sys.exit(code)


def log_dir() -> Path:
    """Where internal-error logs go: ``$HILNAS_HOME/logs`` when it can be written, else a
    ``hilnas-logs`` folder in the system temp directory (a read-only or archived home)."""
    raw = os.environ.get("HILNAS_HOME")
    home = Path(raw).expanduser() if raw else Path.home() / ".hilnas"
    for folder in (home / "logs", Path(tempfile.gettempdir()) / "hilnas-logs"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
                pass
            return folder
        except OSError:
            continue
    return Path(tempfile.gettempdir())


def write_traceback(exc: BaseException) -> Path | None:
    """Write ``exc``'s full traceback (and the command line) to a new log file; its path, or
    ``None`` when no file could be written anywhere."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    text = f"hilnas internal error at {stamp} UTC\ncommand: {' '.join(sys.argv)}\n\n" + "".join(
        traceback.format_exception(type(exc), exc, exc.__traceback__)
    )
    try:
        fd, name = tempfile.mkstemp(
            dir=log_dir(), prefix=f"internal-error-{stamp}-", suffix=".log", text=True
        )
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        return Path(name)
    except OSError:
        return None


def internal_error(exc: BaseException) -> NoReturn:
    """Report an unexpected exception as the bug it is (exit 1), its traceback in a log file."""
    path = write_traceback(exc)
    where = f"the traceback is in {path}" if path else "no log file could be written"
    msg = one_line(str(exc))
    if len(msg) > MAX_MESSAGE_CHARS:  # the whole message is in the log
        msg = msg[: MAX_MESSAGE_CHARS - 3] + "..."
    err_console.print(
        Text(
            f"internal error (a bug in hilnas): {type(exc).__name__}: {msg}; {where}; "
            "please report it",
            style="red",
        ),
        highlight=False,
        soft_wrap=True,
    )
    sys.exit(EXIT_INTERNAL_ERROR)


def existing_file(path: Path, option: str) -> Path:
    """``path`` if it is an existing file, else :class:`NotFoundError` naming ``option``."""
    if path.is_dir():
        raise NotFoundError(f"{option} {str(path)!r} is a directory; pass a file")
    if not path.is_file():
        raise NotFoundError(f"{option} {str(path)!r} does not exist; pass an existing file")
    return path


def check_output_file(path: Path, option: str) -> Path:
    """``path`` if a file can be written there (not a directory, its folder exists), else
    :class:`InvalidInputError` naming ``option`` and the fix; writes nothing."""
    if path.is_dir():
        raise InvalidInputError(f"{option} {str(path)!r} is a directory; pass a file name")
    if not path.parent.is_dir():
        raise InvalidInputError(
            f"{option} {str(path)!r}: its folder {str(path.parent)!r} does not exist; create it "
            "or pass a path in an existing folder"
        )
    return path


def check_output_dir(path: Path, option: str) -> Path:
    """``path`` if it is a directory or can become one (nothing but directories on the way),
    else :class:`InvalidInputError` naming ``option`` and the fix; creates nothing."""
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                what = "is" if p == path else f"is inside {str(p)!r}, which is"
                raise InvalidInputError(
                    f"{option} {str(path)!r} {what} a file, not a directory; pass a directory "
                    "(it is created if missing)"
                )
            break
    return path


__all__ = [
    "check_output_dir",
    "check_output_file",
    "EXIT_INTERNAL_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_USER_ERROR",
    "Interrupted",
    "UserError",
    "console",
    "err_console",
    "existing_file",
    "fail",
    "internal_error",
    "log_dir",
    "one_line",
    "write_traceback",
]


@contextmanager
def stage_progress(transient: bool) -> Iterator[Callable[..., None]]:
    """A progress display on stderr with one bar per stage; yields
    ``update(stage, done, total, note="")`` (a search's progress callback)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=transient,
    ) as bar:
        tasks: dict[str, object] = {}

        def update(stage: str, done: int, total: int, note: str = "") -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total, note="")
            bar.update(tasks[stage], completed=done, total=total, note=note)  # type: ignore[arg-type]

        yield update


def train_search(
    train: Callable[[Callable[..., None]], Path],
    store,
    describe: Callable[[Path], dict],
    as_json: bool,
    saved_line: Callable[[dict, Path], str],
) -> None:
    """Run ``train(update)`` (a search; ``update`` is its stage-progress callback), close
    ``store`` whatever happens, then print the saved search's ``describe(path)`` as JSON or
    ``saved_line(summary, path)``. One path for ``hilnas search`` in every space."""
    import json

    import typer

    try:
        with stage_progress(as_json) as update:
            path = train(update)
    finally:
        if store is not None:
            store.close()
    summary = describe(path)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    console.print(saved_line(summary, path))


def print_interval_notes(note: dict[str, Any]) -> None:
    """One line per hardware objective of a front's interval note
    (:func:`hilnas.pipeline.fronts.front_with_intervals`): level, model, measurements, imputed
    references and the selection widening."""
    for m, n in note.items():
        widening = n.get("selection_widening", 1.0)
        console.print(
            f"[{m}]: {100 * n['level']:g} % prediction intervals of the {m} predictor "
            f"({n['model']} on {n['measured']} measurements beyond the references"
            + (f"; {n['imputed']} imputed references" if n.get("imputed") else "")
            + (f"; widened x{widening:g} in log for a front's selection" if widening != 1 else "")
            + ")",
            highlight=False,
        )
