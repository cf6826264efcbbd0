"""Multi-objective numeric kernels: pure functions on arrays, every objective minimised.

Callers flip signs at the edge (maximise accuracy = minimise error). Nothing here knows about
devices, search spaces or files; see ``fronts.py`` for the NB201 exact fronts built on top.

- Pareto filtering: :func:`pareto_mask`, :func:`pareto_front`.
- Indicators: :func:`hypervolume` (exact; an O(n log n) sweep for two objectives, pymoo's
  indicator, backed by moocore, for more), :func:`igd`.
- :func:`normalize` to [0, 1] with given bounds.
- :func:`min_norm_solver`: the min-norm point of the convex hull of n gradients (MGDA,
  Frank-Wolfe; exact for n <= 2), for numpy arrays or torch tensors.
- Preference vectors: :func:`simplex_grid` (Das-Dennis), :func:`uniform_preferences`,
  :func:`dirichlet`, and :func:`validate_preference` / :func:`parse_preference`, which reject a
  wrong vector with a message that says why and never renormalise silently.
"""

from __future__ import annotations

import itertools
import math
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
from hilnas.devices.errors import InvalidInputError

__all__ = [
    "PREFERENCE_TOLERANCE",
    "dirichlet",
    "hypervolume",
    "igd",
    "min_norm_solver",
    "normalize",
    "pareto_front",
    "pareto_mask",
    "parse_preference",
    "simplex_grid",
    "uniform_preferences",
    "validate_preference",
]

#: How far from 1 the components of a preference vector may sum (absolute).
PREFERENCE_TOLERANCE = 1e-6


def _as_matrix(F: Any, name: str = "F") -> np.ndarray:
    """A finite float64 (n, m) matrix; a 1-D input is one point."""
    arr = np.asarray(F, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :] if arr.size else arr.reshape(0, 0)
    if arr.ndim != 2:
        raise InvalidInputError(
            f"{name} must be a 2-D array (points x objectives), got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise InvalidInputError(f"{name} contains NaN or infinite values")
    return arr


# ----------------------------------------------------------------------------- Pareto
def pareto_mask(F: Any) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``F`` (n points x m objectives, minimised).

    A point is dominated if another point is <= in every objective and < in at least one.
    Duplicated non-dominated points are all kept.
    """
    F = _as_matrix(F)
    n = F.shape[0]
    if n == 0:
        return np.zeros(0, dtype=bool)
    if F.shape[1] == 2:
        return _pareto_mask_2d(F)
    mask = np.ones(n, dtype=bool)
    # Visit points in lexicographic order: a point can only be dominated by an earlier one.
    order = np.lexsort(F.T[::-1])
    front: list[int] = []
    for i in order:
        f = F[i]
        if front:
            P = F[front]
            dominated = np.any(np.all(P <= f, axis=1) & np.any(P < f, axis=1))
            if dominated:
                mask[i] = False
                continue
        front.append(i)
    return mask


def _pareto_mask_2d(F: np.ndarray) -> np.ndarray:
    order = np.lexsort((F[:, 1], F[:, 0]))  # by f0, then f1
    mask = np.zeros(F.shape[0], dtype=bool)
    best_f1 = math.inf
    best_f0_at = math.nan  # f0 of the point that set best_f1
    for i in order:
        f0, f1 = F[i]
        if f1 < best_f1:
            mask[i] = True
            best_f1, best_f0_at = f1, f0
        elif f1 == best_f1 and f0 == best_f0_at:
            mask[i] = True  # exact duplicate of a front point
    return mask


def pareto_front(F: Any) -> np.ndarray:
    """The non-dominated rows of ``F``, unique, sorted lexicographically."""
    F = _as_matrix(F)
    P = np.unique(F[pareto_mask(F)], axis=0)
    return P


# ----------------------------------------------------------------------------- indicators
def hypervolume(F: Any, ref: Sequence[float] | np.ndarray) -> float:
    """Exact hypervolume dominated by ``F`` and bounded by the reference point ``ref``.

    Minimisation; points that do not strictly dominate ``ref`` contribute nothing. Two objectives
    use an exact sweep; three or more use pymoo's indicator (moocore's exact algorithms).
    """
    ref = np.asarray(ref, dtype=np.float64).reshape(-1)
    F = _as_matrix(F)
    if F.shape[0] == 0:
        return 0.0
    if F.shape[1] != ref.size:
        raise InvalidInputError(
            f"reference point has {ref.size} objectives but F has {F.shape[1]} columns"
        )
    if not np.all(np.isfinite(ref)):
        raise InvalidInputError("reference point contains NaN or infinite values")
    F = F[np.all(F < ref, axis=1)]
    if F.shape[0] == 0:
        return 0.0
    F = F[pareto_mask(F)]
    if F.shape[1] == 1:
        return float(ref[0] - F[:, 0].min())
    if F.shape[1] == 2:
        return _hv_2d(F, ref)
    from pymoo.indicators.hv import HV

    return float(HV(ref_point=ref)(F))


def _hv_2d(F: np.ndarray, ref: np.ndarray) -> float:
    """Sweep over non-dominated points sorted by the first objective."""
    order = np.lexsort((F[:, 1], F[:, 0]))
    F = F[order]
    total = 0.0
    prev_f1 = ref[1]
    for f0, f1 in F:
        if f1 < prev_f1:
            total += (ref[0] - f0) * (prev_f1 - f1)
            prev_f1 = f1
    return float(total)


def igd(F: Any, front: Any) -> float:
    """Inverted generational distance: the mean, over the points of ``front``, of the Euclidean
    distance to the nearest point of ``F`` (lower is better; 0 when ``F`` covers the front).

    ``F`` empty gives ``inf``.
    """
    Z = _as_matrix(front, "front")
    F = _as_matrix(F)
    if Z.shape[0] == 0:
        raise InvalidInputError("igd: the reference front is empty")
    if F.shape[0] == 0:
        return math.inf
    if F.shape[1] != Z.shape[1]:
        raise InvalidInputError(f"igd: F has {F.shape[1]} objectives, the front {Z.shape[1]}")
    dmin = np.empty(Z.shape[0])
    step = max(1, 2_000_000 // max(1, F.shape[0]))
    for s in range(0, Z.shape[0], step):
        d = Z[s : s + step, None, :] - F[None, :, :]
        dmin[s : s + step] = np.sqrt(np.min(np.einsum("ijk,ijk->ij", d, d), axis=1))
    return float(dmin.mean())


def normalize(F: Any, lo: Any, hi: Any) -> np.ndarray:
    """``(F - lo) / (hi - lo)`` per objective; an objective with ``hi == lo`` maps to 0.

    ``lo`` and ``hi`` broadcast against the columns of ``F``; ``hi < lo`` is an error.
    """
    arr = np.asarray(F, dtype=np.float64)
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    if np.any(hi < lo):
        raise InvalidInputError(f"normalize: upper bounds {hi} below lower bounds {lo}")
    span = hi - lo
    safe = np.where(span > 0, span, 1.0)
    out = (arr - lo) / safe
    return np.where(span > 0, out, 0.0)


# ----------------------------------------------------------------------------- min-norm
def _min_norm_2(v11: float, v12: float, v22: float) -> tuple[float, float]:
    """min_{c in [0,1]} |c x1 + (1-c) x2|^2 from the Gram entries; returns (c, value)."""
    if v12 >= v11:
        return 1.0, v11
    if v12 >= v22:
        return 0.0, v22
    denom = v11 + v22 - 2.0 * v12
    if denom <= 0.0:
        return 1.0, v11
    c = (v22 - v12) / denom
    c = min(1.0, max(0.0, c))
    return c, v22 + c * (v12 - v22)


def _gram(grads: Any) -> tuple[np.ndarray, Any]:
    """Gram matrix (float64 numpy) and a callback that converts the weights to the input's type."""
    torch = sys.modules.get("torch")  # a tensor input means torch is already imported

    if torch is not None and (
        isinstance(grads, torch.Tensor)
        or (
            isinstance(grads, (list, tuple))
            and grads
            and all(isinstance(g, torch.Tensor) for g in grads)
        )
    ):
        if isinstance(grads, torch.Tensor):
            G = grads.unsqueeze(0) if grads.ndim == 1 else grads.reshape(grads.shape[0], -1)
        else:
            G = torch.stack([g.reshape(-1) for g in grads])
        G = G.detach()
        G64 = G.double()
        if not bool(torch.isfinite(G64).all()):
            raise InvalidInputError("min_norm_solver: gradients contain NaN or infinite values")
        M = (G64 @ G64.T).cpu().numpy()
        dev, dt = G.device, (G.dtype if G.dtype.is_floating_point else torch.float32)
        return M, lambda w: torch.as_tensor(w, dtype=dt, device=dev)
    if isinstance(grads, (list, tuple)):
        G = np.stack([np.asarray(g, dtype=np.float64).reshape(-1) for g in grads])
    else:
        G = np.asarray(grads, dtype=np.float64)
        if G.ndim == 1:
            G = G[None, :]
        elif G.ndim > 2:
            G = G.reshape(G.shape[0], -1)
    if not np.all(np.isfinite(G)):
        raise InvalidInputError("min_norm_solver: gradients contain NaN or infinite values")
    return G @ G.T, lambda w: w


def min_norm_solver(
    grads: Any, *, max_iter: int = 10_000, tol: float = 1e-12, return_norm: bool = False
) -> Any:
    """Weights ``gamma`` (n,) on the simplex minimising ``|sum_i gamma_i g_i|`` (MGDA).

    ``grads`` is an (n, p) numpy array or torch tensor, or a sequence of n arrays/tensors of
    equal size (each flattened). The solver works on the Gram matrix (float64): the exact
    solution for n <= 2, else Frank-Wolfe (the pairwise variant, exact line search) started
    from the best pair as in MGDA (Sener & Koltun 2018), stopped when the pairwise gap falls
    below ``tol`` times the largest squared gradient norm.
    Returns a numpy array for numpy input, a tensor on the input's device for torch input;
    with ``return_norm`` a tuple ``(gamma, squared norm of the combination)``.
    """
    M, convert = _gram(grads)
    n = M.shape[0]
    if n == 0:
        raise InvalidInputError("min_norm_solver: need at least one gradient")
    if n == 1:
        gamma = np.ones(1)
        val = float(M[0, 0])
    elif n == 2:
        c, val = _min_norm_2(M[0, 0], M[0, 1], M[1, 1])
        gamma = np.array([c, 1.0 - c])
    else:
        gamma, val = _frank_wolfe(M, max_iter=max_iter, tol=tol)
    out = convert(gamma)
    return (out, float(max(val, 0.0))) if return_norm else out


def _frank_wolfe(M: np.ndarray, *, max_iter: int, tol: float) -> tuple[np.ndarray, float]:
    n = M.shape[0]
    # Initialise with the best pair (or the best single vertex).
    best_i = int(np.argmin(np.diag(M)))
    gamma = np.zeros(n)
    gamma[best_i] = 1.0
    best = float(M[best_i, best_i])
    for i, j in itertools.combinations(range(n), 2):
        c, val = _min_norm_2(M[i, i], M[i, j], M[j, j])
        if val < best:
            best = val
            gamma = np.zeros(n)
            gamma[i], gamma[j] = c, 1.0 - c
    # Pairwise Frank-Wolfe: move weight from the worst active vertex to the best vertex with
    # an exact line search. Converges linearly on the simplex, unlike the plain variant, which
    # zig-zags when the solution lies on a face (more gradients than dimensions).
    scale = max(float(np.max(np.abs(np.diag(M)))), 1e-300)
    for _ in range(max_iter):
        Mg = M @ gamma
        t = int(np.argmin(Mg))
        active = np.flatnonzero(gamma > 0)
        s = int(active[np.argmax(Mg[active])])
        gap = float(Mg[s] - Mg[t])  # >= the Frank-Wolfe duality gap
        if gap <= tol * scale or s == t:
            break
        # direction d = e_t - e_s; f(eta) = |x + eta d|^2
        curv = float(M[t, t] + M[s, s] - 2.0 * M[t, s])
        eta = gamma[s] if curv <= 0.0 else min(gamma[s], gap / curv)
        gamma[t] += eta
        gamma[s] -= eta
        if gamma[s] < 1e-16:
            gamma[s] = 0.0
    gamma = np.clip(gamma, 0.0, None)
    gamma /= gamma.sum()
    return gamma, float(gamma @ M @ gamma)


# ----------------------------------------------------------------------------- preferences
def simplex_grid(m: int, k: int) -> np.ndarray:
    """All points of the m-simplex whose coordinates are multiples of 1/k (Das-Dennis).

    Returns ``comb(k + m - 1, m - 1)`` rows, each summing to 1, in lexicographic order of the
    first coordinate descending (for m = 2: (1, 0), ((k-1)/k, 1/k), ..., (0, 1)).
    """
    m, k = int(m), int(k)
    if m < 1:
        raise InvalidInputError(f"simplex_grid: need at least one objective, got m={m}")
    if k < 1:
        raise InvalidInputError(f"simplex_grid: need k >= 1 partitions, got k={k}")
    rows: list[tuple[int, ...]] = []

    def rec(prefix: tuple[int, ...], left: int, slots: int) -> None:
        if slots == 1:
            rows.append(prefix + (left,))
            return
        for v in range(left, -1, -1):
            rec(prefix + (v,), left - v, slots - 1)

    rec((), k, m)
    return np.asarray(rows, dtype=np.float64) / k


def uniform_preferences(m: int, n: int) -> np.ndarray:
    """About ``n`` evenly spread preference vectors for ``m`` objectives, extremes included.

    For m = 2 exactly n points; for m >= 3 the largest Das-Dennis grid with at most n points
    (at least the m corners).
    """
    m, n = int(m), int(n)
    if m < 2:
        raise InvalidInputError(f"uniform_preferences: need at least 2 objectives, got {m}")
    if n < 1:
        raise InvalidInputError(f"uniform_preferences: need at least one point, got {n}")
    if n == 1:
        return np.full((1, m), 1.0 / m)
    if m == 2:
        return simplex_grid(2, n - 1)
    k = 1
    while math.comb(k + 1 + m - 1, m - 1) <= n:
        k += 1
    return simplex_grid(m, k)


def dirichlet(m: int, n: int, rng: np.random.Generator | int | None = None, alpha: float = 1.0):
    """``n`` preference vectors drawn from a symmetric Dirichlet(alpha) on the m-simplex."""
    if int(m) < 1 or int(n) < 0:
        raise InvalidInputError(f"dirichlet: need m >= 1 and n >= 0, got m={m}, n={n}")
    if not alpha > 0:
        raise InvalidInputError(f"dirichlet: concentration must be positive, got {alpha}")
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    return gen.dirichlet(np.full(int(m), float(alpha)), size=int(n))


def validate_preference(
    r: Any, m: int | None = None, *, objectives: Sequence[str] | None = None
) -> np.ndarray:
    """Check a preference vector and return it as float64; raise ``ValueError`` saying what is
    wrong: wrong length, non-finite or negative entries, or a sum off 1 by more than
    :data:`PREFERENCE_TOLERANCE`. Never renormalises.
    """
    if objectives is not None and m is None:
        m = len(objectives)
    try:
        arr = np.asarray(r, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInputError(f"preference {r!r} is not a vector of numbers") from None
    if arr.ndim != 1:
        raise InvalidInputError(f"preference must be a 1-D vector, got shape {arr.shape}")
    names = f" ({', '.join(objectives)})" if objectives else ""
    if m is not None and arr.size != m:
        raise InvalidInputError(
            f"preference has {arr.size} components but there are {m} objectives{names}; "
            f"give one weight per objective"
        )
    if arr.size == 0:
        raise InvalidInputError("preference is empty")
    if not np.all(np.isfinite(arr)):
        raise InvalidInputError(f"preference {arr.tolist()} contains NaN or infinite values")
    if np.any(arr < 0):
        raise InvalidInputError(
            f"preference {arr.tolist()} has negative components; weights must be >= 0"
        )
    total = float(arr.sum())
    if abs(total - 1.0) > PREFERENCE_TOLERANCE:
        raise InvalidInputError(
            f"preference {arr.tolist()} sums to {total:g}, not 1; weights must sum to 1 "
            "(they are not renormalised for you)"
        )
    return arr


def parse_preference(
    text: str, m: int | None = None, *, objectives: Sequence[str] | None = None
) -> np.ndarray:
    """Parse ``"0.3,0.7"`` and validate it with :func:`validate_preference`."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise InvalidInputError(
            f"preference {text!r} is not a comma-separated list of numbers, e.g. '0.3,0.7'"
        ) from None
    return validate_preference(values, m, objectives=objectives)
