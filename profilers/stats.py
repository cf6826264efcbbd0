"""Latency statistics over timed runs (pure numpy)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """Milliseconds per run, except ``cv`` (std / mean, unitless, population std)."""

    median_ms: float
    mean_ms: float
    p90_ms: float
    iqr_ms: float
    cv: float
    min_ms: float
    n: int


def latency_stats(times_ns: Sequence[int] | np.ndarray) -> LatencyStats:
    """Statistics of per-run durations in nanoseconds (percentiles: numpy's linear method)."""
    t = np.asarray(times_ns, dtype=np.float64)  # stay in ns (exact integers) until the end
    if t.size == 0:
        raise ValueError("latency_stats needs at least one timed run")
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ValueError("run durations must be finite and non-negative")
    q25, median, q75, p90 = np.percentile(t, [25, 50, 75, 90])
    mean = float(t.mean())
    return LatencyStats(
        median_ms=float(median) / 1e6,
        mean_ms=mean / 1e6,
        p90_ms=float(p90) / 1e6,
        iqr_ms=float(q75 - q25) / 1e6,
        cv=float(t.std() / mean) if mean > 0 else 0.0,
        min_ms=float(t.min()) / 1e6,
        n=int(t.size),
    )
