"""Shared fixtures: every test runs with its own HILNAS_HOME and Prefect home."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def hilnas_home(tmp_path, monkeypatch):
    """An empty, writable HILNAS_HOME per test (the store, ONNX cache and models live there)."""
    home = tmp_path / "hilnas-home"
    home.mkdir()
    monkeypatch.setenv("HILNAS_HOME", str(home))
    return home
