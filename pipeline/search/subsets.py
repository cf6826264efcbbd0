"""Choosing the ``k`` points of a front that cover it best (:func:`spread_subset`): exact and
greedy hypervolume subsets for two objectives, farthest points for more."""

from __future__ import annotations

import numpy as np


def spread_subset(values: np.ndarray, k: int, ref: float = 1.1) -> np.ndarray:
    """Indices (sorted) of ``k`` rows of the mutually non-dominated ``values`` (minimised) that
    cover their front best; all rows when ``k`` is at least their number.

    Objectives are normalised to [0, 1] over ``values`` and the reference point is ``ref`` in
    each. Two objectives: the ``k`` rows of the largest hypervolume, exactly (dynamic
    programming over the front sorted by the first objective, ``O(k n^2)``). Three or more:
    the best row of each objective first, then greedily the row farthest from those chosen.
    """
    V = np.asarray(values, dtype=np.float64)
    n, m = V.shape
    if k >= n:
        return np.arange(n)
    span = V.max(0) - V.min(0)
    N = (V - V.min(0)) / np.where(span > 0, span, 1.0)
    if m == 2:
        if k * n * n <= _EXACT_SUBSET_WORK:
            return _best_hypervolume_subset_2d(N, k, ref)
        return _greedy_hypervolume_subset_2d(N, k, ref)
    chosen: list[int] = []
    for j in range(m):
        i = int(np.argmin(N[:, j] + 1e-9 * N.sum(1)))  # ties: the better other objectives
        if i not in chosen and len(chosen) < k:
            chosen.append(i)
    while len(chosen) < k:
        free = np.setdiff1d(np.arange(n), chosen)
        dist = np.linalg.norm(N[free][:, None, :] - N[chosen][None, :, :], axis=2).min(1)
        chosen.append(int(free[int(np.argmax(dist))]))
    return np.sort(np.asarray(chosen, dtype=np.int64))


#: Above this many steps (``k n^2``) the exact two-objective subset gives way to the greedy one.
_EXACT_SUBSET_WORK = 20_000_000


def _greedy_hypervolume_subset_2d(N: np.ndarray, k: int, ref: float) -> np.ndarray:
    """``k`` rows of a two-objective front ``N`` chosen greedily, each adding the most
    hypervolume to those before it (its gain is the rectangle up to its chosen neighbours)."""
    chosen: list[int] = []
    free = np.ones(len(N), dtype=bool)
    while len(chosen) < k:
        sel = np.array(sorted(chosen, key=lambda i: N[i, 0]), dtype=np.int64)
        xs, ys = N[sel, 0], N[sel, 1]
        cand = np.flatnonzero(free)
        pos = np.searchsorted(xs, N[cand, 0])
        right_x = xs[np.minimum(pos, len(sel) - 1)] if len(sel) else np.zeros(len(cand))
        left_y = ys[np.maximum(pos - 1, 0)] if len(sel) else np.zeros(len(cand))
        right_x = np.where(pos < len(sel), right_x, ref)
        left_y = np.where(pos > 0, left_y, ref)
        gain = np.clip(right_x - N[cand, 0], 0, None) * np.clip(left_y - N[cand, 1], 0, None)
        i = int(cand[int(np.argmax(gain))])
        chosen.append(i)
        free[i] = False
    return np.sort(np.asarray(chosen, dtype=np.int64))


def _best_hypervolume_subset_2d(N: np.ndarray, k: int, ref: float) -> np.ndarray:
    """The ``k`` rows of a two-objective front ``N`` (in [0, 1]) of the largest hypervolume
    with reference point ``(ref, ref)``.

    Sorted by the first objective (the second then decreases), a subset's hypervolume is
    ``sum_j (ref - x_j) (y_prev - y_j)`` with ``y_prev`` the previous chosen row's second
    objective (``ref`` for the first), so ``best[t, i]``, the largest hypervolume of ``t + 1``
    rows ending at row ``i``, follows from ``best[t - 1, p]`` for ``p < i``.
    """
    order = np.lexsort((N[:, 1], N[:, 0]))
    x, y = N[order, 0], N[order, 1]
    n = len(x)
    width = ref - x  # (n,)
    best = np.full((k, n), -np.inf)
    back = np.zeros((k, n), dtype=np.int64)
    best[0] = width * (ref - y)
    earlier = np.tril(np.ones((n, n), dtype=bool), -1).T  # earlier[p, i]: p < i
    for t in range(1, k):
        gain = best[t - 1][:, None] + width[None, :] * (y[:, None] - y[None, :])
        gain = np.where(earlier, gain, -np.inf)
        back[t] = np.argmax(gain, axis=0)
        best[t] = gain[back[t], np.arange(n)]
    i = int(np.argmax(best[k - 1]))
    picked = [i]
    for t in range(k - 1, 0, -1):
        i = int(back[t, i])
        picked.append(i)
    return np.sort(order[np.asarray(picked, dtype=np.int64)])
