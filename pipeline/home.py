"""The hilnas home directory (``HILNAS_HOME``, default ``~/.hilnas``): store, ONNX cache, models, runs."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class HomeError(RuntimeError):
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
