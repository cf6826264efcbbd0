"""``hilnas profile --space gpt_s``: workload options, both phases by default, bad workloads.

The real stack, in-process through the console-script entry point (``cli.main``, so exit codes
and the one-line errors are what a user sees): the local CPU from discovery, the real exporter
(GPT-S's direct builder), the real ONNX Runtime profiler and a real SQLite store under a
temporary ``HILNAS_HOME``. A tiny workload (vocabulary 256, context 64, 8 tokens) keeps the
models small; the one real run measures the 10 reference architectures in both phases (slow:
about a minute on 2 busy cores, most of it ONNX Runtime folding the in-graph weights when a
session is created). Nothing is patched.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hilnas.pipeline.spaces import get_space
from hilnas.pipeline.store import MeasurementStore

GPT = get_space("gpt_s")
TINY = ["--vocab", "256", "--context", "64", "--seq-len", "8"]
QUICK = ["--archs", "0", "--reps", "1", "--warmup", "0"]
PREFILL, DECODE = "gpt-v256-ctx64-prefill-s8", "gpt-v256-ctx64-decode-s8"


@pytest.mark.slow
def test_default_run_stores_prefill_and_decode_as_two_rows_per_arch(tmp_path, hilnas_cli):
    env = {"HILNAS_HOME": str(tmp_path)}
    code, out, err = hilnas_cli(
        ["profile", "--space", "gpt_s", "--device", "cpu", *TINY, *QUICK, "--json"], env
    )
    assert code == 0, err
    reports = json.loads(out)  # no --phase: both, one report each
    assert [r["model_config_key"] for r in reports] == [PREFILL, DECODE]
    for report in reports:
        assert report["measured"] == 10 and report["failed"] == 0
        assert report["onnx_mb_per_subnet"] < 1.0  # weights computed in the graph
    with MeasurementStore(f"sqlite:///{tmp_path / 'hilnas.db'}") as store:
        rows = store.measurements(space="gpt_s", status="ok")
    by_arch: dict[str, set[str]] = {}
    for r in rows:
        by_arch.setdefault(r.key.arch, set()).add(r.key.model_config_key)
    assert set(by_arch) == set(GPT.reference_strings())
    assert all(keys == {PREFILL, DECODE} for keys in by_arch.values())

    # one phase again: everything is in the store already
    code, out, err = hilnas_cli(
        ["profile", "--space", "gpt_s", "--device", "cpu", *TINY, *QUICK, "--phase", "decode"]
        + ["--json"],
        env,
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["model_config_key"] == DECODE
    assert report["measured"] == 0 and report["skipped"] == 10


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


BAD = {
    "seq_len over the context": (["--seq-len", "65", "--context", "64"], "seq_len"),
    "decode seq_len at the context": (
        ["--phase", "decode", "--seq-len", "64", "--context", "64"],
        "decode takes a seq_len from 1 to 63",
    ),
    "unknown phase": (["--phase", "generate"], "use one of prefill, decode or both"),
    "batch 0": (["--batch-size", "0"], "--batch-size"),
    "an option of nb201": (["--channels", "8"], "--channels is not an option of the space gpt_s"),
    "an unknown setting": (["--config-set", "heads=4"], "heads is not a setting"),
    "not KEY=VALUE": (["--config-set", "seq_len"], "is not KEY=VALUE"),
    "given twice": (["--seq-len", "8", "--config-set", "seq_len=9"], "given twice"),
    "a bad boolean": (["--config-set", "all_logits=maybe"], "all_logits=true"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_workload_exits_2_with_one_line_and_stores_nothing(case, tmp_path, hilnas_cli):
    args, match = BAD[case]
    home = tmp_path / "home"
    db = tmp_path / "kept.db"
    MeasurementStore(f"sqlite:///{db}").close()  # an existing store must stay byte-identical
    before = _sha(db)
    code, out, err = hilnas_cli(
        ["profile", "--space", "gpt_s", "--device", "cpu", "--db", f"sqlite:///{db}", *args],
        {"HILNAS_HOME": str(home)},
    )
    assert code == 2, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert match in lines[0]
    assert _sha(db) == before
    assert not (home / "onnx").exists()  # nothing exported either


def test_nb201_refuses_a_gpt_option_naming_its_own(tmp_path, hilnas_cli):
    code, _, err = hilnas_cli(
        ["profile", "--device", "cpu", "--phase", "decode"], {"HILNAS_HOME": str(tmp_path)}
    )
    assert code == 2
    assert "--phase is not an option of the space nb201" in err and "--channels, --cells" in err
    assert not (tmp_path / "hilnas.db").exists()


def test_a_bad_cache_bound_is_refused_before_the_store(tmp_path, hilnas_cli):
    code, _, err = hilnas_cli(
        ["profile", "--space", "gpt_s", "--device", "cpu", *TINY],
        {"HILNAS_HOME": str(tmp_path), "HILNAS_ONNX_CACHE_MB": "lots"},
    )
    assert code == 2 and "HILNAS_ONNX_CACHE_MB" in err
    assert not (tmp_path / "hilnas.db").exists()
