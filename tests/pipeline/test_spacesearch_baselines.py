"""Oracle problems, random search and NSGA-II on spaces other than NB201 (gpt_s, ofa_mbv3)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("pymoo")
threadpoolctl = pytest.importorskip("threadpoolctl")

from hilnas.devices.errors import InvalidInputError, NotFoundError, PreconditionError
from hilnas.pipeline import mo
from hilnas.pipeline.spaces import get_space
from hilnas.pipeline.spaces.base import ArchitectureError, SearchSpace
from hilnas.pipeline.spacesearch.baselines import nsga2, random_search, run_baseline
from hilnas.pipeline.spacesearch.problem import (
    OracleProblem,
    canonical_batch,
    gpt_problem,
    reference_front,
    valid_front_mask,
)


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    # population-sized matrix products: BLAS threads only contend on a loaded machine
    with threadpoolctl.threadpool_limits(1):
        yield


class TinySpace(SearchSpace):
    """depth in {1, 2}; op1 (3 options); op2 (3 options) exists only when depth is 2: 12 nets."""

    name = "tiny_test"
    conditional = True
    example = "1-0"

    @property
    def decisions(self):
        return ("depth", "op1", "op2")

    @property
    def options(self):
        return (("1", "2"), ("a", "b", "c"), ("a", "b", "c"))

    def size(self):
        return 3 + 3 * 3

    def active_mask(self, arch):
        code = self.validate(arch)
        return np.array([True, True, code[0] == 1])

    def parse(self, text):  # pragma: no cover - not used here
        raise ArchitectureError("tiny_test has no strings")

    def format(self, arch):
        return "-".join(map(str, self.canonical(arch)))

    def reference_architectures(self):
        return [(0, 0, 0)]

    def build_model(self, arch, config=None):  # pragma: no cover - not used here
        raise NotImplementedError


def _tiny_oracles(nan_when_op1_zero: bool = False):
    def slow(codes):
        a = np.asarray(codes, dtype=np.float64)
        return a[:, 0] + a[:, 1] + a[:, 2]

    def err(codes):
        a = np.asarray(codes, dtype=np.float64)
        out = 10.0 - (2 * a[:, 0] + a[:, 1] + 0.5 * a[:, 2])
        if nan_when_op1_zero:
            out = np.where(a[:, 1] == 0, np.nan, out)
        return out

    return {"error": err, "latency_ms": slow}


def _tiny_problem(**kw):
    return OracleProblem(TinySpace(), "toy", ("error", "latency_ms"), _tiny_oracles(**kw))


# ----------------------------------------------------------------------------- problem
def test_hv_of_known_points_and_normalisation():
    p = OracleProblem(
        TinySpace(),
        "toy",
        ("error", "latency_ms"),
        _tiny_oracles(),
        bounds=([0.0, 0.0], [2.0, 4.0]),
    )
    assert p.hv([[1.0, 2.0]]) == pytest.approx(0.25)
    F = np.array([[0.4, 3.2], [1.6, 0.8]])  # normalised (0.2, 0.8) and (0.8, 0.2)
    assert p.hv(F) == pytest.approx(0.16 + 0.16 - 0.04)
    # a NaN row (that would dominate everything) and a row beyond the reference add nothing
    more = np.vstack([F, [[np.nan, 0.0]], [[3.0, 0.0]]])
    assert p.hv(more) == pytest.approx(0.28)
    assert p.hv(np.zeros((0, 2))) == 0.0
    assert p.hv_ratio(F[:1], F) == pytest.approx(0.16 / 0.28)
    np.testing.assert_allclose(p.normalized([[1.0, 1.0]]), [[0.5, 0.25]])
    with pytest.raises(PreconditionError, match="zero hypervolume"):
        p.hv_ratio(F, [[5.0, 5.0]])

    # sampled bounds: the whole (12-network) space, so exactly its min and max
    q = _tiny_problem()
    allF = q.evaluate([(d, a, b) for d in range(2) for a in range(3) for b in range(3)])
    np.testing.assert_allclose(q.bounds[0], allF.min(axis=0))
    np.testing.assert_allclose(q.bounds[1], allF.max(axis=0))


def test_canonical_batch_matches_space_canonical():
    for name in ("gpt_s", "ofa_mbv3"):
        space = get_space(name)
        rng = np.random.default_rng(3)
        X = rng.integers(0, np.asarray(space.option_counts), size=(40, space.num_decisions))
        got = canonical_batch(space, X)
        want = np.asarray([space.canonical(r) for r in X.tolist()])
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ArchitectureError):
        canonical_batch(get_space("ofa_mbv3"), np.full((1, 46), 7))


def test_nan_rows_never_in_a_front():
    F = np.array([[np.nan, 0.0], [1.0, 1.0], [2.0, 0.5], [0.0, np.nan], [3.0, 3.0]])
    assert valid_front_mask(F).tolist() == [False, True, True, False, False]
    p = _tiny_problem(nan_when_op1_zero=True)
    for res in (random_search(p, 12, 0), nsga2(p, 12, 0, pop_size=4)):
        assert res.invalid > 0
        assert np.all(np.isfinite(res.front))
        assert len(res.front) > 0
        assert not np.any(res.front_codes[:, 1] == 0)  # the NaN architectures
    # a gpt_s energy problem: the surrogate's <= 0 energies are NaN and stay out of the front
    g = gpt_problem("P100", ("perplexity", "energy_mj"), bounds_samples=500)
    res = random_search(g, 300, 1)
    assert res.invalid > 0  # P100's energy MLP goes <= 0 for ~17 % of the space
    assert np.all(np.isfinite(res.front))
    ref = reference_front(g, 200, 0, extra=[res.F])
    assert np.all(np.isfinite(ref)) and len(ref) > 0


def test_gpt_problem_rejects_unknown_device_and_objective():
    with pytest.raises(NotFoundError, match="a100"):
        gpt_problem("tpu_v9")
    with pytest.raises(InvalidInputError, match="perplexity, latency_ms, energy_mj"):
        gpt_problem("a100", ("error", "latency_ms"))
    with pytest.raises(InvalidInputError, match="choose from"):
        OracleProblem(TinySpace(), "toy", ("accuracy", "latency_ms"), _tiny_oracles())
    with pytest.raises(InvalidInputError, match="no oracle"):
        OracleProblem(TinySpace(), "toy", ("error", "energy_mj"), _tiny_oracles())


# ----------------------------------------------------------------------------- baselines
def test_nsga2_spends_exactly_the_budget_on_distinct_canonical_gpt_archs():
    space = get_space("gpt_s")
    p = gpt_problem("a100", ("perplexity", "latency_ms", "energy_mj"), bounds_samples=500)
    res = nsga2(p, 157, seed=2)  # not a multiple of the population: the last one is cut
    assert res.evaluations == 157
    rows = [tuple(r) for r in res.codes.tolist()]
    assert len(set(rows)) == 157
    assert all(space.canonical(r) == r for r in rows)
    np.testing.assert_allclose(res.F, p.evaluate(res.codes), equal_nan=True)
    valid = np.all(np.isfinite(res.F), axis=1)
    assert mo.pareto_mask(res.front).all()
    assert len(res.front) == mo.pareto_mask(res.F[valid]).sum()
    s = res.summary()
    assert s["evaluations"] == 157 and s["method"] == "nsga2" and s["front_size"] == len(res.front)
    again = nsga2(p, 157, seed=2)
    np.testing.assert_array_equal(again.codes, res.codes)  # deterministic for a seed
    r = run_baseline("random", p, 157, 2)
    assert r.evaluations == 157 and len({tuple(x) for x in r.codes.tolist()}) == 157


def test_nsga2_initial_population_starts_from_the_given_codes():
    problem = gpt_problem("a100", ("perplexity", "latency_ms"))
    space = problem.space
    seeds = np.asarray(space.sample(7, seed=99), dtype=np.int64)
    given = np.concatenate([seeds, seeds[:2]])  # duplicates count once
    res = nsga2(problem, 200, seed=0, initial=given)
    assert res.evaluations == 200
    assert len({row.tobytes() for row in res.codes}) == 200
    np.testing.assert_array_equal(res.codes[:7], seeds)
    plain = nsga2(problem, 200, seed=0)
    assert not np.array_equal(plain.codes[:7], seeds)


def test_nsga2_beats_random_on_gpt_s():
    # measured (3 seeds, budget 400, a100 perplexity-latency): random 0.594 / 0.599 / 0.596,
    # nsga2 0.625 / 0.631 / 0.640 normalised HV (margin 0.036)
    p = gpt_problem("a100", ("perplexity", "latency_ms"), bounds_samples=2000)
    rnd = np.mean([random_search(p, 400, s).hv for s in range(3)])
    evo = np.mean([nsga2(p, 400, s).hv for s in range(3)])
    assert evo > rnd + 0.015


def test_baselines_on_ofa_mbv3_with_cost_oracles():
    space = get_space("ofa_mbv3")
    # "error" falls with parameters, latency grows with MACs: conflicting, not identical
    oracles = {
        "error": lambda codes: np.array([-space.params(c) / 1e6 for c in codes]),
        "latency_ms": lambda codes: np.array([space.flops(c) for c in codes]),
    }
    p = OracleProblem("ofa_mbv3", "proxy", ("error", "latency_ms"), oracles, bounds_samples=300)
    for res in (nsga2(p, 90, 0), random_search(p, 90, 0)):
        rows = [tuple(r) for r in res.codes.tolist()]
        assert res.evaluations == 90 and len(set(rows)) == 90
        assert all(space.canonical(r) == r for r in rows)
        assert len(res.front) >= 2 and mo.pareto_mask(res.front).all()
        assert 0 < res.hv


def test_exhausting_a_tiny_space_and_bad_budgets():
    p = _tiny_problem()
    res = nsga2(p, 12, 0, pop_size=4)  # all 12 networks: mating alone cannot find the last
    assert res.evaluations == 12 and len({tuple(r) for r in res.codes.tolist()}) == 12
    for bad in (0, -3, True, 2.5):
        with pytest.raises(InvalidInputError, match="positive integer"):
            nsga2(p, bad)
        with pytest.raises(InvalidInputError, match="positive integer"):
            random_search(p, bad)
    with pytest.raises(InvalidInputError, match="exceeds the 12 architectures"):
        nsga2(p, 13)
    with pytest.raises(InvalidInputError, match="exceeds the 12 architectures"):
        random_search(p, 13)
    with pytest.raises(InvalidInputError, match="pop_size"):
        nsga2(p, 10, pop_size=1)
    with pytest.raises(InvalidInputError, match="mutation_rate"):
        nsga2(p, 10, mutation_rate=0.0)
    with pytest.raises(InvalidInputError, match="random, nsga2"):
        run_baseline("bayesopt", p, 10)


# ----------------------------------------------------------------------------- reference
def test_reference_front_unions_extra_and_caches(tmp_path):
    p = gpt_problem("rtx2080", ("perplexity", "latency_ms"), bounds_samples=500)
    lo = p.bounds[0]
    better = np.array([lo - 1.0, [np.nan, -1e9]])  # dominates everything; a NaN row
    ref = reference_front(p, 300, 0, extra=[better], cache_dir=tmp_path)
    assert len(ref) == 1
    np.testing.assert_allclose(ref[0], lo - 1.0)
    files = list(tmp_path.glob("*.json"))
    assert len(files) == 1
    doc = json.loads(files[0].read_text())
    assert doc["fingerprint"] == p.fingerprint and len(p.fingerprint) == 64
    assert doc["evaluations"] == 300 and doc["device"] == "rtx2080"
    run = reference_front(p, 300, 0, cache_dir=tmp_path)  # read back, extra not cached
    np.testing.assert_allclose(run, np.unique(np.asarray(doc["F"]), axis=0))
    np.testing.assert_allclose(run, reference_front(p, 300, 0))  # same as computed afresh
    files[0].write_text("{not json")
    np.testing.assert_allclose(reference_front(p, 300, 0, cache_dir=tmp_path), run)
    assert json.loads(files[0].read_text())["F"]  # rewritten
    with pytest.raises(PreconditionError, match="fingerprint"):
        reference_front(_tiny_problem(), 5, cache_dir=tmp_path)


def test_benchmark_scaffold_scores_every_method_against_one_reference(tmp_path):
    from hilnas.pipeline.benchmarks import search_gpt

    b = search_gpt.SearchBenchmark(
        devices=("v100",),
        seeds=(0, 1),
        objective_sets={"ppl-lat": ("perplexity", "latency_ms")},
        reference_evaluations=300,
        bounds_samples=500,
    )
    b.run_methods({"random@60": search_gpt.baseline_method("random", 60)})
    key = ("v100", "ppl-lat")
    found = get_space("gpt_s").sample(5, seed=9)
    b.add_found("picked", {key: np.asarray(found)}, evaluations=5)
    best = b.problems[key].bounds[0] - 1.0
    b.add_method("oracle-point", {key: best[None]})
    with pytest.raises(PreconditionError, match="v100/ppl-lat"):
        b.add_method("empty", {})
    with pytest.raises(InvalidInputError, match="already"):
        b.add_method("picked", {key: best[None]})
    res = b.finish()
    cell = res["table"]["ppl-lat"]["v100"]
    assert cell["oracle-point"]["mean"] == pytest.approx(1.0)  # in the reference: it is it
    assert 0 < cell["random@60"]["min"] <= cell["random@60"]["mean"] < 1.0
    assert cell["random@60"]["evaluations"] == [60, 60]
    assert cell["picked"]["evaluations"] == [5]
    assert cell["reference"]["run_hv_ratio"] < 1.0
    res["settings"] = {
        "quick": True,
        "finished": "now",
        "machine": "test",
        "load_before": {"loadavg": [0, 0, 0]},
        "load_after": {"loadavg": [0, 0, 0]},
        "total_wall_s": 0.0,
    }
    jp, mp = search_gpt.write_results(res, tmp_path, "t")
    assert json.loads(jp.read_text())["methods"] == ["random@60", "picked", "oracle-point"]
    assert "| v100 |" in mp.read_text()
