"""The hilnas home directory (``HILNAS_HOME``, default ``~/.hilnas``): store, ONNX cache, models, runs."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from hilnas.devices.errors import PreconditionError


class HomeError(PreconditionError, RuntimeError):
    """HILNAS_HOME cannot be created or written."""


def home_dir(create: bool = True) -> Path:
    """Resolve the home directory; with ``create`` make sure it exists and is writable."""
    raw = os.environ.get("HILNAS_HOME")
    path = Path(raw).expanduser() if raw else Path.home() / ".hilnas"
    if not create:
        return path
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise HomeError(
            f"HILNAS_HOME {str(path)!r} cannot be written ({exc.strerror or exc}); set HILNAS_HOME "
            "to a writable directory, e.g. `export HILNAS_HOME=$HOME/.hilnas`"
        ) from exc
    return path


def subdir(name: str) -> Path:
    """A sub-directory of the home directory (created)."""
    path = home_dir() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def temporary_home(prefix: str = "hilnas-") -> Iterator[Path]:
    """A fresh, empty HILNAS_HOME for the duration of the block (benchmarks measure from
    scratch and leave the user's store alone); the previous value is restored and the
    directory removed afterwards."""
    old = os.environ.get("HILNAS_HOME")
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        os.environ["HILNAS_HOME"] = tmp
        try:
            yield Path(tmp)
        finally:
            if old is None:
                os.environ.pop("HILNAS_HOME", None)
            else:
                os.environ["HILNAS_HOME"] = old
