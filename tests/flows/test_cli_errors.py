"""The CLI boundary: bad input is one line ``error: ...`` naming the fix, exit code 2, nothing
stored changed; Ctrl-C is exit 130 with a line; anything else is a bug: exit 1, one line naming
the log file that holds the traceback.

The commands run through the console-script entry point (``hilnas.flows.cli.main``), in process
(``run_cli``) and, for a few cases, as a real ``hilnas`` subprocess. The store and the saved
search are real (SQLite, safetensors), made once for the module.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("safetensors")


from .conftest import reference_csv, run_cli

TINY_SEARCH = {
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
def module_home(tmp_path_factory):
    """A home with a store (one imported device) and one tiny saved search."""
    home = tmp_path_factory.mktemp("cli-errors-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HILNAS_HOME", str(home))
        from hilnas.pipeline.predictors.io import import_device
        from hilnas.pipeline.search import SearchConfig, run_search
        from hilnas.pipeline.store import MeasurementStore

        store = MeasurementStore()
        try:
            import_device("my_board", reference_csv(home / "board.csv"), store)
        finally:
            store.close()
        run = run_search(SearchConfig(**TINY_SEARCH))
    return home, run


@pytest.fixture
def home(module_home, monkeypatch):
    path, _ = module_home
    monkeypatch.setenv("HILNAS_HOME", str(path))
    monkeypatch.setenv("COLUMNS", "300")
    return path


def _digest(home: Path) -> dict[str, str]:
    """sha256 of the store and of every file of the saved searches."""
    files = [home / "hilnas.db", *sorted((home / "search").rglob("*"))]
    return {
        str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in files
        if p.is_file()
    }


def assert_user_error(code: int, err: str, *fragments: str) -> str:
    """Exit code 2, exactly one stderr line ``error: ...`` holding every fragment."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


FILE = "__a_plain_file__"  # replaced by the path of an existing plain file
MISSING = "__missing__"  # replaced by a path that does not exist

CASES = [
    # hilnas front: sizes, preferences, output folders, saved searches, devices
    (["front", "-d", "gold_6226", "--points", "100000000"], ["--points", "1 to 10,000"]),
    (["front", "-d", "gold_6226", "--points", "0"], ["--points=0 is out of range"]),
    (["front", "-d", "gold_6226", "--points", "-3"], ["--points=-3 is out of range"]),
    (["front", "-d", "gold_6226", "--points", "99999999999999999999999"], ["out of range"]),
    (["front", "-d", "gold_6226", "--preference", "nan,1"], ["comma-separated list", "0.3,0.7"]),
    (["front", "-d", "gold_6226", "--preference", "0.3,0.3"], ["sums to 0.6"]),
    (["front", "-d", "gold_6226", "--out", FILE], ["is a file, not a directory"]),
    (["front", "-d", "gold_6226", "--out", f"{FILE}/sub"], ["is inside", "not a directory"]),
    (["front", "-d", "gold_6226", "--search", "no-such-run"], ["not a saved search"]),
    (["front", "-d", "no_such_board"], ["no_such_board"]),
    (["front", "-d", "gold_6226", "--export-onnx"], ["--out"]),
    # hilnas search: every size is bounded before any work, objectives are listed
    (["search", "--objectives", "__import__('os')"], ["unknown objective", "error, latency"]),
    (["search", "--objectives", "error,__import__('os')"], ["unknown objective", "energy"]),
    (["search", "--objectives", ""], ["unknown objective"]),
    (["search", "--queries", "1"], ["--queries=1 is out of range", "from 2 to 50,000"]),
    (["search", "--queries", "1000000000000"], ["--queries", "out of range"]),
    (["search", "--epochs", "0"], ["--epochs=0 is out of range"]),
    (["search", "--epochs", "100000000"], ["--epochs", "1 to 10,000"]),
    (["search", "--seed", "-1"], ["--seed=-1 is out of range"]),
    (["search", "--threads", "100000"], ["--threads", "out of range"]),
    (["search", "--mode", "supernet", "--supernet-epochs", "0"], ["--supernet-epochs"]),
    (["search", "--mode", "supernet", "--data-limit", "0"], ["--data-limit"]),
    (["search", "--mode", "evolution"], ["--mode must be one of"]),
    (
        ["search", "--mode", "supernet", "--dataset", "cifar10", "--data-dir", MISSING],
        ["--data-dir", "cifar-10-batches-bin"],
    ),
    # hilnas predict / fit / devices import: user-supplied paths and sizes
    (["predict", "-d", "pixel3", "--archs", MISSING], ["--archs", "does not exist"]),
    (["predict", "-d", "pixel3", "--out", f"{MISSING}/x.csv"], ["--out", "does not exist"]),
    (["predict", "-d", "pixel3", "--metric", "speed"], ["--metric must be one of"]),
    (["fit", "--folds", "1"], ["--folds=1 is out of range"]),
    (["fit", "--folds", "100000000"], ["--folds", "from 2 to 50"]),
    (["devices", "import", "b2", "--measurements", MISSING], ["--measurements", "does not exist"]),
    # hilnas run: flags are validated before Prefect starts
    (["run", "--reps", "0"], ["'reps'"]),
    (["run", "--points", "100000"], ["'points'", "less than or equal to 200"]),
    (["run", "--epochs", "100000000"], ["'epochs'"]),
    (["run", "--objectives", "__import__('os')"], ["unknown objective", "error, latency_ms"]),
    (["run", "--config", MISSING], ["config file", "does not exist", "--config"]),
    # hilnas agent: sizes before any server is contacted
    (["agent", "publish", "--archs", "-1"], ["--archs=-1 is out of range"]),
    (["agent", "publish", "--batch-size", "100000"], ["--batch-size"]),
    (["agent", "start", "-d", "cpu", "--onboard-reps", "1000000000000"], ["--onboard-reps"]),
]


@pytest.mark.parametrize("args, fragments", CASES, ids=[" ".join(a)[:60] for a, _ in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(home, args, fragments, tmp_path, capsys):
    plain = tmp_path / "plain.txt"
    plain.write_text("not a directory\n")
    args = [a.replace(FILE, str(plain)).replace(MISSING, str(tmp_path / "missing")) for a in args]
    before = _digest(home)
    code, _, err = run_cli(args, capsys)
    assert_user_error(code, err, *fragments)
    assert _digest(home) == before
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize(
    "text, fragments",
    [
        ("reps = true\n", ["'reps'", "valid integer", "True"]),
        ('onnx = "yes"\n', ["'onnx'", "valid boolean", "'yes'"]),
        ('archs = "5"\n', ["'archs'", "valid integer", "'5'"]),
        ("points = 3.0\n", ["'points'", "valid integer"]),
        ("reference_devices = 1\n", ["'reference_devices'", "valid boolean"]),
        ("reps = 99999999999\n", ["'reps'", "less than or equal to"]),
        ("seed = -1\n", ["'seed'"]),
        ("archz = 5\n", ["unknown key 'archz'", "did you mean 'archs'", "valid keys"]),
        ("[search]\nhidden = 1000000000\n", ["hidden=1000000000 is out of range"]),
        ("[search]\naccuracy_queries = true\n", ["accuracy_queries must be an integer"]),
        ('[search]\nmgda = "no"\n', ["mgda must be true or false"]),
    ],
)
def test_config_file_types_are_strict(home, tmp_path, capsys, text, fragments):
    config = tmp_path / "run.toml"
    config.write_text(text)
    before = _digest(home)
    code, _, err = run_cli(
        ["run", "--config", str(config), "--run-dir", str(tmp_path / "r")], capsys
    )
    line = assert_user_error(code, err, *fragments)
    assert str(config) in line  # the message names the file
    assert _digest(home) == before and not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("arch,latency_ms\n" + "x" * 200_000 + ",1\n", "field larger than field limit"),
        ("arch,latency_ms\n|nor_conv_3x3~0|,1\n", ""),
        ("\x00\x01 not a csv", ""),
    ],
)
def test_a_bad_import_creates_no_store(tmp_path, monkeypatch, capsys, content, fragment):
    empty = tmp_path / "empty-home"
    empty.mkdir()
    monkeypatch.setenv("HILNAS_HOME", str(empty))
    src = tmp_path / "board.csv"
    src.write_text(content)
    code, _, err = run_cli(["devices", "import", "board_x", "--measurements", str(src)], capsys)
    assert_user_error(code, err, fragment)
    assert not (empty / "hilnas.db").exists()


def test_a_front_returns_at_most_the_points_asked_for(home, capsys):
    import json

    code, out, err = run_cli(["front", "-d", "my_board", "--points", "3", "--json"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert 1 <= len(doc["points"]) <= 3


def test_usage_errors_keep_click_exit_code_2(home, capsys):
    code, _, err = run_cli(["front", "-d", "gold_6226", "--points", "many"], capsys)
    assert code == 2 and "Traceback" not in err and "--points" in err


def _in_subprocess(args: list[str], home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HILNAS_HOME": str(home), "COLUMNS": "300"}
    code = "import sys; from hilnas.flows.cli import main; sys.argv[0] = 'hilnas'; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_the_real_command_refuses_a_huge_front_at_once(home, tmp_path):
    before = _digest(home)
    proc = _in_subprocess(["front", "--device", "gold_6226", "--points", "100000000"], home)
    assert_user_error(proc.returncode, proc.stderr, "--points", "out of range")
    config = tmp_path / "run.toml"
    config.write_text("reps = true\n")
    proc = _in_subprocess(["run", "--config", str(config)], home)
    assert_user_error(proc.returncode, proc.stderr, "'reps'", str(config))
    assert _digest(home) == before


# ----------------------------------------------------------------------------- bugs and Ctrl-C
def _break_load(monkeypatch, exc: BaseException) -> None:
    """Make the saved-search loader raise ``exc`` (a deliberate bug inside a command)."""
    from hilnas.pipeline import search

    def broken(*args, **kwargs):
        raise exc

    monkeypatch.setattr(search.TrainedSearch, "load", broken)


def _log_path(err: str) -> Path:
    line = err.strip()
    assert "the traceback is in " in line, err
    return Path(line.split("the traceback is in ", 1)[1].split("; please report it")[0])


def test_an_internal_bug_is_exit_1_with_the_traceback_in_a_log(home, monkeypatch, capsys):
    _break_load(monkeypatch, RuntimeError("boom: a deliberate bug"))
    code, _, err = run_cli(["front", "-d", "gold_6226"], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith(
        "internal error (a bug in hilnas): RuntimeError: boom: a deliberate bug; "
    )
    assert lines[0].endswith("please report it")
    log = _log_path(err)
    assert log.parent == home / "logs"
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "boom: a deliberate bug" in text
    assert "in broken" in text and "front" in text  # the frame that raised, the command


def test_a_builtin_value_error_is_a_bug_not_a_user_error(home, monkeypatch, capsys):
    _break_load(monkeypatch, ValueError("a library said no"))
    code, _, err = run_cli(["front", "-d", "gold_6226"], capsys)
    assert code == 1 and "internal error (a bug in hilnas): ValueError: a library said no" in err


def test_the_log_falls_back_to_the_temp_dir_when_the_home_cannot_be_written(
    home, monkeypatch, capsys, tmp_path
):
    # a home that is a plain file cannot hold logs/ (works as root too, unlike chmod)
    not_a_dir = tmp_path / "home-file"
    not_a_dir.write_text("")
    monkeypatch.setenv("HILNAS_HOME", str(not_a_dir))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    from hilnas.flows import cli_run

    def broken(cfg):
        raise RuntimeError("bug after validation")

    monkeypatch.setattr(cli_run, "run_main_job", broken)
    code, _, err = run_cli(["run", "--archs", "0"], capsys)
    assert code == 1
    log = _log_path(err)
    assert log.parent == tmp_path / "tmp" / "hilnas-logs"
    assert "bug after validation" in log.read_text()


def test_ctrl_c_is_exit_130_with_one_line(home, monkeypatch, capsys):
    _break_load(monkeypatch, KeyboardInterrupt())
    before = _digest(home)
    code, _, err = run_cli(["front", "-d", "gold_6226"], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 130 and len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith("error: interrupted") and "rerun" in lines[0]
    assert _digest(home) == before


def test_a_command_can_say_what_was_kept_when_interrupted(home, monkeypatch, capsys):
    from hilnas.flows.cli_common import Interrupted

    _break_load(monkeypatch, Interrupted("interrupted; 4 measurements kept, rerun to resume"))
    code, _, err = run_cli(["front", "-d", "gold_6226"], capsys)
    assert code == 130 and "4 measurements kept" in err
