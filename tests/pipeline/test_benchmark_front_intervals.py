"""The front-interval benchmark's parts: the front proxy and the widening summary."""

from __future__ import annotations

import numpy as np
import pytest
from hilnas.pipeline import mo
from hilnas.pipeline.benchmarks import front_intervals as FI


def test_front_proxy_takes_whole_non_dominated_layers_in_order():
    rng = np.random.default_rng(0)
    err, cost = rng.random(400), rng.random(400)
    cand = np.arange(0, 400, 2)  # only even rows are candidates
    got = FI.front_proxy(err, cost, cand, n=30)
    assert len(got) >= 30 and set(got) <= set(cand.tolist()) and len(set(got)) == len(got)
    pts = np.c_[err, cost]
    layers, rest = [], cand
    while sum(map(len, layers)) < 30:  # whole layers, peeled by the project's Pareto mask
        layer = rest[mo.pareto_mask(pts[rest])]
        layers.append(layer)
        rest = np.setdiff1d(rest, layer)
    assert len(got) == sum(map(len, layers))
    start = 0
    for layer in layers:  # layer by layer, in order
        assert sorted(got[start : start + len(layer)].tolist()) == sorted(layer.tolist())
        start += len(layer)


def test_summary_factor_is_the_pooled_quantile_and_cv_leaves_the_device_out():
    rng = np.random.default_rng(1)
    cells = {
        f"d{i}": {
            str(k): {
                "z": np.abs(rng.normal(0, 1.0 + 0.1 * i, 200)),
                "coverage_random": 0.8,
                "kind": "none",
            }
            for k in (0, 20)
        }
        for i in range(4)
    }
    s = FI.summarise(cells)
    pooled = np.concatenate([c["z"] for d in cells.values() for c in d.values()])
    assert s["factor"] == pytest.approx(np.quantile(pooled, 0.8), abs=1e-4)
    assert s["mean_coverage"]["after"] == pytest.approx(0.8, abs=0.01)
    others = np.concatenate([c["z"] for n, d in cells.items() if n != "d3" for c in d.values()])
    assert s["devices"]["d3"]["factor_cv"] == pytest.approx(np.quantile(others, 0.8), abs=1e-4)
    # the widest device is under-covered by the factor of the others
    assert s["devices"]["d3"]["0"]["cv"] < 0.8 and s["cells"] == 8
