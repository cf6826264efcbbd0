"""Helpers shared by the CLI modules: one error style, one console."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, NoReturn, TypeVar

from rich.console import Console

console = Console()
err_console = Console(stderr=True)


class UserError(Exception):
    """Bad input from the user: printed as one clear line, exit code 2."""


def fail(message: str, code: int = 2) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    sys.exit(code)


F = TypeVar("F", bound=Callable[..., Any])


def user_errors(func: F) -> F:
    """Decorator for commands: library input errors become one clear line (UserError, exit 2).

    ValueError, LookupError, FileNotFoundError, an unwritable HILNAS_HOME and store errors are
    the library's ways of saying the input was wrong; anything else is a bug and keeps its
    traceback.
    """

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from hilnas.pipeline.home import HomeError

        errors: tuple[type[BaseException], ...] = (
            ValueError,
            LookupError,
            HomeError,
            FileNotFoundError,
        )
        try:
            from hilnas.pipeline.store import StoreError

            errors = (*errors, StoreError)
        except ModuleNotFoundError:  # pragma: no cover - store not installed
            pass
        try:
            return func(*args, **kwargs)
        except UserError:
            raise
        except errors as exc:
            raise UserError(str(exc)) from exc

    return wrapper  # type: ignore[return-value]
