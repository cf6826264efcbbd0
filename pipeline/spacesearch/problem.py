"""Oracle problems for any registered search space: objectives, normalisation, hypervolume.

An :class:`OracleProblem` is one (space, device, objectives) triple with an *oracle* per
objective: a function from a list of canonical architecture codes to a float64 array of values,
NaN where the value is invalid (e.g. an energy surrogate that predicts <= 0). Every objective is
minimised. Scoring follows the protocol of issue 10 (HW-GPT-Bench, MODNAS arXiv 2402.18213):

- each objective is normalised per device as ``(v - lo) / (hi - lo)`` with ``lo``/``hi`` its
  minimum and maximum (NaNs ignored) over a large seeded uniform sample of the space
  (``space.sample``, 20,000 architectures by default);
- the hypervolume is taken over the valid rows only (a row with any NaN is dropped, never
  scored), in the normalised space, with reference point 1 in every objective (rows beyond it
  add nothing);
- a method is scored by :meth:`OracleProblem.hv_ratio` against a reference front
  (:func:`reference_front`: the non-dominated union of an NSGA-II run of 20,000 oracle
  evaluations and whatever else every compared method found).

:func:`gpt_problem` builds the problem for the ``gpt_s`` space from HW-GPT-Bench's MLP
surrogates (perplexity, latency in ms and energy in mJ per forward pass of 8 x 1,024 tokens;
perplexity does not depend on the device). :func:`canonical_batch` canonicalises many codes at
once (vectorised for ``gpt_s``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from hilnas.devices.errors import (
    DataIntegrityError,
    InvalidInputError,
    NotFoundError,
    PreconditionError,
)
from hilnas.pipeline import mo
from hilnas.pipeline.spaces import SearchSpace, get_space

__all__ = [
    "DEFAULT_BOUNDS_SAMPLES",
    "GPT_OBJECTIVES",
    "OBJECTIVES",
    "REFERENCE_SCHEMA",
    "Oracle",
    "OracleProblem",
    "canonical_batch",
    "gpt_problem",
    "reference_front",
    "valid_front_mask",
]

log = logging.getLogger(__name__)

#: Objective names an OracleProblem accepts, all minimised.
OBJECTIVES: tuple[str, ...] = ("perplexity", "error", "latency_ms", "energy_mj")
#: Objectives the GPT-S surrogates provide.
GPT_OBJECTIVES: tuple[str, ...] = ("perplexity", "latency_ms", "energy_mj")
#: Architectures sampled to fix the normalisation bounds.
DEFAULT_BOUNDS_SAMPLES = 20_000
REFERENCE_SCHEMA = "hilnas.reference_front/1"

#: An oracle: canonical codes -> float64 values, NaN where invalid.
Oracle = Callable[[list[tuple[int, ...]]], np.ndarray]


# ----------------------------------------------------------------------------- codes
def canonical_batch(space: SearchSpace, codes: Any) -> np.ndarray:
    """``(n, num_decisions)`` int64 array of the canonical codes of ``codes``.

    ``codes`` is an ``(n, D)`` integer array or a sequence of codes. Each is checked against the
    space (:class:`~hilnas.pipeline.spaces.base.ArchitectureError` names a bad one) and has its
    inactive decisions set to 0, as ``space.canonical`` does. Vectorised for ``gpt_s`` and for
    spaces without conditional decisions; a per-code loop otherwise.
    """
    D = space.num_decisions
    arr = np.asarray(codes)
    if arr.size == 0:
        return np.zeros((0, D), dtype=np.int64)
    if arr.ndim == 1 and arr.size == D:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != D or not np.issubdtype(arr.dtype, np.integer):
        raise InvalidInputError(
            f"{space.name}: expected architecture codes of {D} integers each, got an array of "
            f"shape {arr.shape} and dtype {arr.dtype}; pass codes from space.sample/parse"
        )
    arr = arr.astype(np.int64)
    if space.name == "gpt_s":
        from hilnas.pipeline.spaces.gpt_s.surrogates import codes_array

        return codes_array(arr)
    counts = np.asarray(space.option_counts)
    bad = (arr < 0) | (arr >= counts)
    if bad.any():
        space.validate(arr[int(np.argwhere(bad)[0, 0])])  # raises with the precise message
    if not space.conditional:
        return arr
    return np.asarray([space.canonical(row) for row in arr.tolist()], dtype=np.int64).reshape(-1, D)


def valid_front_mask(F: Any) -> np.ndarray:
    """Boolean mask of the rows of ``F`` that are valid (all finite) and non-dominated among
    the valid rows. Invalid rows are never in the mask."""
    F = np.asarray(F, dtype=np.float64)
    if F.ndim != 2:
        raise InvalidInputError(f"F must be a 2-D array (points x objectives), got {F.shape}")
    valid = np.all(np.isfinite(F), axis=1)
    mask = np.zeros(len(F), dtype=bool)
    if valid.any():
        mask[np.flatnonzero(valid)[mo.pareto_mask(F[valid])]] = True
    return mask


@functools.lru_cache(maxsize=8)
def _registered_sample(space_name: str, n: int, seed: int) -> tuple[tuple[int, ...], ...]:
    """``space.sample(n, seed)`` of a registered space, cached (drawing is the slow part)."""
    return tuple(get_space(space_name).sample(n, seed=seed))


def _bounds_sample(space: SearchSpace, n: int, seed: int) -> list[tuple[int, ...]]:
    n = min(int(n), space.size())
    try:
        registered = type(get_space(space.name)) is type(space)
    except InvalidInputError:
        registered = False
    if registered:
        return list(_registered_sample(space.name, n, seed))
    return space.sample(n, seed=seed)


# ----------------------------------------------------------------------------- problem
class OracleProblem:
    """One device's multi-objective problem on a search space, with true (oracle) objectives.

    ``space`` is a registered space's name or a :class:`SearchSpace`; ``device`` names the
    target; ``objectives`` are names from :data:`OBJECTIVES` (all minimised, at least two, no
    repeats); ``oracles`` maps each objective to a callable taking a list of canonical codes and
    returning one float64 value per code (NaN or infinite = invalid, stored as NaN).

    Normalisation bounds ``lo``/``hi`` come from ``bounds`` (a pair of length-M sequences) when
    given, else from the oracles on ``space.sample(bounds_samples, seed=bounds_seed)`` (at most
    the whole space), NaNs ignored, computed on first use. ``fingerprint`` identifies the
    oracles' data (a file's sha256); :func:`reference_front` caches only problems that have one.

    Raises :class:`InvalidInputError` for an unknown, repeated or missing objective.
    """

    def __init__(
        self,
        space: str | SearchSpace,
        device: str,
        objectives: Sequence[str],
        oracles: Mapping[str, Oracle],
        *,
        bounds: tuple[Sequence[float], Sequence[float]] | None = None,
        bounds_samples: int = DEFAULT_BOUNDS_SAMPLES,
        bounds_seed: int = 0,
        fingerprint: str = "",
    ) -> None:
        self.space: SearchSpace = get_space(space) if isinstance(space, str) else space
        if not isinstance(self.space, SearchSpace):
            raise InvalidInputError(
                f"space must be a registered space name or a SearchSpace, got {space!r}"
            )
        self.device = str(device)
        objs = tuple(str(o) for o in objectives)
        unknown = [o for o in objs if o not in OBJECTIVES]
        if unknown:
            raise InvalidInputError(
                f"unknown objective(s) {', '.join(map(repr, unknown))}; "
                f"choose from {', '.join(OBJECTIVES)}"
            )
        if len(objs) < 2 or len(set(objs)) != len(objs):
            raise InvalidInputError(
                f"objectives {objs} must be at least two distinct names from {', '.join(OBJECTIVES)}"
            )
        missing = [o for o in objs if o not in oracles or not callable(oracles[o])]
        if missing:
            raise InvalidInputError(
                f"no oracle for objective(s) {', '.join(missing)}; pass a callable for each"
            )
        self.objectives: tuple[str, ...] = objs
        self.oracles: dict[str, Oracle] = {o: oracles[o] for o in objs}
        if isinstance(bounds_samples, bool) or int(bounds_samples) < 2:
            raise InvalidInputError(
                f"bounds_samples must be an integer >= 2, got {bounds_samples!r}"
            )
        self.bounds_samples = int(bounds_samples)
        self.bounds_seed = int(bounds_seed)
        self.fingerprint = str(fingerprint)
        self._bounds: tuple[np.ndarray, np.ndarray] | None = None
        if bounds is not None:
            lo = np.asarray(bounds[0], dtype=np.float64).reshape(-1)
            hi = np.asarray(bounds[1], dtype=np.float64).reshape(-1)
            if lo.size != self.n_obj or hi.size != self.n_obj:
                raise InvalidInputError(
                    f"bounds need {self.n_obj} values each (one per objective), got "
                    f"{lo.size} and {hi.size}"
                )
            if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(hi >= lo)):
                raise InvalidInputError(f"bounds must be finite with hi >= lo, got {lo}, {hi}")
            self._bounds = (lo, hi)

    @property
    def n_obj(self) -> int:
        return len(self.objectives)

    @property
    def space_name(self) -> str:
        return self.space.name

    def __repr__(self) -> str:
        return (
            f"OracleProblem(space={self.space.name!r}, device={self.device!r}, "
            f"objectives={self.objectives!r})"
        )

    # ----- evaluation -------------------------------------------------------------------
    def evaluate(self, codes: Any) -> np.ndarray:
        """``(n, M)`` float64 objective values of ``codes`` (canonicalised first), one column
        per objective in order; NaN marks an invalid value (the oracle said NaN or inf)."""
        X = canonical_batch(self.space, codes)
        return self.evaluate_canonical(X)

    def evaluate_canonical(self, X: np.ndarray) -> np.ndarray:
        """:meth:`evaluate` for an ``(n, D)`` int64 array that is already canonical (as
        :func:`canonical_batch` returns it): no checks, no copy."""
        n = len(X)
        out = np.empty((n, self.n_obj), dtype=np.float64)
        if n == 0:
            return out
        archs = [tuple(r) for r in X.tolist()]
        for j, name in enumerate(self.objectives):
            v = np.asarray(self.oracles[name](archs), dtype=np.float64).reshape(-1)
            if v.size != n:
                raise DataIntegrityError(
                    f"oracle {name!r} returned {v.size} values for {n} architectures; it must "
                    "return one per code"
                )
            out[:, j] = np.where(np.isfinite(v), v, np.nan)
        return out

    # ----- normalisation and hypervolume --------------------------------------------------
    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """``(lo, hi)`` per objective (raw units); sampled on first use unless given.

        Raises :class:`DataIntegrityError` when an objective has no valid value in the sample.
        """
        if self._bounds is None:
            sample = _bounds_sample(self.space, self.bounds_samples, self.bounds_seed)
            F = self.evaluate_canonical(np.asarray(sample, dtype=np.int64))
            dead = [o for j, o in enumerate(self.objectives) if not np.isfinite(F[:, j]).any()]
            if dead:
                raise DataIntegrityError(
                    f"{self}: objective(s) {', '.join(dead)} are invalid (NaN) on all "
                    f"{len(F)} sampled architectures; check the oracle"
                )
            self._bounds = (np.nanmin(F, axis=0), np.nanmax(F, axis=0))
        return self._bounds

    def normalized(self, F: Any) -> np.ndarray:
        """``(F - lo) / (hi - lo)`` per objective (NaN stays NaN; ``hi == lo`` maps to 0)."""
        F = self.check_values(F)
        lo, hi = self.bounds
        return mo.normalize(F, lo, hi)

    def hv(self, F: Any) -> float:
        """Hypervolume of the valid rows of ``F`` (raw values, ``(n, M)``), normalised, with
        reference point 1 in every objective. Rows with a NaN are dropped; 0.0 when none is
        left or none dominates the reference point. Values below the sampled minimum
        normalise below 0, so a front better than the whole sample can exceed 1."""
        Fn = self.normalized(F)
        Fn = Fn[np.all(np.isfinite(Fn), axis=1)]
        if len(Fn) == 0:
            return 0.0
        return mo.hypervolume(Fn, np.ones(self.n_obj))

    def hv_ratio(self, F: Any, reference_F: Any) -> float:
        """``hv(F) / hv(reference_F)``. Raises :class:`PreconditionError` when the reference
        front has no hypervolume (nothing valid inside the reference point)."""
        ref = self.hv(reference_F)
        if not ref > 0:
            raise PreconditionError(
                f"{self}: the reference front has zero hypervolume; build it with "
                "reference_front(problem) before scoring"
            )
        return self.hv(F) / ref

    def check_values(self, F: Any) -> np.ndarray:
        """``F`` as a float64 ``(n, M)`` array (NaN allowed); :class:`InvalidInputError` for
        another shape."""
        arr = np.asarray(F, dtype=np.float64)
        if arr.ndim == 1 and arr.size == 0:
            arr = arr.reshape(0, self.n_obj)
        if arr.ndim != 2 or arr.shape[1] != self.n_obj:
            raise InvalidInputError(
                f"{self}: F must be (n, {self.n_obj}) objective values, got shape {arr.shape}"
            )
        return arr


# ----------------------------------------------------------------------------- GPT-S
def gpt_problem(
    device: str,
    objectives: Sequence[str] = ("perplexity", "latency_ms"),
    surrogates: Any = None,
    *,
    bounds_samples: int = DEFAULT_BOUNDS_SAMPLES,
    bounds_seed: int = 0,
) -> OracleProblem:
    """The ``gpt_s`` problem on one of HW-GPT-Bench's devices, oracles from its MLP surrogates
    (``surrogates``: a ``GPTSurrogates``, default the shipped ones).

    ``perplexity`` is device-independent; ``latency_ms`` and ``energy_mj`` are per forward pass
    of 8 x 1,024 tokens, energy NaN where the surrogate predicts <= 0 (invalid). Raises
    :class:`NotFoundError` for an unknown device and :class:`InvalidInputError` for an
    objective the surrogates do not provide, both naming the choices.
    """
    from hilnas.pipeline.spaces.gpt_s.surrogates import DEVICES, load_surrogates

    if device not in DEVICES:
        raise NotFoundError(f"no GPT-S device {device!r}; choose from {', '.join(DEVICES)}")
    objs = tuple(objectives)
    unknown = [o for o in objs if o not in GPT_OBJECTIVES]
    if unknown:
        raise InvalidInputError(
            f"GPT-S surrogates have no objective(s) {', '.join(map(repr, unknown))}; "
            f"choose from {', '.join(GPT_OBJECTIVES)}"
        )
    s = surrogates if surrogates is not None else load_surrogates()
    oracles: dict[str, Oracle] = {
        "perplexity": lambda codes: s.perplexity(np.asarray(codes, dtype=np.int64)),
        "latency_ms": lambda codes: s.latency_ms(np.asarray(codes, dtype=np.int64), device),
        "energy_mj": lambda codes: s.energy_mj(np.asarray(codes, dtype=np.int64), device),
    }
    return OracleProblem(
        "gpt_s",
        device,
        objs,
        oracles,
        bounds_samples=bounds_samples,
        bounds_seed=bounds_seed,
        fingerprint=str(getattr(s, "sha256", "")),
    )


# ----------------------------------------------------------------------------- reference
def _cache_key(problem: OracleProblem, evaluations: int, seed: int) -> dict[str, Any]:
    return {
        "schema": REFERENCE_SCHEMA,
        "space": problem.space.name,
        "device": problem.device,
        "objectives": list(problem.objectives),
        "evaluations": int(evaluations),
        "seed": int(seed),
        "fingerprint": problem.fingerprint,
    }


def _cache_path(cache_dir: Path, key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    name = f"{key['space']}-{key['device']}-{'-'.join(key['objectives'])}-{key['evaluations']}"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return cache_dir / f"{safe}-s{key['seed']}-{digest}.json"


def _read_cached(path: Path, key: dict[str, Any], n_obj: int) -> np.ndarray | None:
    try:
        doc = json.loads(path.read_text())
        if {k: doc.get(k) for k in key} != key:
            raise ValueError("key fields differ")
        F = np.asarray(doc["F"], dtype=np.float64)
        if F.ndim != 2 or F.shape[1] != n_obj or len(F) == 0 or not np.all(np.isfinite(F)):
            raise ValueError(f"F has shape {F.shape} or non-finite values")
        return F
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring damaged reference-front cache %s (%s); recomputing", path, exc)
        return None


def write_json_atomic(path: Path, doc: Any) -> None:
    """Write ``doc`` as JSON to ``path`` through a temporary file in the same folder and an
    atomic rename: a reader sees the old file or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(doc, fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_cached(path: Path, key: dict[str, Any], codes: np.ndarray, F: np.ndarray) -> None:
    write_json_atomic(path, dict(key, codes=codes.tolist(), F=F.tolist()))


def reference_front(
    problem: OracleProblem,
    evaluations: int = 20_000,
    seed: int = 0,
    extra: Iterable[Any] = (),
    *,
    cache_dir: str | Path | None = None,
    pop_size: int | None = None,
) -> np.ndarray:
    """The reference front: the non-dominated valid rows (unique, raw units, ``(n, M)``) of the
    union of an NSGA-II run of ``evaluations`` oracle evaluations on ``problem`` and every
    array in ``extra`` (each ``(k, M)`` raw F; NaN rows are dropped).

    With ``cache_dir`` the NSGA-II run's front is stored as JSON (atomic write) under a name
    keyed by space, device, objectives, evaluations, seed and ``problem.fingerprint``, and read
    back next time (a damaged file is recomputed); ``extra`` is never cached. Raises
    :class:`PreconditionError` for a cache request on a problem without a fingerprint.
    """
    from hilnas.pipeline.spacesearch.baselines import nsga2

    F_run: np.ndarray | None = None
    path: Path | None = None
    if cache_dir is not None:
        if not problem.fingerprint:
            raise PreconditionError(
                f"{problem} has no fingerprint, so its reference front cannot be cached safely; "
                "pass fingerprint= to OracleProblem or cache_dir=None"
            )
        key = _cache_key(problem, evaluations, seed)
        path = _cache_path(Path(cache_dir), key)
        if path.exists():
            F_run = _read_cached(path, key, problem.n_obj)
    if F_run is None:
        res = nsga2(problem, evaluations, seed, pop_size=pop_size)
        F_run = res.front
        if path is not None:
            _write_cached(path, _cache_key(problem, evaluations, seed), res.front_codes, F_run)
    parts = [F_run]
    parts += [problem.check_values(F) for F in extra]
    allF = np.concatenate(parts, axis=0)
    mask = valid_front_mask(allF)
    return np.unique(allF[mask], axis=0)
