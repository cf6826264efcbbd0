"""Latency statistics (pure numpy)."""

from __future__ import annotations

import numpy as np
import pytest
from hilnas.profilers import latency_stats


def test_known_values():
    s = latency_stats([1_000_000, 2_000_000, 3_000_000, 4_000_000, 5_000_000])  # 1..5 ms
    assert (s.min_ms, s.median_ms, s.mean_ms) == (1.0, 3.0, 3.0)
    assert s.p90_ms == pytest.approx(4.6)
    assert s.iqr_ms == pytest.approx(2.0)
    assert s.cv == pytest.approx(np.std([1, 2, 3, 4, 5]) / 3)
    assert s.n == 5


def test_single_run_and_constant_runs():
    s = latency_stats([2_500_000])
    assert s.median_ms == s.p90_ms == s.min_ms == 2.5 and s.iqr_ms == 0 and s.cv == 0
    assert latency_stats([7] * 10).cv == 0


def test_ordering_on_random_data():
    rng = np.random.default_rng(0)
    s = latency_stats(rng.lognormal(13, 0.3, size=200).astype(np.int64))
    assert 0 < s.min_ms <= s.median_ms <= s.p90_ms and s.iqr_ms > 0


@pytest.mark.parametrize("bad", [[], [1, -5], [float("nan")]])
def test_bad_input(bad):
    with pytest.raises(ValueError):
        latency_stats(bad)
