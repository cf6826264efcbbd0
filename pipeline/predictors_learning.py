"""Per-device cost predictors that keep learning from measurements, for any registered space.

A device joins with its values on the space's reference architectures; a cross-device
meta-predictor turns them into a zero-shot prediction for every architecture (the *prior*:
:class:`~hilnas.pipeline.predictors.MetaPredictor` for NB201,
:class:`~hilnas.pipeline.predictors_space.SpacePredictor` for any space). Every further
measurement of the device then feeds a *residual model* on the log scale,

    log cost(a) = log prior(a) + r(a),

where ``r`` is one of, from simplest to richest (:data:`CANDIDATES`):

- ``none``: ``r = 0`` (zero-shot);
- ``constant``: one shift (the device is uniformly slower or faster than predicted);
- ``linear``: ``a + b log prior(a)`` (the device's costs spread more or less than predicted);
- ``ridge``: ridge regression on ``[1, log prior, standardised architecture features]``;
- ``boost``: the ridge model plus gradient-boosted trees (scikit-learn's
  ``HistGradientBoostingRegressor``) fit on its residuals from ``[features, log prior]``: what
  a linear model cannot express (interactions between operations, edges and layers).

The residual model is chosen by K-fold cross-validation over the device's non-reference
measurements (the reference measurements are in every training fold: the prior was conditioned
on them) at the current data size, and a richer candidate replaces the simpler one only when its
cross-validated mean squared log error is lower by more than ``margin`` (default
:data:`MARGIN`, 3 %) and by more than one standard error of the paired per-architecture
difference (:data:`SE_RULE`). Residuals are winsorised (:func:`_winsorise`) and every model's
level is re-centred on the median of its training residuals. So more data never switches to a model that cross-validation does not
find better, and the prior is kept when nothing beats it.

Promises:

- Predictions are strictly positive, in the device's units, and never below
  :func:`~hilnas.pipeline.predictors.cost_floor` of the values the model was given (0.8x the
  smallest); a device whose measured values are all equal is predicted flat at their median
  (as :func:`hilnas.pipeline.predictors_device.bounded` does).
- Intervals (:meth:`LearningPredictor.predict_interval`): split-conformal on the log scale. The
  half-width is the ``level`` quantile of the absolute out-of-fold log residuals of the chosen
  model on the non-reference measurements, pooled with the zero-shot width (``zero_shot_width``,
  the log error of the prior on other devices) as ``PRIOR_WEIGHT`` (10) pseudo-residuals; with no
  further measurements the zero-shot width alone is used. Coverage is a benchmark figure
  (:mod:`hilnas.pipeline.benchmarks.predictors_learning`), not a guarantee.
- Partial embeddings (:func:`impute_references`): at least :data:`MIN_KNOWN_SHARE` (60 %, 6 of
  10) of the reference values must be known; the rest are imputed from training devices by
  ridge regression in log space, with a widening factor for the intervals.
- Active selection (:func:`select_next`): bootstrap disagreement of the residual model plus
  diversity (greedy max-min distance in standardised feature space, over a random subset of
  the candidates so that the picks stay representative); ``"random"`` draws uniformly.
  Deterministic for a seed.
- Bad input raises :class:`~hilnas.devices.errors.InvalidInputError` (or
  :class:`~hilnas.devices.errors.PreconditionError` when the model is used before ``fit``) with
  a one-line message naming the fix. Nothing is written to disk; :meth:`LearningPredictor.summary`
  is plain JSON-able data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hilnas.devices.errors import InvalidInputError, PreconditionError, check_number
from hilnas.pipeline.predictors import FLAT_SPREAD, cost_floor, is_flat

__all__ = [
    "CANDIDATES",
    "DEFAULT_LEVEL",
    "MARGIN",
    "MIN_KNOWN_SHARE",
    "STRATEGIES",
    "ZERO_SHOT_WIDTH",
    "FLAT_SPREAD",
    "ImputedReferences",
    "LearningPredictor",
    "conformal_width",
    "impute_references",
    "learning_predictor",
    "nb201_features",
    "select_next",
    "space_features",
]

#: Residual models, simplest first; each is used only when it beats the previous choice.
CANDIDATES: tuple[str, ...] = ("none", "constant", "linear", "ridge", "boost")
#: Fewest non-reference measurements for which a candidate is tried at all.
MIN_EXTRA: dict[str, int] = {"none": 0, "constant": 5, "linear": 8, "ridge": 15, "boost": 50}
#: A richer candidate must cut the cross-validated mean squared log error by this share.
MARGIN = 0.03
#: ... and its paired per-architecture gain must exceed this many standard errors.
SE_RULE = 1.0
RIDGE_ALPHAS: tuple[float, ...] = (1.0, 10.0, 100.0)
DEFAULT_LEVEL = 0.8
#: Zero-shot log half-width used when a caller gives none: the 80 % quantile of the absolute log
#: error of the NB201 meta-predictor pooled over the 27 reference configurations, each predicted
#: leave-one-device-out from its 10 reference values (the benchmark's ``zero_shot_width``; it
#: is 0.07-0.16 on phones and CPUs, 0.01-0.06 on GPUs, so per device it is only a start).
ZERO_SHOT_WIDTH = 0.08
#: The zero-shot width counts as this many pseudo-residuals in the conformal quantile.
PRIOR_WEIGHT = 10
#: Smallest clipping half-width (log scale) of the winsorised residuals.
WINSOR_MIN = 0.1
#: Share of the reference values that must be known for a device to join (6 of 10).
MIN_KNOWN_SHARE = 0.6
STRATEGIES: tuple[str, ...] = ("active", "random")
_BOOST_PARAMS = {
    "max_iter": 150,
    "learning_rate": 0.08,
    "max_leaf_nodes": 15,
    "l2_regularization": 1.0,
}


# ----------------------------------------------------------------------------------------------
# features of the registered spaces
# ----------------------------------------------------------------------------------------------
def nb201_features(codes: np.ndarray | Sequence[Sequence[int]]) -> np.ndarray:
    """NB201 features: the meta-predictor's ``v3`` set (ops per edge, ops on live edges, live op
    counts, distinct pools, additions, disconnected) plus the space's log cost features."""
    from hilnas.pipeline.predictors_features import FEATURE_SETS, features_np
    from hilnas.pipeline.spaces import get_space

    c = np.asarray(codes, dtype=np.int64).reshape(-1, 6)
    cost = get_space("nb201").cost_features_batch([tuple(r) for r in c]).astype(np.float64)
    return np.concatenate([features_np(c, FEATURE_SETS["v3"]), np.log1p(np.maximum(cost, 0))], 1)


def space_features(space: str) -> Callable[[np.ndarray], np.ndarray]:
    """The feature function of a registered space: :func:`nb201_features` for ``nb201``, the
    space-generic masked one-hot + log cost features otherwise
    (:func:`hilnas.pipeline.predictors_space.arch_features`)."""
    if space == "nb201":
        return nb201_features
    from hilnas.pipeline.predictors_space import arch_features
    from hilnas.pipeline.spaces import get_space

    sp = get_space(space)

    def feats(codes: np.ndarray) -> np.ndarray:
        return arch_features(sp, [tuple(int(v) for v in r) for r in np.asarray(codes)])

    return feats


# ----------------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------------
def _positive(name: str, values: np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    bad = np.flatnonzero(~np.isfinite(v) | (v <= 0))
    if len(bad):
        raise InvalidInputError(
            f"{name} must be finite and > 0, but {len(bad)} are not (first at position "
            f"{int(bad[0])}: {v[bad[0]]!r}); remeasure or drop them"
        )
    return v


def _winsorise(r: np.ndarray) -> np.ndarray:
    """Log residuals clipped to median +- max(4 MAD-sigmas, ``WINSOR_MIN``): a few measurement
    artefacts (NB201's pixel3 / raspi4 have values near 0 ms) must not steer the fit or the
    cross-validation."""
    med = float(np.median(r))
    c = max(4.0 * 1.4826 * float(np.median(np.abs(r - med))), WINSOR_MIN)
    return np.clip(r, med - c, med + c)


def _cv_loss(err: np.ndarray) -> float:
    """Mean squared (winsorised) log error."""
    return float(np.mean(err**2))


def _check_level(level: float) -> float:
    return float(
        check_number(
            "level", level, low=0.5, high=0.99, integer=False, fix="pass a level from 0.5 to 0.99"
        )
    )


def conformal_width(
    abs_residuals: np.ndarray,
    level: float = DEFAULT_LEVEL,
    *,
    prior_width: float | None = None,
    prior_weight: int = PRIOR_WEIGHT,
) -> float:
    """Split-conformal half-width (log scale) from absolute held-out log residuals.

    The ``ceil((n + 1) level)``-th smallest of the ``n`` residuals, with ``prior_width`` added
    as ``prior_weight`` pseudo-residuals when given. Raises InvalidInputError when there is
    nothing to compute it from.
    """
    level = _check_level(level)
    r = np.abs(np.asarray(abs_residuals, dtype=np.float64).reshape(-1))
    r = r[np.isfinite(r)]
    if prior_width is not None:
        r = np.concatenate([r, np.full(int(prior_weight), float(prior_width))])
    if not len(r):
        raise InvalidInputError(
            "a conformal width needs held-out residuals or a prior width; pass prior_width="
        )
    r = np.sort(r)
    k = math.ceil((len(r) + 1) * level) - 1
    return float(r[min(k, len(r) - 1)])


class _Standardiser:
    def __init__(self, x: np.ndarray):
        self.mean = x.mean(0)
        std = x.std(0)
        self.keep = std > 1e-9
        self.std = np.where(self.keep, std, 1.0)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.std)[:, self.keep]


# ----------------------------------------------------------------------------------------------
# residual models (fit on log residuals of the prior)
# ----------------------------------------------------------------------------------------------
def _one_thread():
    """OpenMP limited to one thread: the trees are small, and on a shared machine scikit-learn's
    thread pool costs far more than it saves (measured: 35 s instead of under 1 s)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


class _Residual:
    """One fitted residual model: ``r(x, lp)`` on the log scale."""

    def __init__(self, kind: str, alpha: float = 10.0, seed: int = 0):
        self.kind, self.alpha, self.seed = kind, alpha, seed
        self.w: np.ndarray | None = None
        self.std: _Standardiser | None = None
        self.trees: Any = None
        # the median of the training residuals is added back: the level follows the bulk of
        # the architectures, not a heavy tail (what the share within +-10 % measures)
        self.offset = 0.0

    def _design(self, x: np.ndarray, lp: np.ndarray) -> np.ndarray:
        one = np.ones((len(lp), 1))
        if self.kind == "constant":
            return one
        if self.kind == "linear":
            return np.concatenate([one, lp[:, None]], 1)
        return np.concatenate([one, lp[:, None], self.std(x)], 1)

    def fit(self, x: np.ndarray, lp: np.ndarray, r: np.ndarray) -> _Residual:
        if self.kind == "none":
            return self
        if self.kind in ("ridge", "boost"):
            self.std = _Standardiser(x)
        z = self._design(x, lp)
        pen = np.full(z.shape[1], self.alpha if self.kind in ("ridge", "boost") else 1e-8)
        pen[0] = 1e-8  # the intercept is not shrunk
        self.w = np.linalg.solve(z.T @ z + np.diag(pen), z.T @ r)
        if self.kind != "boost":
            self.offset = float(np.median(r - z @ self.w))
        else:
            from sklearn.ensemble import HistGradientBoostingRegressor

            rest = r - z @ self.w
            n = len(r)
            with _one_thread():
                self.trees = HistGradientBoostingRegressor(
                    **_BOOST_PARAMS, min_samples_leaf=max(5, n // 40), random_state=self.seed
                ).fit(np.concatenate([x, lp[:, None]], 1), rest)
                fitted = self.trees.predict(np.concatenate([x, lp[:, None]], 1))
            self.offset = float(np.median(rest - fitted))
        return self

    def predict(self, x: np.ndarray, lp: np.ndarray) -> np.ndarray:
        if self.kind == "none":
            return np.zeros(len(lp))
        out = self._design(x, lp) @ self.w + self.offset
        if self.trees is not None:
            with _one_thread():
                out = out + self.trees.predict(np.concatenate([x, lp[:, None]], 1))
        return out


# ----------------------------------------------------------------------------------------------
# the per-device predictor
# ----------------------------------------------------------------------------------------------
@dataclass
class LearningPredictor:
    """Prior x learned log residual for one device (see the module docstring).

    ``prior``: codes ``(n, num_decisions)`` -> zero-shot predictions (device units, > 0), built
    from the device's reference values only. ``features``: codes -> ``(n, F)`` float features.
    ``reference_codes`` / ``reference_values``: the device's reference measurements (imputed ones
    included, see :func:`impute_references`); ``widening`` multiplies the interval's ratio
    (``hi / pred`` and ``pred / lo``) by that factor, e.g. for imputed references.
    """

    prior: Callable[[np.ndarray], np.ndarray]
    features: Callable[[np.ndarray], np.ndarray]
    reference_codes: np.ndarray
    reference_values: np.ndarray
    level: float = DEFAULT_LEVEL
    folds: int = 5
    margin: float = MARGIN
    zero_shot_width: float = ZERO_SHOT_WIDTH
    widening: float = 1.0
    seed: int = 0
    candidates: tuple[str, ...] = CANDIDATES
    # fitted state
    kind: str | None = None
    cv_mse: dict[str, float] = field(default_factory=dict)
    width: float | None = None
    n_extra: int = 0
    _model: _Residual | None = None
    _x: np.ndarray | None = None
    _lp: np.ndarray | None = None
    _r: np.ndarray | None = None
    _measured: np.ndarray | None = None
    _oof_abs: np.ndarray | None = None
    _alpha: float = RIDGE_ALPHAS[-1]

    def __post_init__(self) -> None:
        self.reference_codes = np.asarray(self.reference_codes, dtype=np.int64)
        if self.reference_codes.ndim != 2 or not len(self.reference_codes):
            raise InvalidInputError(
                "reference_codes must be a non-empty (n, num_decisions) array of codes"
            )
        self.reference_values = _positive("reference values", self.reference_values)
        if len(self.reference_values) != len(self.reference_codes):
            raise InvalidInputError(
                f"{len(self.reference_values)} reference values for "
                f"{len(self.reference_codes)} reference architectures; give one per reference"
            )
        self.level = _check_level(self.level)
        check_number("folds", self.folds, low=2, high=50)
        check_number("margin", self.margin, low=0.0, high=0.5, integer=False)
        check_number("zero_shot_width", self.zero_shot_width, low=0.0, high=10.0, integer=False)
        check_number("widening", self.widening, low=1.0, high=100.0, integer=False)
        unknown = [c for c in self.candidates if c not in CANDIDATES]
        if unknown or "none" not in self.candidates:
            raise InvalidInputError(
                f"candidates must include 'none' and come from {', '.join(CANDIDATES)}; "
                f"got {list(self.candidates)}"
            )

    # ----- fitting -----------------------------------------------------------------------
    def _log_prior(self, codes: np.ndarray) -> np.ndarray:
        p = _positive("prior predictions", self.prior(codes))
        if len(p) != len(codes):
            raise InvalidInputError("the prior returned a different number of predictions")
        return np.log(p)

    def fit(
        self,
        codes: np.ndarray | Sequence[Sequence[int]] = (),
        values: np.ndarray | Sequence[float] = (),
    ) -> LearningPredictor:
        """Fit on the references plus further measurements ``codes`` -> ``values`` (may be
        empty: zero-shot). Returns self."""
        c = np.asarray(codes, dtype=np.int64).reshape(-1, self.reference_codes.shape[1])
        v = _positive("measured values", np.asarray(values, dtype=np.float64))
        if len(v) != len(c):
            raise InvalidInputError(
                f"{len(v)} values for {len(c)} architectures; give one value per architecture"
            )
        all_c = np.concatenate([self.reference_codes, c])
        x = np.asarray(self.features(all_c), dtype=np.float64)
        return self.fit_arrays(
            x, self._log_prior(all_c), np.concatenate([self.reference_values, v])
        )

    def fit_arrays(self, x: np.ndarray, log_prior: np.ndarray, values: np.ndarray):
        """Fit from precomputed rows: the references first (``len(reference_values)`` rows),
        then the further measurements; ``log_prior`` is the log of the prior's predictions."""
        x = np.asarray(x, dtype=np.float64)
        lp = np.asarray(log_prior, dtype=np.float64).reshape(-1)
        y = _positive("measured values", values)
        n_ref = len(self.reference_values)
        if not (len(x) == len(lp) == len(y)) or len(y) < n_ref:
            raise InvalidInputError(
                "features, prior and values must have one row per measurement, references first"
            )
        r_raw = np.log(y) - lp
        r = _winsorise(r_raw)
        n_extra = len(y) - n_ref
        self.cv_mse, oof = {}, {}
        tried = [c for c in self.candidates if n_extra >= MIN_EXTRA[c]]
        extra = np.arange(n_ref, len(y))
        if n_extra >= MIN_EXTRA["constant"]:
            k = min(self.folds, n_extra)
            parts = np.array_split(np.random.default_rng(self.seed).permutation(extra), k)
            for kind in tried:
                alphas = RIDGE_ALPHAS if kind == "ridge" else (None,)
                for a in alphas:
                    name = kind if a is None else f"ridge:{a:g}"
                    pred = np.empty(len(extra))
                    for test in parts:
                        train = np.setdiff1d(np.arange(len(y)), test)
                        m = self._make(kind, a).fit(x[train], lp[train], r[train])
                        pred[test - n_ref] = m.predict(x[test], lp[test])
                    oof[name] = r[n_ref:] - pred
                    self.cv_mse[name] = _cv_loss(oof[name])
        # choose: a richer candidate only when it beats the current choice by the margin and
        # by one standard error of the paired per-architecture difference (CV noise)
        best = "none"
        for kind in tried[1:]:
            names = [n for n in self.cv_mse if n.split(":")[0] == kind]
            if not names:
                continue
            name = min(names, key=self.cv_mse.__getitem__)
            gain = oof[best] ** 2 - oof[name] ** 2
            se = float(gain.std(ddof=1) / math.sqrt(len(gain))) if len(gain) > 1 else 0.0
            if (
                self.cv_mse[name] < (1.0 - self.margin) * self.cv_mse[best]
                and float(gain.mean()) > SE_RULE * se
            ):
                best = name
        self.kind = best
        self._alpha = float(best.split(":")[1]) if ":" in best else self._best_ridge_alpha()
        self._model = self._make(best.split(":")[0], self._alpha).fit(x, lp, r)
        # intervals from the raw (not winsorised) out-of-fold errors of the chosen model
        res = np.abs(oof[best] + (r_raw - r)[n_ref:]) if best in oof else np.zeros(0)
        self._oof_abs = res
        self.n_extra = n_extra
        self.width = conformal_width(
            res, self.level, prior_width=self._prior_width(self.level), prior_weight=self._pw()
        )
        self._x, self._lp, self._r, self._measured = x, lp, r, y
        return self

    def _best_ridge_alpha(self) -> float:
        names = [n for n in self.cv_mse if n.startswith("ridge:")]
        if not names:
            return RIDGE_ALPHAS[-1]
        return float(min(names, key=self.cv_mse.__getitem__).split(":")[1])

    def _make(self, kind: str, alpha: float | None) -> _Residual:
        if kind == "boost":
            alpha = self._best_ridge_alpha() if alpha is None else alpha
        return _Residual(kind, RIDGE_ALPHAS[-1] if alpha is None else alpha, self.seed)

    # ----- prediction --------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if self._model is None:
            raise PreconditionError("this LearningPredictor is not fitted; call fit() first")

    def _bound(self, pred: np.ndarray) -> np.ndarray:
        if is_flat(self._measured):
            return np.full(np.shape(pred), float(np.median(self._measured)))
        return np.maximum(pred, cost_floor(self._measured))

    def predict_arrays(self, x: np.ndarray, log_prior: np.ndarray) -> np.ndarray:
        """Predictions (device units) from precomputed features and log prior, floored."""
        self._check_fitted()
        lp = np.asarray(log_prior, dtype=np.float64).reshape(-1)
        return self._bound(np.exp(lp + self._model.predict(np.asarray(x, np.float64), lp)))

    def interval_arrays(
        self, x: np.ndarray, log_prior: np.ndarray, level: float | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(prediction, low, high)`` from precomputed rows (see :meth:`predict_interval`)."""
        pred = self.predict_arrays(x, log_prior)
        w = self.width_at(level)
        return pred, pred * np.exp(-w), pred * np.exp(w)

    def width_at(self, level: float | None = None) -> float:
        """Log half-width of the intervals at ``level`` (default: the predictor's level),
        including the widening factor. ``zero_shot_width`` is taken as the 80 % width and
        scaled to other levels as a normal quantile would be."""
        self._check_fitted()
        if level is None or float(level) == self.level:
            w = self.width
        else:
            w = conformal_width(
                self._oof_abs, level, prior_width=self._prior_width(level), prior_weight=self._pw()
            )
        return float(w + math.log(self.widening))

    def _pw(self) -> int:
        """Pseudo-residuals of the zero-shot width: ``PRIOR_WEIGHT`` up to 10 further
        measurements, then fading as ``PRIOR_WEIGHT * 10 / n`` (one at 100)."""
        return math.ceil(PRIOR_WEIGHT * 10 / max(10, self.n_extra))

    def _prior_width(self, level: float) -> float:
        from scipy.stats import norm

        ratio = norm.ppf(0.5 + _check_level(level) / 2) / norm.ppf(0.5 + DEFAULT_LEVEL / 2)
        return float(self.zero_shot_width * ratio)

    def predict(self, codes: np.ndarray | Sequence[Sequence[int]]) -> np.ndarray:
        """Predicted costs (device units) of architecture codes, floored."""
        c = np.asarray(codes, dtype=np.int64).reshape(-1, self.reference_codes.shape[1])
        return self.predict_arrays(self.features(c), self._log_prior(c))

    def predict_interval(
        self, codes: np.ndarray | Sequence[Sequence[int]], level: float | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(prediction, low, high)`` in device units: the interval is
        ``[pred / exp(w), pred * exp(w)]`` with ``w`` the conformal log half-width."""
        c = np.asarray(codes, dtype=np.int64).reshape(-1, self.reference_codes.shape[1])
        return self.interval_arrays(self.features(c), self._log_prior(c), level)

    # ----- uncertainty for active selection ----------------------------------------------
    def uncertainty_arrays(self, x: np.ndarray, log_prior: np.ndarray, n_boot: int = 8):
        """Disagreement (std of log predictions) of a bootstrap ensemble of the residual model
        (ridge when the chosen model is simpler, so that zero-shot devices also get one)."""
        self._check_fitted()
        kind = self.kind.split(":")[0]
        kind = "ridge" if kind in ("none", "constant", "linear") else kind
        n_boot = 4 if kind == "boost" else n_boot
        rng = np.random.default_rng(self.seed + 1)
        lp = np.asarray(log_prior, np.float64).reshape(-1)
        preds = []
        n = len(self._r)
        for _ in range(n_boot):
            idx = rng.integers(0, n, n)
            m = _Residual(kind, self._alpha, self.seed).fit(
                self._x[idx], self._lp[idx], self._r[idx]
            )
            preds.append(m.predict(x, lp))
        return np.std(np.stack(preds), axis=0)

    def summary(self) -> dict[str, Any]:
        """Plain data: chosen model, CV errors, interval width, data sizes."""
        self._check_fitted()
        return {
            "kind": self.kind,
            "cv_mse_log": {k: round(v, 6) for k, v in self.cv_mse.items()},
            "level": self.level,
            "log_half_width": round(self.width_at(), 6),
            "n_references": int(len(self.reference_values)),
            "n_extra": int(self.n_extra),
            "widening": self.widening,
        }


# ----------------------------------------------------------------------------------------------
# construction for a registered space
# ----------------------------------------------------------------------------------------------
def learning_predictor(
    space: str,
    reference_values: Sequence[float] | np.ndarray,
    *,
    meta: Any = None,
    metric: str = "latency_ms",
    network: str = "unknown",
    features: Callable[[np.ndarray], np.ndarray] | None = None,
    **kwargs: Any,
) -> LearningPredictor:
    """A :class:`LearningPredictor` for a device of a registered space, from its values on the
    space's reference architectures (in reference order).

    ``meta``: the prior's model: a :class:`~hilnas.pipeline.predictors.MetaPredictor` (NB201;
    default for ``nb201``: the shipped one for ``metric``) or a
    :class:`~hilnas.pipeline.predictors_space.SpacePredictor` (any space; default for the other
    spaces: :func:`~hilnas.pipeline.predictors_space.default_predictor`, trained in tens of
    seconds). ``network`` is the NB201 embedding's network type. Further keyword arguments go to
    :class:`LearningPredictor`.
    """
    from hilnas.pipeline.spaces import get_space

    sp = get_space(space)
    refs = np.asarray(sp.reference_architectures(), dtype=np.int64)
    ref_vals = _positive("reference values", np.asarray(reference_values, np.float64))
    if len(ref_vals) != len(refs):
        raise InvalidInputError(
            f"{space} has {len(refs)} reference architectures, got {len(ref_vals)} values; "
            "impute missing ones with impute_references()"
        )
    from hilnas.pipeline.predictors import MetaPredictor, TargetEmbedding, load_meta_predictor

    if meta is None:
        if space == "nb201":
            meta = load_meta_predictor(metric)
        else:
            from hilnas.pipeline.predictors_space import default_predictor

            meta = default_predictor(space, metric)
    if isinstance(meta, MetaPredictor):
        if space != "nb201":
            raise InvalidInputError(f"a MetaPredictor is NB201-only; pass a {space} SpacePredictor")
        emb = TargetEmbedding.from_raw("device", meta.metric, ref_vals, network=network)

        def prior(codes: np.ndarray) -> np.ndarray:
            return meta.predict_codes(np.asarray(codes, np.int64), emb)

    else:
        if getattr(meta, "space", None) != space:
            raise InvalidInputError(
                f"the prior model is for space {getattr(meta, 'space', None)!r}, not {space!r}"
            )

        def prior(codes: np.ndarray) -> np.ndarray:
            return meta.predict([tuple(int(v) for v in r) for r in codes], ref_vals)

    return LearningPredictor(
        prior=prior,
        features=features or space_features(space),
        reference_codes=refs,
        reference_values=ref_vals,
        **kwargs,
    )


# ----------------------------------------------------------------------------------------------
# partial embeddings
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImputedReferences:
    """Reference values with the missing ones imputed.

    ``values``: all reference values (known ones unchanged); ``imputed``: the indices filled
    in; ``log_rmse``: per imputed index, the leave-one-training-device-out root mean squared log
    error of its imputation; ``widening``: factor for interval ratios
    (:attr:`LearningPredictor.widening`), ``exp(z * rmse)`` with ``z`` the normal quantile of
    the level and ``rmse`` the mean of the imputed indices' errors (1.0 when none is imputed).
    """

    values: np.ndarray
    imputed: tuple[int, ...]
    log_rmse: dict[int, float]
    widening: float


def impute_references(
    known: Mapping[int, float],
    table: np.ndarray | Sequence[Sequence[float]],
    *,
    names: Sequence[str] | None = None,
    min_share: float = MIN_KNOWN_SHARE,
    level: float = DEFAULT_LEVEL,
    alpha: float = 1.0,
) -> ImputedReferences:
    """Impute a device's missing reference values from training devices.

    ``known``: reference index -> measured value (> 0); ``table``: ``(devices, n_refs)`` the
    training devices' reference values. Each missing log value, minus the mean log of the known
    ones, is ridge-regressed (``alpha``) on the known ones' centred logs across the training
    devices. Raises InvalidInputError when fewer than ``ceil(min_share * n_refs)`` references
    are known (naming those to measure, by ``names`` when given), on an index out of range, a
    non-positive value, or a table with fewer than 3 devices.
    """
    t = np.asarray(table, dtype=np.float64)
    if t.ndim != 2 or t.shape[0] < 3:
        raise InvalidInputError(
            "imputation needs a (devices, references) table of at least 3 training devices"
        )
    t = _positive("training devices' reference values", t).reshape(t.shape)
    n = t.shape[1]
    label = list(names) if names is not None else [f"reference {i}" for i in range(n)]
    if len(label) != n:
        raise InvalidInputError(f"{len(label)} names for {n} references; give one per reference")
    for i, v in known.items():
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= int(i) < n:
            raise InvalidInputError(f"reference index {i!r} is out of range; use 0..{n - 1}")
        if not (
            isinstance(v, (int, float, np.floating, np.integer)) and math.isfinite(v) and v > 0
        ):
            raise InvalidInputError(
                f"{label[int(i)]} has value {v!r}; a measured value must be finite and > 0 "
                "(remeasure it or leave it out to have it imputed)"
            )
    have = sorted(int(i) for i in known)
    missing = [i for i in range(n) if i not in known]
    need = math.ceil(min_share * n)
    if len(have) < need:
        raise InvalidInputError(
            f"only {len(have)} of {n} reference values are known, at least {need} are needed; "
            f"measure {need - len(have)} more of: " + ", ".join(label[i] for i in missing)
        )
    values = np.empty(n)
    values[have] = [float(known[i]) for i in have]
    if not missing:
        return ImputedReferences(values, (), {}, 1.0)
    logs = np.log(t)
    xk = logs[:, have]
    ck = xk.mean(1, keepdims=True)
    z = xk - ck
    mine = np.log(values[have])
    z_new = mine - mine.mean()
    rmse: dict[int, float] = {}
    for j in missing:
        yj = logs[:, j] - ck[:, 0]
        w, b = _ridge_fit(z, yj, alpha)
        values[j] = float(np.exp(mine.mean() + b + z_new @ w))
        errs = []
        for d in range(len(t)):
            keep = np.arange(len(t)) != d
            wd, bd = _ridge_fit(z[keep], yj[keep], alpha)
            errs.append(float(yj[d] - (bd + z[d] @ wd)))
        rmse[j] = float(np.sqrt(np.mean(np.square(errs))))
    from scipy.stats import norm

    zq = float(norm.ppf(0.5 + _check_level(level) / 2))
    widen = math.exp(zq * float(np.mean(list(rmse.values()))))
    return ImputedReferences(values, tuple(missing), rmse, widen)


def _ridge_fit(z: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    zm, ym = z.mean(0), y.mean()
    zc = z - zm
    w = np.linalg.solve(zc.T @ zc + alpha * np.eye(z.shape[1]), zc.T @ (y - ym))
    return w, float(ym - zm @ w)


# ----------------------------------------------------------------------------------------------
# active selection
# ----------------------------------------------------------------------------------------------
def select_next(
    state: LearningPredictor,
    candidates: np.ndarray | Sequence[Sequence[int]],
    k: int,
    strategy: str = "active",
    *,
    seed: int = 0,
    candidate_features: np.ndarray | None = None,
    candidate_log_prior: np.ndarray | None = None,
    diversity: float = 1.0,
) -> np.ndarray:
    """Indices (into ``candidates``) of the ``k`` architectures to measure next.

    ``"active"``: among a random subset of ``max(ACTIVE_SUBSET * k, ACTIVE_MIN_SUBSET)``
    candidates, greedily the one maximising ``u / max(u) + diversity * d / max(d)``, where ``u``
    is the bootstrap disagreement of the fitted residual model
    (:meth:`LearningPredictor.uncertainty_arrays`) and ``d`` the distance (standardised
    features) to the nearest architecture measured or already picked. ``"random"``: uniform
    without replacement. Precomputed ``candidate_features`` / ``candidate_log_prior`` skip the
    feature and prior calls. Raises InvalidInputError on an unknown strategy or a ``k`` outside
    ``1..len(candidates)``, PreconditionError when ``state`` is not fitted.
    """
    if strategy not in STRATEGIES:
        raise InvalidInputError(
            f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}"
        )
    c = np.asarray(candidates, dtype=np.int64)
    n = len(c) if candidate_features is None else len(candidate_features)
    if n == 0:
        raise InvalidInputError("no candidate architectures to choose from; pass at least one")
    k = int(
        check_number(
            "k", k, low=1, high=n, fix=f"ask for 1 to {n} architectures (the candidates given)"
        )
    )
    if strategy == "random":
        return np.random.default_rng(seed).choice(n, k, replace=False)
    state._check_fitted()
    x = state.features(c) if candidate_features is None else candidate_features
    x = np.asarray(x, dtype=np.float64)
    lp = state._log_prior(c) if candidate_log_prior is None else candidate_log_prior
    u = state.uncertainty_arrays(x, lp)
    std = _Standardiser(np.concatenate([state._x, x]))
    return _active_pick(u, std(x), std(state._x), k, seed, diversity)


#: Active selection looks at a random subset of this many candidates per pick (at least
#: ``ACTIVE_MIN_SUBSET``): greedy max-min over the whole space picks its outliers, a random
#: subset keeps the picks representative of where the architectures are.
ACTIVE_SUBSET = 4
ACTIVE_MIN_SUBSET = 200


def _active_pick(
    u: np.ndarray, zc: np.ndarray, zm: np.ndarray, k: int, seed: int, diversity: float
) -> np.ndarray:
    n = len(u)
    rng = np.random.default_rng(seed)
    m = min(n, max(ACTIVE_SUBSET * k, ACTIVE_MIN_SUBSET))
    sub = np.sort(rng.choice(n, m, replace=False))
    zs, us = zc[sub], u[sub]
    d2 = np.full(len(sub), np.inf)
    for start in range(0, len(zm), 512):
        d2 = np.minimum(d2, _sqdist(zs, zm[start : start + 512]).min(1))
    un = us / max(float(us.max()), 1e-12)
    picked: list[int] = []
    taken = np.zeros(len(sub), dtype=bool)
    for _ in range(k):
        d = np.sqrt(np.maximum(d2, 0.0))
        score = un + diversity * d / max(float(d[~taken].max()), 1e-12)
        score[taken] = -np.inf
        j = int(np.argmax(score))
        picked.append(j)
        taken[j] = True
        d2 = np.minimum(d2, _sqdist(zs, zs[j : j + 1])[:, 0])
    return sub[np.asarray(picked, dtype=np.int64)]


def _sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
