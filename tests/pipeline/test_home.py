"""The temporary HILNAS_HOME the benchmarks measure in."""

from __future__ import annotations

import os

import pytest
from hilnas.pipeline.home import home_dir, temporary_home


def test_temporary_home_is_fresh_and_restores_the_previous_one(monkeypatch, tmp_path):
    monkeypatch.setenv("HILNAS_HOME", str(tmp_path))
    with temporary_home("hilnas-test-") as home:
        assert home_dir() == home and home.name.startswith("hilnas-test-")
        assert not any(home.iterdir())  # fresh: nothing of the previous home
        (home / "store.db").write_text("x")
    assert os.environ["HILNAS_HOME"] == str(tmp_path) and not home.exists()

    monkeypatch.delenv("HILNAS_HOME")
    with pytest.raises(RuntimeError), temporary_home():
        raise RuntimeError("a benchmark failed")
    assert "HILNAS_HOME" not in os.environ  # unset before, unset after, even on an error
