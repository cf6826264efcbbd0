"""Multi-objective kernels: checked against brute force and against pymoo / scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hilnas.pipeline import mo


def brute_pareto(F):
    n = len(F)
    out = np.ones(n, dtype=bool)
    for i in range(n):
        for j in range(n):
            if np.all(F[j] <= F[i]) and np.any(F[j] < F[i]):
                out[i] = False
                break
    return out


# ----------------------------------------------------------------------------- Pareto
@pytest.mark.parametrize("m", [2, 3, 4])
@pytest.mark.parametrize("seed", range(5))
def test_pareto_mask_matches_brute_force(m, seed):
    rng = np.random.default_rng(seed)
    F = rng.integers(0, 6, size=(120, m)).astype(float)  # many ties and duplicates
    assert np.array_equal(mo.pareto_mask(F), brute_pareto(F))


def test_pareto_mask_edge_cases():
    assert mo.pareto_mask(np.zeros((0, 2))).shape == (0,)
    assert mo.pareto_mask([[1.0, 2.0]]).tolist() == [True]
    F = np.array([[1, 1], [1, 1], [0, 2], [2, 0], [2, 2]], float)
    assert mo.pareto_mask(F).tolist() == [True, True, True, True, False]
    assert mo.pareto_front(F).tolist() == [[0, 2], [1, 1], [2, 0]]
    with pytest.raises(ValueError, match="NaN"):
        mo.pareto_mask([[np.nan, 1.0]])


# ----------------------------------------------------------------------------- HV
def test_hypervolume_2d_by_hand():
    F = np.array([[0.2, 0.8], [0.5, 0.5], [0.8, 0.2], [0.9, 0.9]])
    # union of rectangles up to (1, 1): 0.8*0.2 + 0.5*0.3 + 0.2*0.3
    assert mo.hypervolume(F, [1, 1]) == pytest.approx(0.16 + 0.15 + 0.06)
    assert mo.hypervolume([[0.0, 0.0]], [1, 1]) == pytest.approx(1.0)
    assert mo.hypervolume([[1.0, 0.0], [2.0, -1.0]], [1, 1]) == 0.0  # nothing strictly inside
    assert mo.hypervolume(np.zeros((0, 2)), [1, 1]) == 0.0
    with pytest.raises(ValueError, match="objectives"):
        mo.hypervolume(F, [1, 1, 1])


@pytest.mark.parametrize("m", [2, 3, 4])
@pytest.mark.parametrize("seed", range(4))
def test_hypervolume_agrees_with_pymoo(m, seed):
    from pymoo.indicators.hv import HV

    rng = np.random.default_rng(100 + seed)
    F = rng.random((200, m)) * 1.2  # some points outside the box
    ref = np.ones(m)
    inside = F[np.all(F < ref, axis=1)]
    assert mo.hypervolume(F, ref) == pytest.approx(float(HV(ref_point=ref)(inside)), rel=1e-12)


def test_hypervolume_3d_monte_carlo():
    rng = np.random.default_rng(7)
    F = rng.random((30, 3))
    samples = rng.random((200_000, 3))
    dom = np.zeros(len(samples), dtype=bool)
    for f in F:
        dom |= np.all(samples >= f, axis=1)
    assert mo.hypervolume(F, [1, 1, 1]) == pytest.approx(dom.mean(), abs=5e-3)


# ----------------------------------------------------------------------------- IGD
def test_igd_by_hand_and_against_pymoo():
    from pymoo.indicators.igd import IGD

    front = np.array([[0.0, 1.0], [1.0, 0.0]])
    assert mo.igd(front, front) == 0.0
    assert mo.igd([[0.0, 0.0]], front) == pytest.approx(1.0)
    assert mo.igd(np.zeros((0, 2)), front) == math.inf
    rng = np.random.default_rng(3)
    A, Z = rng.random((57, 3)), rng.random((91, 3))
    assert mo.igd(A, Z) == pytest.approx(float(IGD(Z)(A)), rel=1e-12)


def test_normalize():
    F = np.array([[1.0, 10.0], [3.0, 30.0]])
    out = mo.normalize(F, [1, 10], [3, 30])
    assert out.tolist() == [[0.0, 0.0], [1.0, 1.0]]
    assert mo.normalize(F, [1, 5], [3, 5])[:, 1].tolist() == [0.0, 0.0]  # zero span -> 0
    with pytest.raises(ValueError, match="below"):
        mo.normalize(F, [3, 0], [1, 1])


# ----------------------------------------------------------------------------- min-norm
def qp_min_norm(G):
    """Brute force: scipy SLSQP from many starts on the simplex."""
    from scipy.optimize import minimize

    n = G.shape[0]
    M = G @ G.T
    best = math.inf
    rng = np.random.default_rng(0)
    for x0 in [np.full(n, 1 / n), *rng.dirichlet(np.ones(n), size=5)]:
        res = minimize(
            lambda w: w @ M @ w,
            x0,
            jac=lambda w: 2 * M @ w,
            bounds=[(0, 1)] * n,
            constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}],
            method="SLSQP",
            options={"ftol": 1e-15, "maxiter": 1000},
        )
        best = min(best, float(res.x @ M @ res.x))
    return best


@pytest.mark.parametrize("n,p", [(2, 5), (3, 4), (5, 50), (13, 200), (13, 8), (20, 3)])
@pytest.mark.parametrize("seed", range(3))
def test_min_norm_matches_qp(n, p, seed):
    rng = np.random.default_rng(seed)
    G = rng.normal(size=(n, p)) + rng.normal(size=p) * 0.5  # correlated, like real gradients
    gamma, val = mo.min_norm_solver(G, return_norm=True)
    assert gamma.shape == (n,)
    assert np.all(gamma >= 0) and gamma.sum() == pytest.approx(1.0)
    assert val == pytest.approx(float(np.sum((gamma @ G) ** 2)), rel=1e-9, abs=1e-12)
    ref = qp_min_norm(G)
    assert val <= ref + 1e-6 * max(1.0, ref)
    assert val == pytest.approx(ref, rel=1e-3, abs=1e-7)


def test_min_norm_exact_for_two():
    g1, g2 = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    assert mo.min_norm_solver(np.stack([g1, g2])) == pytest.approx([0.5, 0.5])
    # one gradient inside the other's direction but shorter: all weight on it
    assert mo.min_norm_solver([np.array([1.0, 0.0]), np.array([3.0, 0.0])]) == pytest.approx([1, 0])
    # opposite gradients cancel
    gamma, val = mo.min_norm_solver(np.array([[1.0, 2.0], [-2.0, -4.0]]), return_norm=True)
    assert val == pytest.approx(0.0, abs=1e-12)
    assert gamma == pytest.approx([2 / 3, 1 / 3])
    assert mo.min_norm_solver(np.array([[1.0, 2.0]])).tolist() == [1.0]


def test_min_norm_torch_in_torch_out():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    G = rng.normal(size=(6, 30))
    expected = mo.min_norm_solver(G)
    gt = torch.tensor(G, dtype=torch.float32, requires_grad=True)
    out = mo.min_norm_solver(gt)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (6,)
    assert out.numpy() == pytest.approx(expected, abs=1e-4)
    listed = mo.min_norm_solver([torch.tensor(g).reshape(5, 6) for g in G])
    assert listed.dtype == torch.float64
    assert listed.numpy() == pytest.approx(expected, abs=1e-9)


def test_min_norm_rejects_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        mo.min_norm_solver(np.array([[1.0, np.nan], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="at least one"):
        mo.min_norm_solver(np.zeros((0, 3)))


# ----------------------------------------------------------------------------- preferences
def test_simplex_grid_and_uniform_preferences():
    g = mo.simplex_grid(3, 4)
    assert g.shape == (math.comb(6, 2), 3)
    assert np.allclose(g.sum(1), 1) and np.all(g >= 0)
    assert len(np.unique(g, axis=0)) == len(g)
    assert mo.simplex_grid(2, 2).tolist() == [[1, 0], [0.5, 0.5], [0, 1]]
    assert mo.uniform_preferences(2, 24).shape == (24, 2)
    u3 = mo.uniform_preferences(3, 24)
    assert len(u3) == 21 and np.allclose(u3.sum(1), 1)
    assert len(mo.uniform_preferences(3, 2)) == 3  # never fewer than the corners
    d = mo.dirichlet(3, 10, rng=0)
    assert d.shape == (10, 3) and np.allclose(d.sum(1), 1)
    assert np.array_equal(d, mo.dirichlet(3, 10, rng=0))
    with pytest.raises(ValueError):
        mo.simplex_grid(2, 0)


def test_validate_preference_messages():
    assert mo.validate_preference([0.25, 0.75], 2).tolist() == [0.25, 0.75]
    with pytest.raises(ValueError, match="3 components but there are 2 objectives"):
        mo.validate_preference([0.2, 0.3, 0.5], 2)
    with pytest.raises(ValueError, match="negative"):
        mo.validate_preference([-0.5, 1.5], 2)
    with pytest.raises(ValueError, match="sums to 0.9, not 1"):
        mo.validate_preference([0.4, 0.5], 2)
    with pytest.raises(ValueError, match=r"\(error, latency_ms\)"):
        mo.validate_preference([1.0], objectives=("error", "latency_ms"))
    with pytest.raises(ValueError, match="NaN"):
        mo.validate_preference([np.nan, 1.0], 2)
    assert mo.parse_preference("0.3, 0.7", 2).tolist() == [0.3, 0.7]
    with pytest.raises(ValueError, match="comma-separated"):
        mo.parse_preference("0.3;0.7", 2)
    with pytest.raises(ValueError, match="not 1"):
        mo.parse_preference("1,1", 2)  # not silently renormalised
