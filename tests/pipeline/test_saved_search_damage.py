"""A saved search that is damaged or not from hilnas is refused with one clear error
(``DataIntegrityError``: "this saved search is damaged or not from hilnas: ..."), never a
traceback and never a model built from an unchecked size. Each case damages a copy of one real
tiny search (real safetensors files)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("safetensors")

from hilnas.devices.errors import DataIntegrityError, UserError
from hilnas.pipeline.search import (
    HYPERNET_FILE,
    SETTINGS_FILE,
    SURROGATE_FILE,
    SearchConfig,
    TrainedSearch,
    run_search,
)

DAMAGED = "this saved search is damaged or not from hilnas"

TINY = {
    "train_targets": ("1080ti_1", "pixel3"),
    "epochs": 1,
    "steps_per_epoch": 10,
    "accuracy_queries": 20,
    "query_rounds": 0,
    "surrogate_members": 1,
    "hidden": 16,
    "preferences_per_target": 4,
    "threads": 1,
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("damage-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HILNAS_HOME", str(home))
        return run_search(SearchConfig(**TINY))


@pytest.fixture
def copy(saved, tmp_path) -> Path:
    target = tmp_path / saved.name
    shutil.copytree(saved, target)
    return target


def _settings(run: Path, change: Callable[[dict], None]) -> None:
    data = json.loads((run / SETTINGS_FILE).read_text())
    change(data)
    (run / SETTINGS_FILE).write_text(json.dumps(data))


def _truncate(path: Path) -> None:
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])


def test_the_undamaged_copy_loads(copy):
    assert TrainedSearch.load(copy).front("pixel3", points=3)


DAMAGES: dict[str, tuple[Callable[[Path], None], str]] = {
    "truncated hypernet": (lambda r: _truncate(r / HYPERNET_FILE), HYPERNET_FILE),
    "hypernet not safetensors": (
        lambda r: (r / HYPERNET_FILE).write_bytes(b"PK\x03\x04 a zip, not safetensors" * 10),
        "not a readable safetensors file",
    ),
    "empty hypernet": (lambda r: (r / HYPERNET_FILE).write_bytes(b""), HYPERNET_FILE),
    "surrogate of another shape": (
        lambda r: shutil.copyfile(r / HYPERNET_FILE, r / SURROGATE_FILE),
        "weights do not fit",
    ),
    "truncated surrogate": (lambda r: _truncate(r / SURROGATE_FILE), SURROGATE_FILE),
    "settings not JSON": (
        lambda r: (r / SETTINGS_FILE).write_bytes(b"\x00\xff not json"),
        "not JSON",
    ),
    "settings a JSON list": (lambda r: (r / SETTINGS_FILE).write_text("[1, 2]"), "hilnas"),
    "absurd hypernet size": (
        lambda r: _settings(r, lambda d: d["hypernet"].update(hidden=10**9)),
        "hidden=1000000000 is out of range",
    ),
    "absurd hypernet depth": (
        lambda r: _settings(r, lambda d: d["hypernet"].update(layers=10**6)),
        "layers=1000000 is out of range",
    ),
    "hypernet size of the wrong type": (
        lambda r: _settings(r, lambda d: d["hypernet"].update(hidden="big")),
        "hidden must be an integer",
    ),
    "hypernet for another space": (
        lambda r: _settings(r, lambda d: d["hypernet"].update(num_decisions=7)),
        "num_decisions",
    ),
    "unknown hypernet setting": (
        lambda r: _settings(r, lambda d: d["hypernet"].update(evil=1)),
        "hypernet settings",
    ),
    "absurd surrogate size": (
        lambda r: _settings(r, lambda d: d["surrogate"]["config"].update(hidden=10**9)),
        "hidden=1000000000 is out of range",
    ),
    "absurd search settings": (
        lambda r: _settings(r, lambda d: d["config"].update(hidden=10**9)),
        "hidden=1000000000 is out of range",
    ),
    "objectives of the wrong type": (
        lambda r: _settings(r, lambda d: d.update(objectives=5)),
        "'objectives' is 5",
    ),
    "unknown objective": (
        lambda r: _settings(r, lambda d: d.update(objectives=["error", "__import__('os')"])),
        "unknown objective",
    ),
    "settings without a hypernet": (
        lambda r: _settings(r, lambda d: d.pop("hypernet")),
        "lack 'hypernet'",
    ),
    "config a string": (
        lambda r: _settings(r, lambda d: d.update(config="x")),
        "'config' is 'x'",
    ),
    "sweep of the wrong shape": (
        lambda r: _settings(r, lambda d: d.update(sweep_preferences=[[1, 2, 3]])),
        "sweep_preferences",
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_saved_search_is_refused_clearly(copy, damage):
    apply, fragment = DAMAGES[damage]
    apply(copy)
    with pytest.raises(DataIntegrityError) as err:
        TrainedSearch.load(copy).front("pixel3", points=3)
    msg = str(err.value)
    assert msg.startswith(f"{DAMAGED}: {copy}")
    assert fragment in msg and "rerun `hilnas search`" in msg
    assert "\n" not in msg


def test_a_settings_file_of_another_program_is_refused(copy):
    (copy / SETTINGS_FILE).write_text(json.dumps({"name": "some other tool"}))
    with pytest.raises(DataIntegrityError, match=DAMAGED):
        TrainedSearch.load(copy)


def test_a_missing_latest_pointer_target_is_not_found(tmp_path, monkeypatch):
    monkeypatch.setenv("HILNAS_HOME", str(tmp_path))
    (tmp_path / "search").mkdir()
    (tmp_path / "search" / "latest").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(DataIntegrityError, match="not a run id"):
        TrainedSearch.load()
    (tmp_path / "search" / "latest").write_text("../../etc\n")
    with pytest.raises(UserError):
        TrainedSearch.load()


def test_the_cli_refuses_a_damaged_search_in_one_line(copy, capsys, monkeypatch, tmp_path):
    from hilnas.flows.cli import main

    _truncate(copy / HYPERNET_FILE)
    monkeypatch.setenv("HILNAS_HOME", str(tmp_path))
    monkeypatch.setattr("sys.argv", ["hilnas", "front", "-d", "pixel3", "--search", str(copy)])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err
    (line,) = [x for x in err.splitlines() if x.strip()]
    assert line.startswith(f"error: {DAMAGED}")
