"""Saved runs under ``HILNAS_HOME/search``: their files, writing one atomically, finding one
(:func:`resolve_run`) and checking what is read back."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from hilnas.pipeline.home import home_dir
from hilnas.pipeline.search.config import (
    MODES,
    DamagedSearchError,
    SearchError,
    SearchNotFoundError,
    parse_objectives,
)

FORMAT = "hilnas.search/1"
SETTINGS_FILE = "settings.json"
HYPERNET_FILE = "hypernet.safetensors"
SURROGATE_FILE = "surrogate.safetensors"
SUPERNET_FILE = "supernet.safetensors"
LATEST = "latest"


def search_root() -> Path:
    """``HILNAS_HOME/search`` (created)."""
    path = home_dir() / "search"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _state_dict_bytes(module) -> bytes:
    from safetensors.torch import save

    return save({k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()})


def _save_run(settings: dict[str, Any], files: Mapping[str, bytes], started: datetime) -> Path:
    root = search_root()
    run_id = f"{started.strftime('%Y%m%d-%H%M%S')}-{settings['mode']}-s{settings['seed']}-{uuid.uuid4().hex[:6]}"
    settings = dict(settings, run_id=run_id)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{run_id}."))
    try:
        for name, blob in files.items():
            (tmp / name).write_bytes(blob)
        (tmp / SETTINGS_FILE).write_text(json.dumps(settings, indent=2, default=str) + "\n")
        final = root / run_id
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _write_pointer(root, LATEST, run_id)
    return final


def _write_pointer(root: Path, name: str, run_id: str) -> None:
    """Point the file ``root / name`` at ``run_id`` (its text: the id and a newline), replaced
    atomically so a reader sees the old run or the new one, never a partial id."""
    fd, tmp = tempfile.mkstemp(dir=root, prefix=f".{name}.")
    with os.fdopen(fd, "w") as fh:
        fh.write(run_id + "\n")
    os.replace(tmp, root / name)


def _read_pointer(pointer: Path) -> str:
    """The run id the pointer file ``pointer`` names; :class:`DamagedSearchError` when it holds
    no run id (unreadable, not UTF-8, empty, a path, or a hidden name)."""
    try:
        run_id = pointer.read_bytes()[:1000].decode("utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise DamagedSearchError(pointer, f"not a run id ({exc})") from None
    if not run_id or "/" in run_id or "\\" in run_id or run_id.startswith("."):
        raise DamagedSearchError(pointer, f"{run_id!r} is not a run id")
    return run_id


def resolve_run(path: str | os.PathLike[str] | None = None) -> Path:
    """A run directory from a path, a run id, a settings file, or ``None`` (the latest run)."""
    root = home_dir(create=False) / "search"
    if path is None or str(path) == LATEST:
        pointer = root / LATEST
        if not pointer.is_file():
            raise SearchNotFoundError(
                f"no search has been run yet (nothing under {root}); run `hilnas search` first"
            )
        path = root / _read_pointer(pointer)
    p = Path(path).expanduser()
    if p.is_file() and p.name == SETTINGS_FILE:
        p = p.parent
    if not p.exists() and not p.is_absolute() and (root / p).is_dir():
        p = root / p
    if not (p / SETTINGS_FILE).is_file():
        raise SearchNotFoundError(
            f"{path} is not a saved search (no {SETTINGS_FILE}); runs live under {root}"
        )
    return p


#: A search's settings file is a few hundred kB at most; anything far larger is not one.
MAX_SETTINGS_BYTES = 64 * 2**20


def _read_settings(settings_path: Path) -> dict[str, Any]:
    """The JSON object in the settings file ``settings_path`` of a saved search, with a
    ``format`` key (its value and the other keys are the caller's to check).

    A file over :data:`MAX_SETTINGS_BYTES`, not UTF-8 JSON, or not an object with ``format``
    raises :class:`DamagedSearchError`; an unreadable one :class:`SearchError` (permissions)."""
    try:
        size = settings_path.stat().st_size
        if size > MAX_SETTINGS_BYTES:
            raise DamagedSearchError(
                settings_path, f"{size:,} bytes, more than a search's settings ever take"
            )
        settings = json.loads(settings_path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise SearchError(
            f"{settings_path} is not readable ({exc.strerror or exc}); check its permissions"
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DamagedSearchError(settings_path, f"not JSON ({exc})") from None
    if not isinstance(settings, dict) or "format" not in settings:
        raise DamagedSearchError(settings_path, "not a hilnas search settings file")
    return settings


def _checked_settings(path: Path, settings: Any) -> dict[str, Any]:
    """``settings`` of the saved search at ``path`` if its keys have the types loading needs,
    else :class:`DamagedSearchError` naming the key (sizes are checked by the models)."""
    where = path / SETTINGS_FILE if path.is_dir() else path
    if not isinstance(settings, dict):
        raise DamagedSearchError(where, "the settings are not a JSON object")
    kinds: dict[str, tuple[type, ...]] = {
        "mode": (str,),
        "space": (str,),
        "objectives": (list,),
        "config": (dict,),
        "hypernet": (dict,),
        "train_targets": (list,),
        "seed": (int,),
    }
    for key, types in kinds.items():
        if key not in settings:
            raise DamagedSearchError(where, f"the settings lack {key!r}")
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, types):
            raise DamagedSearchError(where, f"{key!r} is {value!r}, expected a {types[0].__name__}")
    if settings["mode"] not in MODES:
        raise DamagedSearchError(where, f"unknown mode {settings['mode']!r}")
    if not all(isinstance(o, str) for o in settings["objectives"]):
        raise DamagedSearchError(where, f"objectives {settings['objectives']!r} are not names")
    try:
        parse_objectives(settings["objectives"])
    except SearchError as exc:
        raise DamagedSearchError(where, str(exc)) from None
    for key in ("surrogate", "predictors"):
        if settings.get(key) is not None and not isinstance(settings[key], dict):
            raise DamagedSearchError(where, f"{key!r} is {settings[key]!r}, expected an object")
    sweep = settings.get("sweep_preferences")
    if sweep is not None:
        try:
            bank = np.asarray(sweep, dtype=np.float64)
        except (TypeError, ValueError):
            bank = np.zeros((0, 0))
        if bank.ndim != 2 or bank.shape[1] != len(settings["objectives"]):
            raise DamagedSearchError(where, "sweep_preferences is not a table of preferences")
        if bank.size and (not np.all(np.isfinite(bank)) or np.any(bank < 0)):
            raise DamagedSearchError(where, "sweep_preferences holds invalid weights")
    return settings


def _load_weights(module: Any, path: Path) -> None:
    """Load a safetensors file into ``module``; a missing, truncated, foreign or mismatched
    file raises :class:`DamagedSearchError` naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise DamagedSearchError(path, "the file is missing")
    try:
        state = load_file(str(path))
        module.load_state_dict(state)
    except SafetensorError as exc:
        raise DamagedSearchError(path, f"not a readable safetensors file ({exc})") from None
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise DamagedSearchError(path, f"its weights do not fit ({one_line_error(exc)})") from None


def one_line_error(exc: BaseException, limit: int = 300) -> str:
    """The first line of ``exc``'s message, at most ``limit`` characters."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
