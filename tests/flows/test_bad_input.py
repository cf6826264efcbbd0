"""The bad-input suite: every CLI command's numeric and text options, fed values a careless user
or an attacker would pass.

Each case must end with exit code 2, one ``error:`` line on stderr that says what to do, no
traceback, and the store exactly as it was (its rows dumped and hashed before and after). The
store is real: the local CPU profiled for real (10 reference architectures, a small model), an
external device imported from its reference latencies, and one tiny surrogate-mode search saved
in the same home. A table covers the cases the issue tracker recorded; hypothesis draws the rest
(absurd sizes, non-finite floats, arbitrary names) for every option that takes them.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("safetensors")

from hilnas.pipeline.spaces import get_space
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import reference_csv

SPACE = get_space("nb201")
SMALL = ["--channels", "4", "--cells", "1", "--warmup", "1", "--reps", "3"]


# ----- the store every case runs against -----------------------------------------------------
def store_digest(home: Path) -> tuple[int, str]:
    """(row count, sha256 of every row of every table), read without writing anything."""
    db = home / "hilnas.db"
    if not db.exists():
        return 0, "absent"
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' "
                "ORDER BY name"
            )
        ]
        h = hashlib.sha256()
        rows = 0
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}" ORDER BY 1'):
                rows += 1
                h.update(repr((table, row)).encode())
        return rows, h.hexdigest()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def home(tmp_path_factory, cli_main):
    """A populated home: real CPU measurements, an imported device, a saved search."""
    home = tmp_path_factory.mktemp("bad-input-home")
    files = tmp_path_factory.mktemp("bad-input-files")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HILNAS_HOME", str(home))
        mp.delenv("HILNAS_DATABASE_URL", raising=False)
        cap = _NoCapture()
        steps = [
            ["profile", "--device", "cpu", "--archs", "2", *SMALL],
            [
                "devices",
                "import",
                "lab_board",
                "--measurements",
                str(reference_csv(files / "r.csv")),
            ],
            [
                "search",
                "--mode",
                "surrogate",
                "--devices",
                "1080ti_1,pixel3",
                "--epochs",
                "1",
                "--queries",
                "30",
                "--threads",
                "1",
            ],
        ]
        for args in steps:
            code, out, err = cli_main(args, cap)
            assert code == 0, (args, out, err)
    rows, _ = store_digest(home)
    assert rows > 12, "the fixture must hold real rows for 'unchanged' to mean anything"
    return home


class _NoCapture:
    """run_cli's capsys stand-in for module-scoped set-up (output is not asserted there)."""

    def readouterr(self):
        return "", ""


@pytest.fixture
def files(tmp_path):
    """Bad input files: each case gets fresh ones."""
    d = tmp_path
    (d / "not_a_dir").write_text("x")
    (d / "bad_header.csv").write_text("name,ms\nfoo,1\n")
    good = reference_csv(d / "good.csv")
    reference_csv(d / "other.csv", scale=1.7)
    lines = good.read_text().splitlines()
    (d / "nan.csv").write_text(
        "\n".join([lines[0], *[f"{ln.split(',')[0]},nan" for ln in lines[1:]]])
    )
    (d / "negative.csv").write_text(
        "\n".join([lines[0], *[f"{ln.split(',')[0]},-1" for ln in lines[1:]]])
    )
    (d / "huge_field.csv").write_text(lines[0] + "\n" + "a" * (200 * 1024) + ",1\n")
    (d / "ofa.csv").write_text(
        'arch,latency_ms\n"r204|d2,2,2,2,3|k7,5,7,7,5,7,5,3,5,3,5|e6,4,6,3,3,6,3,6,6,4,3",12.0\n'
    )
    (d / "archs_bad.txt").write_text("|not_an_op~0|+|none~0|none~1|+|none~0|none~1|none~2|\n")
    (d / "binary.csv").write_bytes(b"\x00\xff\xfe" * 100)
    (d / "reps_bool.toml").write_text("reps = true\n")
    (d / "onnx_str.toml").write_text('onnx = "yes"\n')
    (d / "archs_str.toml").write_text('archs = "ten"\n')
    (d / "unknown_key.toml").write_text("repz = 3\n")
    (d / "broken.toml").write_text("reps = [\n")
    return d


@pytest.fixture
def refuse(home, capsys, cli_main):
    """``refuse(args)``: run ``hilnas ARGS`` in the populated home; assert a clean refusal."""

    def check(args: list[str]) -> str:
        before = store_digest(home)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("HILNAS_HOME", str(home))
            mp.delenv("HILNAS_DATABASE_URL", raising=False)
            code, out, err = cli_main(args, capsys)
        after = store_digest(home)
        shown = f"hilnas {' '.join(args)}\nstdout: {out}\nstderr: {err}"
        assert "Traceback" not in out + err, shown
        assert code == 2, shown
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        # click's own usage errors draw a box; ours are one "error:" line
        if lines and lines[0].startswith("error:"):
            assert len(lines) == 1, shown
        else:
            assert "Usage:" in err or "Invalid value" in err or "No such option" in err, shown
        assert after == before, f"the store changed: {shown}"
        return err

    return check


# ----- the table: every case the issue tracker recorded, and the obvious neighbours -----------
PROFILE = ["profile", "--device", "cpu", *SMALL[:4]]
CASES: dict[str, list[str]] = {
    # profile: sizes and durations
    "reps 0": [*PROFILE, "--reps", "0"],
    "reps 1e12": [*PROFILE, "--reps", "1000000000000"],
    "reps overflow": [*PROFILE, "--reps", "99999999999999999999999"],
    "warmup negative": [*PROFILE, "--warmup", "-1"],
    "warmup 1e9": [*PROFILE, "--warmup", "1000000000"],
    "threads 100000": [*PROFILE, "--threads", "100000"],
    "threads negative": [*PROFILE, "--threads", "-2"],
    "timeout inf": [*PROFILE, "--timeout", "inf"],
    "timeout nan": [*PROFILE, "--timeout", "nan"],
    "timeout negative": [*PROFILE, "--timeout", "-1"],
    "archs negative": [*PROFILE, "--archs", "-1"],
    "archs beyond the space": [*PROFILE, "--archs", "1000000000000"],
    "batch 0": [*PROFILE, "--batch-size", "0"],
    "batch 1e6": [*PROFILE, "--batch-size", "1000000"],
    "channels 1e6": ["profile", "--device", "cpu", "--channels", "1000000"],
    "cells 0": ["profile", "--device", "cpu", "--cells", "0"],
    "seed negative": [*PROFILE, "--seed", "-1"],
    "unknown device": ["profile", "--device", "tpu9"],
    "unknown space": [*PROFILE, "--space", "nope"],
    "bad arch string": [*PROFILE, "--arch", "|bogus~0|"],
    "arch index out of range": [*PROFILE, "--arch", "15625"],
    "memory database": [*PROFILE, "--db", "sqlite://"],
    "memory database 2": [*PROFILE, "--db", "sqlite:///:memory:"],
    # measurements
    "export unknown device": ["measurements", "export", "--device", "nope", "--csv", "-"],
    "export unknown space": [
        "measurements",
        "export",
        "--device",
        "cpu",
        "--space",
        "x",
        "--csv",
        "-",
    ],
    # devices import
    "import alias cpu": ["devices", "import", "cpu", "--measurements", "{files}/good.csv"],
    "import reference name": [
        "devices",
        "import",
        "gold_6226",
        "--measurements",
        "{files}/good.csv",
    ],
    "import path traversal": ["devices", "import", "../evil", "--measurements", "{files}/good.csv"],
    "import existing name": [
        "devices",
        "import",
        "lab_board",
        "--measurements",
        "{files}/other.csv",
    ],
    "import missing file": ["devices", "import", "x1", "--measurements", "{files}/missing.csv"],
    "import bad header": ["devices", "import", "x1", "--measurements", "{files}/bad_header.csv"],
    "import nan latency": ["devices", "import", "x1", "--measurements", "{files}/nan.csv"],
    "import negative latency": [
        "devices",
        "import",
        "x1",
        "--measurements",
        "{files}/negative.csv",
    ],
    "import huge field": ["devices", "import", "x1", "--measurements", "{files}/huge_field.csv"],
    "import binary file": ["devices", "import", "x1", "--measurements", "{files}/binary.csv"],
    "import another space's archs": [
        "devices",
        "import",
        "x1",
        "--measurements",
        "{files}/ofa.csv",
    ],
    # predict / fit
    "predict unknown target": ["predict", "--device", "nope"],
    "predict unknown metric": ["predict", "--device", "gold_6226", "--metric", "flops"],
    "predict unknown model": ["predict", "--device", "gold_6226", "--model", "magic"],
    "predict missing archs": ["predict", "--device", "gold_6226", "--archs", "{files}/missing.txt"],
    "predict bad archs": ["predict", "--device", "gold_6226", "--archs", "{files}/archs_bad.txt"],
    "fit folds 0": ["fit", "--folds", "0"],
    "fit folds 1e9": ["fit", "--folds", "1000000000"],
    "fit unknown target": ["fit", "--device", "nope"],
    "fit unknown meta devices": ["fit", "--meta", "--meta-devices", "some"],
    # search
    "search epochs 0": ["search", "--epochs", "0"],
    "search epochs 1e9": ["search", "--epochs", "1000000000"],
    "search queries 0": ["search", "--queries", "0"],
    "search queries 1e12": ["search", "--queries", "1000000000000"],
    "search objective code": ["search", "--objectives", "__import__('os').system('true')"],
    "search objectives empty": ["search", "--objectives", ""],
    "search unknown mode": ["search", "--mode", "magic"],
    "search unknown dataset": ["search", "--mode", "supernet", "--dataset", "imagenet"],
    "search cifar missing dir": [
        "search",
        "--mode",
        "supernet",
        "--dataset",
        "cifar10",
        "--data-dir",
        "{files}/missing",
    ],
    "search data limit 0": ["search", "--mode", "supernet", "--data-limit", "0"],
    "search supernet epochs 1e9": [
        "search",
        "--mode",
        "supernet",
        "--supernet-epochs",
        "1000000000",
    ],
    "search unknown sampler": ["search", "--sampler", "magic"],
    "search unknown scalarization": ["search", "--scalarization", "magic"],
    "search threads 100000": ["search", "--threads", "100000"],
    "search unknown device": ["search", "--devices", "nope"],
    "search seed negative": ["search", "--seed", "-3"],
    # front
    "front points 0": ["front", "--device", "gold_6226", "--points", "0"],
    "front points 1e8": ["front", "--device", "gold_6226", "--points", "100000000"],
    "front preference length": ["front", "--device", "gold_6226", "--preference", "0.2,0.3,0.5"],
    "front preference nan": ["front", "--device", "gold_6226", "--preference", "nan,1"],
    "front preference negative": ["front", "--device", "gold_6226", "--preference", "-1,2"],
    "front preference text": ["front", "--device", "gold_6226", "--preference", "a,b"],
    "front unknown search": ["front", "--device", "gold_6226", "--search", "nope"],
    "front search traversal": ["front", "--device", "gold_6226", "--search", "../../etc"],
    "front unknown device": ["front", "--device", "nope"],
    "front out is a file": ["front", "--device", "gold_6226", "--out", "{files}/not_a_dir"],
    # run
    "run archs 1e12": ["run", "--archs", "1000000000000"],
    "run reps 0": ["run", "--reps", "0"],
    "run points 1e9": ["run", "--points", "1000000000"],
    "run epochs 1e9": ["run", "--epochs", "1000000000"],
    "run unknown mode": ["run", "--mode", "magic"],
    "run missing config": ["run", "--config", "{files}/missing.toml"],
    "run config reps bool": ["run", "--config", "{files}/reps_bool.toml"],
    "run config onnx string": ["run", "--config", "{files}/onnx_str.toml"],
    "run config archs string": ["run", "--config", "{files}/archs_str.toml"],
    "run config unknown key": ["run", "--config", "{files}/unknown_key.toml"],
    "run config broken": ["run", "--config", "{files}/broken.toml"],
    # agent
    "agent publish unknown space": ["agent", "publish", "--space", "nope"],
    "agent publish batch 1e6": ["agent", "publish", "--batch-size", "1000000"],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_refused_cleanly(case, files, refuse):
    refuse([a.replace("{files}", str(files)) for a in CASES[case]])


# ----- hypothesis: absurd values for every numeric and name option ----------------------------
INT_OPTIONS = [
    (PROFILE, "--reps"),
    (PROFILE, "--warmup"),
    (PROFILE, "--threads"),
    (PROFILE, "--archs"),
    (PROFILE, "--batch-size"),
    (["profile", "--device", "cpu"], "--channels"),
    (["profile", "--device", "cpu"], "--cells"),
    (["fit"], "--folds"),
    (["search"], "--epochs"),
    (["search"], "--queries"),
    (["search"], "--threads"),
    (["search", "--mode", "supernet"], "--supernet-epochs"),
    (["front", "--device", "gold_6226"], "--points"),
    (["run"], "--archs"),
    (["run"], "--reps"),
    (["run"], "--points"),
    (["run"], "--epochs"),
]
absurd_ints = st.one_of(
    st.integers(max_value=-1), st.integers(min_value=10**9, max_value=10**40)
).map(str)
bad_floats = st.sampled_from(["inf", "-inf", "nan", "-1", "-0.5", "1e309", "0"])
names = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=40,
).filter(lambda s: not s.startswith("-") and s.strip() == s and s.lower() not in _VALID_NAMES)
_VALID_NAMES = {"cpu", "gpu", "nb201", "all", "auto", "meta", "modnas", "error", "latency"}
NAME_OPTIONS = [
    (["profile"], "--device"),
    ([*PROFILE], "--space"),
    (["predict"], "--device"),
    (["predict", "--device", "gold_6226"], "--metric"),
    (["search"], "--objectives"),
    (["search"], "--devices"),
    (["front"], "--device"),
    (["front", "--device", "gold_6226"], "--search"),
    (["measurements", "export", "--csv", "-"], "--device"),
]
hypo = settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)


@pytest.mark.parametrize(("base", "option"), INT_OPTIONS, ids=lambda v: str(v))
@hypo
@given(value=absurd_ints)
def test_absurd_sizes_are_refused(base, option, value, refuse):
    refuse([*base, option, value])


@hypo
@given(value=bad_floats)
def test_non_finite_or_negative_timeouts_are_refused(value, refuse):
    refuse([*PROFILE, "--timeout", value])


@pytest.mark.parametrize(("base", "option"), NAME_OPTIONS, ids=lambda v: str(v))
@hypo
@given(value=names)
def test_arbitrary_names_are_refused(base, option, value, refuse):
    refuse([*base, option, value])


def test_the_fixture_store_is_intact(home):
    """The populated store still opens and still holds its profiled rows after every case."""
    rows, digest = store_digest(home)
    assert rows > 12 and digest != "absent"
    assert os.access(home / "hilnas.db", os.R_OK)
