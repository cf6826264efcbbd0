"""Supernet-mode search on digits: trains on a CPU in seconds at this size, fronts come from
the supernet's validation error."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")
pytest.importorskip("safetensors")

from hilnas.pipeline.search import SearchConfig, SearchError, TrainedSearch, run_search


def test_a_tiny_supernet_search_on_digits(monkeypatch, tmp_path):
    monkeypatch.setenv("HILNAS_HOME", str(tmp_path))
    cfg = SearchConfig(
        mode="supernet",
        train_targets=("1080ti_1", "pixel3"),
        epochs=2,
        warmup_epochs=1,
        channels=4,
        batch_size=256,
        hidden=32,
        threads=1,
        torch_device="cpu",
    )
    events = []
    path = run_search(cfg, progress=events.append)
    assert (path / "supernet.safetensors").is_file()
    settings = json.loads((path / "settings.json").read_text())
    sup = settings["supernet"]
    assert sup["dataset"]["name"] == "digits" and sup["hyper_steps"] > 0
    assert len(sup["history"]) == 2
    assert {"warmup", "train"} <= {e.stage for e in events}
    trained = TrainedSearch.load(path)
    assert not trained.can_refine
    assert trained.model_config().input_size == 8
    pts = trained.front("pixel3", points=4)
    assert pts and all(p.error_source == "supernet" for p in pts)
    assert all(0 <= p.objectives["error"] <= 100 for p in pts)
    with pytest.raises(SearchError, match="cheap error model"):
        trained.refine(np.zeros((1, 6), dtype=np.int64), np.array([[0.5, 0.5]]), {})
