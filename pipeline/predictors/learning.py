"""Per-device cost predictors that keep learning from measurements, for any registered space.

A device joins with its values on the space's reference architectures; a cross-device
meta-predictor turns them into a zero-shot prediction for every architecture (the *prior*:
:class:`~hilnas.pipeline.predictors.MetaPredictor` for NB201,
:class:`~hilnas.pipeline.predictors.space.SpacePredictor` for any space). Every further
measurement of the device then feeds a *residual model* on the log scale,

    log cost(a) = log prior(a) + r(a),

where ``r`` is one of, from simplest to richest (:data:`CANDIDATES`):

- ``none``: ``r = 0`` (zero-shot);
- ``constant``: one shift (the device is uniformly slower or faster than predicted);
- ``linear``: ``a + b log prior(a)`` (the device's costs spread more or less than predicted);
- ``kernel``: the ``linear`` model plus a Gaussian process on what it leaves (kernel ridge
  regression, RBF kernel on the standardised features and log prior; the prior is the GP's
  mean): smooth interactions between operations, edges and layers;
- ``ridge``: ridge regression on ``[1, log prior, standardised architecture features]``;
- ``boost``: the ridge model plus gradient-boosted trees (scikit-learn's
  ``HistGradientBoostingRegressor``) fit on its residuals from ``[features, log prior]``: what
  a linear model cannot express (interactions between operations, edges and layers).

``kernel`` and ``ridge`` are not nested: the order is the one that measured best on the NB201
benchmark (``kernel`` first keeps a linear fit of many noisy features from replacing a smooth
one on a few percent of cross-validated error while ranking worse, as on Pixel 2).

A *group* of architectures that no reference architecture represents (``group_column``: for
NB201 the cells with no path to the output, which some runtimes compute in ~0.01 ms) gets its
own level, the median log residual of its measured members, when at least :data:`MIN_GROUP`
are measured, that level lies outside the winsorising band of the rest, and it beats the rest's
level in leave-one-out error; the residual model is then fit on the other rows (``kind`` ends
in ``+group``).

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
  smallest; ``floor="smooth"``: :func:`smooth_floor`, strictly increasing, so architectures
  predicted below it keep their order); a device whose measured values are all equal is
  predicted flat at their median (as :func:`hilnas.pipeline.predictors.device.bounded` does).
- Intervals (:meth:`LearningPredictor.predict_interval`): split-conformal on the log scale,
  from the out-of-fold residuals of the residual model actually chosen on the non-reference
  measurements, with a zero-shot value as ``PRIOR_WEIGHT`` (10) pseudo-residuals fading as
  ``PRIOR_WEIGHT * 10 / n`` beyond 10 measurements. *Normalised* (with a ``difficulty``;
  :func:`learning_predictor` with ``ensemble=True`` where the space has a :data:`ZS_NORM_Q`;
  an option, not the default, see there): the
  half-width is ``q u(a)``, ``u(a)`` the architecture's difficulty (:func:`ensemble_difficulty`:
  how far the prior's prediction is from the prior conditioned on the nearest training
  devices, mapped to this device), ``q`` the ``level`` quantile of ``|residual| / u`` with the
  zero-shot scale ``zero_shot_scale`` as the pseudo-residuals. Otherwise one half-width per
  device, the zero-shot one from the prior's error on the device's own reference values
  (:func:`zero_shot_width_from_fit`, by a width model fit across training devices;
  ``zero_shot_width`` overrides it). Coverage is a benchmark figure
  (:mod:`hilnas.pipeline.benchmarks.predictors_learning`, before / after per device and K), not
  a guarantee.
- Partial embeddings (:func:`impute_references`): at least :data:`MIN_KNOWN_SHARE` (60 %, 6 of
  10) of the reference values must be known; the rest are imputed from training devices by
  ridge regression in log space, with a widening factor for the intervals.
- Active selection (:func:`select_next`): first, while fewer than :data:`GROUP_TARGET`
  members of the predictor's group (NB201: cells with no path to the output, which no reference
  architecture represents) are measured, up to :data:`GROUP_SHARE` of the picks from it; then
  bootstrap disagreement of the residual model plus diversity (greedy max-min distance in
  standardised feature space, over a random subset of the candidates so that the picks stay
  representative); ``"random"`` draws uniformly. Deterministic for a seed. Measured against
  random at every budget in the benchmark: the gain is the group (Raspberry Pi 4, Pixel 3);
  elsewhere it is within noise of random (greedy coverage of the feature space, with or
  without uncertainty weights, measured no better).
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
    "FLOORS",
    "MARGIN",
    "MIN_KNOWN_SHARE",
    "STRATEGIES",
    "ZERO_SHOT_WIDTH",
    "FLAT_SPREAD",
    "ImputedReferences",
    "LearningPredictor",
    "conformal_width",
    "ensemble_difficulty",
    "ensemble_log_prediction",
    "nearest_devices",
    "impute_references",
    "learning_predictor",
    "nb201_features",
    "select_next",
    "smooth_floor",
    "space_features",
]

#: Residual models, simplest first; each is used only when it beats the previous choice.
CANDIDATES: tuple[str, ...] = ("none", "constant", "linear", "kernel", "ridge", "boost")
#: Fewest non-reference measurements for which a candidate is tried at all.
MIN_EXTRA: dict[str, int] = {
    "none": 0,
    "constant": 5,
    "linear": 8,
    "ridge": 15,
    "kernel": 20,
    "boost": 50,
}
#: A richer candidate must cut the cross-validated mean squared log error by this share.
MARGIN = 0.03
#: ... and its paired per-architecture gain must exceed this many standard errors.
SE_RULE = 1.0
RIDGE_ALPHAS: tuple[float, ...] = (1.0, 10.0, 100.0)
#: Kernel ridge penalties of the ``kernel`` candidate (tried by cross-validation).
KERNEL_BETAS: tuple[float, ...] = (1.0, 10.0)
#: RBF kernel ``exp(-KERNEL_GAMMA * |z - z'|^2 / F)`` over ``F`` standardised columns.
KERNEL_GAMMA = 0.5
#: Largest number of training rows of the kernel part (a random subset beyond it).
KERNEL_MAX_ROWS = 2000
DEFAULT_LEVEL = 0.8
#: A device-independent zero-shot log half-width, for callers that want one fixed value
#: (``zero_shot_width=ZERO_SHOT_WIDTH``): the 80 % quantile of the absolute log error of the
#: NB201 meta-predictor pooled over the 27 reference configurations, each predicted
#: leave-one-device-out (the benchmark's pooled width). By default the width is per device
#: (:func:`zero_shot_width_from_fit`); this is only the value before a fit.
ZERO_SHOT_WIDTH = 0.08
#: The zero-shot width counts as this many pseudo-residuals in the conformal quantile.
PRIOR_WEIGHT = 10
#: Smallest clipping half-width (log scale) of the winsorised residuals.
WINSOR_MIN = 0.1
#: Share of the reference values that must be known for a device to join (6 of 10).
MIN_KNOWN_SHARE = 0.6
STRATEGIES: tuple[str, ...] = ("active", "random")
#: Fewest measured members of a group (``group_column``) for it to get its own level.
MIN_GROUP = 2
#: Hyperparameters tried by cross-validation, per candidate.
_PARAMS: dict[str, tuple[float, ...]] = {"ridge": RIDGE_ALPHAS, "kernel": KERNEL_BETAS}
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
    from hilnas.pipeline.predictors.features import FEATURE_SETS, features_np
    from hilnas.pipeline.spaces import get_space

    c = np.asarray(codes, dtype=np.int64).reshape(-1, 6)
    cost = get_space("nb201").cost_features_batch([tuple(r) for r in c]).astype(np.float64)
    return np.concatenate([features_np(c, FEATURE_SETS["v3"]), np.log1p(np.maximum(cost, 0))], 1)


def nb201_group_column() -> int:
    """Column of :func:`nb201_features` that flags cells with no path to the output (the
    ``disconnected`` block): some runtimes then compute almost nothing (HW-NAS-Bench's
    Raspberry Pi 4 and Pixel 3 measure them at ~0.01 ms), which no prior conditioned on 10
    connected references can know; :class:`LearningPredictor` gives them their own level."""
    from hilnas.pipeline.predictors.features import BLOCK_SIZES, FEATURE_SETS

    blocks = FEATURE_SETS["v3"]
    return sum(BLOCK_SIZES[b] for b in blocks[: blocks.index("disconnected")])


def space_features(space: str) -> Callable[[np.ndarray], np.ndarray]:
    """The feature function of a registered space: :func:`nb201_features` for ``nb201``, the
    space-generic masked one-hot + log cost features otherwise
    (:func:`hilnas.pipeline.predictors.space.arch_features`)."""
    if space == "nb201":
        return nb201_features
    from hilnas.pipeline.predictors.space import arch_features
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


#: The zero-shot width model ``log w = ZS_WIDTH_A + ZS_WIDTH_B log(rms + ZS_WIDTH_EPS)``, ``rms``
#: the root mean squared log error of the prior on the device's own reference values: a device
#: the prior cannot fit on its references is one it predicts worse everywhere. Fit by the
#: benchmark (:mod:`hilnas.pipeline.benchmarks.predictors_learning`, ``zero_shot_width_model``:
#: least squares over the 27 NB201 latency configurations, each predicted by the meta-predictor
#: trained without it); the benchmark refits it without the device it tests.
ZS_WIDTH_A = 0.22
ZS_WIDTH_B = 0.8547
ZS_WIDTH_EPS = 0.005


def reference_fit_rms(log_residuals: np.ndarray) -> float:
    """Root mean squared log residual of the prior on the reference values."""
    r = np.asarray(log_residuals, dtype=np.float64).reshape(-1)
    if not len(r) or not np.all(np.isfinite(r)):
        raise InvalidInputError("the reference log residuals must be finite and non-empty")
    return float(np.sqrt(np.mean(r**2)))


def fit_zero_shot_width_model(
    rms: Sequence[float] | np.ndarray, widths: Sequence[float] | np.ndarray
) -> tuple[float, float]:
    """``(a, b)`` of ``log width = a + b log(rms + ZS_WIDTH_EPS)`` by least squares over
    training devices (their reference-fit ``rms`` and the ``DEFAULT_LEVEL`` quantile of their
    held-out zero-shot absolute log errors). Needs at least 3 devices with positive widths."""
    x = np.log(np.asarray(rms, dtype=np.float64).reshape(-1) + ZS_WIDTH_EPS)
    w = np.asarray(widths, dtype=np.float64).reshape(-1)
    if len(x) != len(w) or len(w) < 3 or np.any(~np.isfinite(x)) or np.any(~(w > 0)):
        raise InvalidInputError(
            "the zero-shot width model needs one rms and one positive width for each of at "
            "least 3 training devices"
        )
    b, a = np.polyfit(x, np.log(w), 1)
    return float(a), float(b)


def zero_shot_width_from_fit(
    ref_log_residuals: np.ndarray, model: tuple[float, float] | None = None
) -> float:
    """The zero-shot log half-width (at ``DEFAULT_LEVEL``) of a device from how well the prior
    fits its own reference values (:func:`reference_fit_rms`), by the width model ``model``
    (default ``(ZS_WIDTH_A, ZS_WIDTH_B)``), kept within ``[0.005, 2]``."""
    a, b = (ZS_WIDTH_A, ZS_WIDTH_B) if model is None else model
    w = math.exp(a + b * math.log(reference_fit_rms(ref_log_residuals) + ZS_WIDTH_EPS))
    return float(min(max(w, 0.005), 2.0))


#: Nearest training devices (by their fit to the device's reference values) whose predictions
#: form the ensemble of :func:`ensemble_log_prediction`.
ENSEMBLE_SIZE = 3
#: Added to every difficulty (log scale): no architecture is taken as certain.
DIFFICULTY_EPS = 5e-4
#: Zero-shot scale of the normalised intervals per space: the ``DEFAULT_LEVEL`` quantile of
#: ``|log error| / difficulty`` of zero-shot predictions (:func:`ensemble_difficulty`) pooled
#: over the space's devices, each predicted by a prior trained without it. Fit by the benchmark
#: (:mod:`hilnas.pipeline.benchmarks.predictors_learning`, ``normalised_scale``, ``all``),
#: which refits it without the device (lodo) or its family (lofo) that it tests.
ZS_NORM_Q: dict[str, float] = {"nb201": 4.1842, "ofa_mbv3": 4.0642, "gpt_s": 10.2128}


def nearest_devices(
    reference_values: np.ndarray,
    neighbours: Mapping[str, np.ndarray],
    m: int = ENSEMBLE_SIZE,
) -> list[tuple[str, float, float]]:
    """``(name, a, b)`` of the ``m`` training devices whose log reference values fit the
    device's best by ``log ref = a + b log ref_k`` (least squares); a device with the very
    same reference values (the device itself) is skipped."""
    own = np.log(_positive("reference values", reference_values))
    fits = []
    for name, vals in neighbours.items():
        v = np.log(_positive(f"reference values of {name}", vals))
        if len(v) != len(own):
            raise InvalidInputError(f"{name} has {len(v)} reference values, not {len(own)}")
        z = np.stack([np.ones(len(v)), v], 1)
        coef, *_ = np.linalg.lstsq(z, own, rcond=None)
        rss = float(np.mean((z @ coef - own) ** 2))
        if np.allclose(v, own, rtol=0, atol=1e-12):
            continue
        fits.append((rss, name, float(coef[0]), float(coef[1])))
    if not fits:
        raise InvalidInputError("an ensemble needs at least one other training device")
    fits.sort()
    return [(n, a, b) for _, n, a, b in fits[:m]]


def ensemble_log_prediction(
    reference_values: np.ndarray,
    neighbours: Mapping[str, np.ndarray],
    log_predict: Callable[[np.ndarray], np.ndarray],
    m: int = ENSEMBLE_SIZE,
) -> np.ndarray:
    """Mean over the :func:`nearest_devices` ``k`` of ``a_k + b_k log_predict(ref_k)``: the
    cross-device prior conditioned on each near training device's reference values, mapped to
    this device's scale. ``log_predict(reference values)`` gives the prior's log predictions
    (of the architectures asked for) for a device with those reference values."""
    near = nearest_devices(reference_values, neighbours, m)
    return np.mean(
        [a + b * np.asarray(log_predict(neighbours[n]), np.float64) for n, a, b in near], 0
    )


def ensemble_difficulty(log_prior: np.ndarray, ensemble_log: np.ndarray) -> np.ndarray:
    """Per-architecture difficulty of normalised intervals: how far the prior's log prediction
    is from the near devices' ensemble (:func:`ensemble_log_prediction`), plus
    ``DIFFICULTY_EPS``. Decided on the 21 NB201 training devices (outside the MODNAS test set),
    random measurements, K = 0..1000, one seed: normalised by it (3 near devices; 5 measured
    about the same), the share of (device, K) cells whose 80 % coverage is within 80 +- 5 %
    rose from 0.52 to 0.70 leave-one-device-out (mean |coverage - 0.8| 0.071 to 0.051); leave-
    one-family-out it did not help (0.51 to 0.49; 0.068 to 0.083). The benchmark reports the
    test devices, before and after."""
    lp = np.asarray(log_prior, np.float64)
    return np.abs(lp - np.asarray(ensemble_log, np.float64)) + DIFFICULTY_EPS


#: Width of :func:`smooth_floor`'s bend, as a share of the floor.
SMOOTH_FLOOR_WIDTH = 1e-3
#: How :class:`LearningPredictor` bounds its predictions from below.
FLOORS: tuple[str, ...] = ("hard", "smooth")


def smooth_floor(pred: np.ndarray, floor: float) -> np.ndarray:
    """``floor + softplus-like(pred - floor)``: above ``floor``, strictly increasing in
    ``pred`` (architectures predicted below the floor keep their order, just above it: a hard
    floor would tie them, and the non-dominated filter would then drop all but one of the
    cheapest architectures); within ``SMOOTH_FLOOR_WIDTH**2 / 4`` of the floor of ``pred``
    from ``1.01 x floor`` up (so a residual model ``none`` keeps the prior's values)."""
    d = np.asarray(pred, dtype=np.float64) - floor
    eps = SMOOTH_FLOOR_WIDTH * floor
    root = np.sqrt(d * d + eps * eps)
    # 0.5 (d + root), written without cancellation below the floor (d < 0)
    return floor + np.where(d >= 0, 0.5 * (d + root), 0.5 * eps * eps / (root - d))


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
    """One fitted residual model: ``r(x, lp)`` on the log scale.

    ``alpha``: the ridge penalty (``ridge``, and the linear part of ``kernel`` / ``boost``);
    ``beta``: the kernel ridge penalty of ``kernel``."""

    def __init__(self, kind: str, alpha: float = 10.0, seed: int = 0, beta: float = 1.0):
        self.kind, self.alpha, self.seed, self.beta = kind, alpha, seed, beta
        self.w: np.ndarray | None = None
        self.std: _Standardiser | None = None
        self.trees: Any = None
        self.kz: np.ndarray | None = None  # kernel: training rows (standardised)
        self.kc: np.ndarray | None = None  # kernel: dual coefficients
        self.lp_scale = (0.0, 1.0)
        # the median of the training residuals is added back: the level follows the bulk of
        # the architectures, not a heavy tail (what the share within +-10 % measures)
        self.offset = 0.0

    def _design(self, x: np.ndarray, lp: np.ndarray) -> np.ndarray:
        one = np.ones((len(lp), 1))
        if self.kind == "constant":
            return one
        if self.kind in ("linear", "kernel"):
            return np.concatenate([one, lp[:, None]], 1)
        return np.concatenate([one, lp[:, None], self.std(x)], 1)

    def _kernel_rows(self, x: np.ndarray, lp: np.ndarray) -> np.ndarray:
        m, s = self.lp_scale
        return np.concatenate([self.std(x), ((lp - m) / s)[:, None]], 1)

    def _gram(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.exp(-KERNEL_GAMMA / a.shape[1] * np.maximum(_sqdist(a, b), 0.0))

    def fit(self, x: np.ndarray, lp: np.ndarray, r: np.ndarray) -> _Residual:
        if self.kind == "none":
            return self
        if self.kind in ("ridge", "kernel", "boost"):
            self.std = _Standardiser(x)
        z = self._design(x, lp)
        rich = self.kind in ("ridge", "boost")
        pen = np.full(z.shape[1], self.alpha if rich else 1e-8)
        pen[0] = 1e-8  # the intercept is not shrunk
        self.w = np.linalg.solve(z.T @ z + np.diag(pen), z.T @ r)
        rest = r - z @ self.w
        if self.kind == "kernel":
            # a Gaussian process (kernel ridge, RBF kernel on standardised features and log
            # prior) on what the ridge model leaves: interactions a linear model cannot express
            self.lp_scale = (float(lp.mean()), max(float(lp.std()), 1e-9))
            zk = self._kernel_rows(x, lp)
            if len(zk) > KERNEL_MAX_ROWS:  # subset of regressors: bounded cost
                keep = np.sort(
                    np.random.default_rng(self.seed).choice(len(zk), KERNEL_MAX_ROWS, False)
                )
                zk, rest_k = zk[keep], rest[keep]
            else:
                rest_k = rest
            mu = float(np.median(rest_k))
            g = self._gram(zk, zk)
            self.kc = np.linalg.solve(g + self.beta * np.eye(len(zk)), rest_k - mu)
            self.kz = zk
            self.offset = mu + float(np.median(rest - mu - self._kernel_part(x, lp)))
        elif self.kind == "boost":
            from sklearn.ensemble import HistGradientBoostingRegressor

            n = len(r)
            with _one_thread():
                self.trees = HistGradientBoostingRegressor(
                    **_BOOST_PARAMS, min_samples_leaf=max(5, n // 40), random_state=self.seed
                ).fit(np.concatenate([x, lp[:, None]], 1), rest)
                fitted = self.trees.predict(np.concatenate([x, lp[:, None]], 1))
            self.offset = float(np.median(rest - fitted))
        else:
            self.offset = float(np.median(rest))
        return self

    def _kernel_part(self, x: np.ndarray, lp: np.ndarray) -> np.ndarray:
        out = np.empty(len(lp))
        zq = self._kernel_rows(x, lp)
        for start in range(0, len(zq), 4096):
            out[start : start + 4096] = self._gram(zq[start : start + 4096], self.kz) @ self.kc
        return out

    def predict(self, x: np.ndarray, lp: np.ndarray) -> np.ndarray:
        if self.kind == "none":
            return np.zeros(len(lp))
        out = self._design(x, lp) @ self.w + self.offset
        if self.kc is not None:
            out = out + self._kernel_part(x, lp)
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
    ``floor``: ``"hard"`` (default) bounds predictions by ``max(pred, cost_floor)``;
    ``"smooth"`` by :func:`smooth_floor` (strictly increasing: architectures predicted below the
    floor keep their order, as a search's non-dominated filter needs).
    ``difficulty``: codes -> per-architecture difficulty ``u(a) > 0`` on the log scale (e.g.
    :func:`ensemble_difficulty`); with it the intervals are *normalised* (their log half-width
    is ``q u(a)``, ``q`` the conformal quantile of ``|residual| / u`` with
    ``zero_shot_scale`` as the zero-shot pseudo-residuals); without it, one width per device.
    """

    prior: Callable[[np.ndarray], np.ndarray]
    features: Callable[[np.ndarray], np.ndarray]
    reference_codes: np.ndarray
    reference_values: np.ndarray
    level: float = DEFAULT_LEVEL
    folds: int = 5
    margin: float = MARGIN
    zero_shot_width: float | None = None
    widening: float = 1.0
    seed: int = 0
    candidates: tuple[str, ...] = CANDIDATES
    group_column: int | None = None
    zero_shot_model: tuple[float, float] | None = None
    floor: str = "hard"
    difficulty: Callable[[np.ndarray], np.ndarray] | None = None
    zero_shot_scale: float = ZS_NORM_Q["nb201"]
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
    _beta: float = KERNEL_BETAS[0]
    _group_offset: float | None = None
    _group_abs: np.ndarray | None = None
    _n_group: int = 0
    _zs_width: float = ZERO_SHOT_WIDTH
    _oof_norm: np.ndarray | None = None
    _u_rows: np.ndarray | None = None
    scale: float | None = None

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
        if self.zero_shot_width is not None:
            check_number("zero_shot_width", self.zero_shot_width, low=0.0, high=10.0, integer=False)
        check_number("widening", self.widening, low=1.0, high=100.0, integer=False)
        check_number("zero_shot_scale", self.zero_shot_scale, low=1e-3, high=1e3, integer=False)
        if self.floor not in FLOORS:
            raise InvalidInputError(f"floor must be one of {', '.join(FLOORS)}, got {self.floor!r}")
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
            x,
            self._log_prior(all_c),
            np.concatenate([self.reference_values, v]),
            difficulty=self._difficulty(all_c),
        )

    def _difficulty(self, codes: np.ndarray) -> np.ndarray | None:
        if self.difficulty is None:
            return None
        return _positive("difficulties", self.difficulty(codes))

    def fit_arrays(
        self,
        x: np.ndarray,
        log_prior: np.ndarray,
        values: np.ndarray,
        difficulty: np.ndarray | None = None,
    ):
        """Fit from precomputed rows: the references first (``len(reference_values)`` rows),
        then the further measurements; ``log_prior`` is the log of the prior's predictions;
        ``difficulty`` (one per row, > 0) makes the intervals normalised (see the class)."""
        x = np.asarray(x, dtype=np.float64)
        lp = np.asarray(log_prior, dtype=np.float64).reshape(-1)
        y = _positive("measured values", values)
        n_ref = len(self.reference_values)
        if not (len(x) == len(lp) == len(y)) or len(y) < n_ref:
            raise InvalidInputError(
                "features, prior and values must have one row per measurement, references first"
            )
        r_raw = np.log(y) - lp
        self._zs_width = (
            float(self.zero_shot_width)
            if self.zero_shot_width is not None
            else zero_shot_width_from_fit(r_raw[:n_ref], self.zero_shot_model)
        )
        n_extra = len(y) - n_ref
        is_extra = np.arange(len(y)) >= n_ref
        # the group (e.g. NB201's cells with no path to the output): its own level when its
        # measured members are far outside the bulk and agree with each other (leave-one-out)
        use, self._group_offset, group_abs = self._fit_group(x, r_raw, is_extra)
        self._n_group = int(self._group_mask(x).sum())
        rows = np.flatnonzero(use)
        r = np.zeros(len(y))
        r[rows] = _winsorise(r_raw[rows])
        extra = rows[is_extra[rows]]
        self.cv_mse, oof = {}, {}
        tried = [c for c in self.candidates if len(extra) >= MIN_EXTRA[c]]
        if len(extra) >= MIN_EXTRA["constant"]:
            k = min(self.folds, len(extra))
            parts = np.array_split(np.random.default_rng(self.seed).permutation(extra), k)
            where = np.full(len(y), -1)
            where[extra] = np.arange(len(extra))
            for kind in tried:
                for param in _PARAMS.get(kind, (None,)):
                    name = kind if param is None else f"{kind}:{param:g}"
                    pred = np.empty(len(extra))
                    for test in parts:
                        train = np.setdiff1d(rows, test)
                        m = self._make(kind, param).fit(x[train], lp[train], r[train])
                        pred[where[test]] = m.predict(x[test], lp[test])
                    oof[name] = r[extra] - pred
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
        self.kind = best if self._group_offset is None else f"{best}+group"
        kind, param = (
            (best.split(":")[0], float(best.split(":")[1])) if ":" in best else (best, None)
        )
        self._alpha = param if kind == "ridge" else self._best("ridge", RIDGE_ALPHAS[-1])
        self._beta = param if kind == "kernel" else self._best("kernel", KERNEL_BETAS[0])
        self._model = self._make(kind, param).fit(x[rows], lp[rows], r[rows])
        # intervals from the raw (not winsorised) out-of-fold errors of the chosen model
        res = np.abs(oof[best] + (r_raw - r)[extra]) if best in oof else np.zeros(0)
        # the group's rows get their own width (its leave-one-out errors): a group far from the
        # bulk must not widen everyone's interval, nor the bulk's narrow the group's
        self._oof_abs = res
        self._group_abs = group_abs if self._group_offset is not None else None
        self.n_extra = n_extra
        self.width = conformal_width(
            self._oof_abs,
            self.level,
            prior_width=self._prior_width(self.level),
            prior_weight=self._pw(),
        )
        self._oof_norm = self._u_rows = self.scale = None
        if difficulty is not None:
            u = _positive("difficulties", np.asarray(difficulty, np.float64))
            if len(u) != len(y):
                raise InvalidInputError("give one difficulty per row (references first)")
            # normalised conformal: |residual| / u of the chosen model's out-of-fold errors,
            # the zero-shot scale as pseudo-residuals, fading as the measurements grow
            self._u_rows = u
            self._oof_norm = res / u[extra] if len(res) else np.zeros(0)
            self.scale = self.scale_at(self.level)
        self._x, self._lp, self._r, self._measured = x[rows], lp[rows], r[rows], y
        return self

    def _group_mask(self, x: np.ndarray) -> np.ndarray:
        if self.group_column is None:
            return np.zeros(len(x), dtype=bool)
        return np.asarray(x[:, self.group_column] > 0.5)

    def _fit_group(
        self, x: np.ndarray, r_raw: np.ndarray, is_extra: np.ndarray
    ) -> tuple[np.ndarray, float | None, np.ndarray]:
        """``(rows for the main model, group log offset or None, |leave-one-out errors| of the
        group's further measurements)``. The group gets its own level (the median of its log
        residuals) when at least ``MIN_GROUP`` members are measured, their median lies outside
        the winsorising band of the other rows (the main model could not follow it), and the
        leave-one-out error of the group level beats that of the bulk's level (median |.|)."""
        g = self._group_mask(x)
        if g.sum() < MIN_GROUP or (~g).sum() < 2:
            return np.ones(len(x), dtype=bool), None, np.zeros(0)
        rg, rest = r_raw[g], r_raw[~g]
        med_rest = float(np.median(rest))
        band = max(4.0 * 1.4826 * float(np.median(np.abs(rest - med_rest))), WINSOR_MIN)
        med_g = float(np.median(rg))
        loo = np.array([rg[i] - np.median(np.delete(rg, i)) for i in range(len(rg))])
        if abs(med_g - med_rest) <= band or np.median(np.abs(loo)) >= np.median(
            np.abs(rg - med_rest)
        ):
            return np.ones(len(x), dtype=bool), None, np.zeros(0)
        return ~g, med_g, np.abs(loo[is_extra[g]])

    def _best(self, kind: str, default: float) -> float:
        names = [n for n in self.cv_mse if n.startswith(kind + ":")]
        if not names:
            return default
        return float(min(names, key=self.cv_mse.__getitem__).split(":")[1])

    def _make(self, kind: str, param: float | None) -> _Residual:
        alpha = param if kind == "ridge" and param is not None else None
        if alpha is None:
            alpha = self._best("ridge", RIDGE_ALPHAS[-1])
        beta = param if kind == "kernel" and param is not None else KERNEL_BETAS[0]
        return _Residual(kind, alpha, self.seed, beta)

    # ----- prediction --------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if self._model is None:
            raise PreconditionError("this LearningPredictor is not fitted; call fit() first")

    def _bound(self, pred: np.ndarray) -> np.ndarray:
        if is_flat(self._measured):
            return np.full(np.shape(pred), float(np.median(self._measured)))
        if self.floor == "smooth":
            return smooth_floor(pred, cost_floor(self._measured))
        return np.maximum(pred, cost_floor(self._measured))

    def predict_arrays(self, x: np.ndarray, log_prior: np.ndarray) -> np.ndarray:
        """Predictions (device units) from precomputed features and log prior, floored."""
        self._check_fitted()
        lp = np.asarray(log_prior, dtype=np.float64).reshape(-1)
        x = np.asarray(x, np.float64)
        r = self._model.predict(x, lp)
        if self._group_offset is not None:
            r = np.where(self._group_mask(x), self._group_offset, r)
        return self._bound(np.exp(lp + r))

    def interval_arrays(
        self,
        x: np.ndarray,
        log_prior: np.ndarray,
        level: float | None = None,
        difficulty: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(prediction, low, high)`` from precomputed rows (see :meth:`predict_interval`);
        ``difficulty``: the rows' difficulties, needed when the predictor was fit with them."""
        pred = self.predict_arrays(x, log_prior)
        if self._oof_norm is not None:
            if difficulty is None:
                raise InvalidInputError(
                    "this predictor's intervals are per architecture; pass difficulty= (one "
                    "per row), or call predict_interval() with codes"
                )
            u = _positive("difficulties", np.asarray(difficulty, np.float64))
            if len(u) != len(pred):
                raise InvalidInputError("give one difficulty per row")
            w = self.scale_at(level) * u + math.log(self.widening)
        else:
            w = np.full(len(pred), self.width_at(level))
        if self._group_abs is not None:
            x = np.asarray(x, np.float64)
            w = np.where(self._group_mask(x), self.group_width_at(level), w)
        return pred, pred * np.exp(-w), pred * np.exp(w)

    def group_width_at(self, level: float | None = None) -> float | None:
        """Log half-width of the group's rows (None when the group has no level of its own):
        the conformal quantile of its members' leave-one-out errors, with the zero-shot width
        as ``PRIOR_WEIGHT`` pseudo-residuals, times the widening factor."""
        self._check_fitted()
        if self._group_abs is None:
            return None
        lv = self.level if level is None else level
        w = conformal_width(
            self._group_abs, lv, prior_width=self._prior_width(lv), prior_weight=PRIOR_WEIGHT
        )
        return float(w + math.log(self.widening))

    def scale_at(self, level: float | None = None) -> float:
        """Normalised intervals: the multiplier ``q`` of the difficulty at ``level`` (the
        conformal quantile of ``|out-of-fold residual| / u`` with ``zero_shot_scale`` as the
        zero-shot pseudo-residuals, scaled to other levels as a normal quantile would be)."""
        self._check_fitted()
        if self._oof_norm is None:
            raise PreconditionError(
                "this predictor was fit without difficulties: its width is width_at()"
            )
        lv = self.level if level is None else level
        if self.scale is not None and float(lv) == self.level:
            return self.scale
        return conformal_width(
            self._oof_norm,
            lv,
            prior_width=self.zero_shot_scale * self._level_ratio(lv),
            prior_weight=self._pw(),
        )

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
        return float(self._zs_width * self._level_ratio(level))

    @staticmethod
    def _level_ratio(level: float) -> float:
        from scipy.stats import norm

        return float(norm.ppf(0.5 + _check_level(level) / 2) / norm.ppf(0.5 + DEFAULT_LEVEL / 2))

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
        return self.interval_arrays(
            self.features(c), self._log_prior(c), level, self._difficulty(c)
        )

    # ----- uncertainty for active selection ----------------------------------------------
    def uncertainty_arrays(self, x: np.ndarray, log_prior: np.ndarray, n_boot: int = 8):
        """Disagreement (std of log predictions) of a bootstrap ensemble of the residual model
        (ridge when the chosen model is simpler, so that zero-shot devices also get one)."""
        self._check_fitted()
        kind = self.kind.split("+")[0].split(":")[0]
        kind = "ridge" if kind in ("none", "constant", "linear") else kind
        n_boot = 4 if kind == "boost" else n_boot
        rng = np.random.default_rng(self.seed + 1)
        lp = np.asarray(log_prior, np.float64).reshape(-1)
        preds = []
        n = len(self._r)
        for _ in range(n_boot):
            idx = rng.integers(0, n, n)
            m = _Residual(kind, self._alpha, self.seed, self._beta).fit(
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
            "normalised_scale": None if self._oof_norm is None else round(self.scale_at(), 6),
            "group_log_half_width": (
                None if self._group_abs is None else round(self.group_width_at(), 6)
            ),
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
    ensemble: bool = False,
    **kwargs: Any,
) -> LearningPredictor:
    """A :class:`LearningPredictor` for a device of a registered space, from its values on the
    space's reference architectures (in reference order).

    ``ensemble`` (default False): normalised intervals, by :func:`ensemble_difficulty` against
    the prior conditioned on the prior's training devices nearest to this one (NB201: the
    shipped reference devices of ``metric``; another space: the
    :class:`~hilnas.pipeline.predictors.space.SpacePredictor`'s devices), with
    :data:`ZS_NORM_Q` of the space as the zero-shot scale. Not the default: on the NB201
    training devices it helped leave-one-device-out (cells within 80 +- 5 %: 0.52 -> 0.70) but
    not leave-one-family-out (0.51 -> 0.49, mean |coverage - 0.8| 0.068 -> 0.083); on the
    test devices' fronts it covered more but gave raspi4 log half-widths above 1.

    ``meta``: the prior's model: a :class:`~hilnas.pipeline.predictors.MetaPredictor` (NB201;
    default for ``nb201``: the shipped one for ``metric``) or a
    :class:`~hilnas.pipeline.predictors.space.SpacePredictor` (any space; default for the other
    spaces: :func:`~hilnas.pipeline.predictors.space.default_predictor`, trained in tens of
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
            from hilnas.pipeline.predictors.space import default_predictor

            meta = default_predictor(space, metric)
    if isinstance(meta, MetaPredictor):
        if space != "nb201":
            raise InvalidInputError(f"a MetaPredictor is NB201-only; pass a {space} SpacePredictor")
        emb = TargetEmbedding.from_raw("device", meta.metric, ref_vals, network=network)

        def prior(codes: np.ndarray) -> np.ndarray:
            return meta.predict_codes(np.asarray(codes, np.int64), emb)

        def prior_for(values: np.ndarray, codes: np.ndarray) -> np.ndarray:
            e = TargetEmbedding.from_raw("near", meta.metric, values, network=network)
            return meta.predict_codes(np.asarray(codes, np.int64), e)

        neighbours = _nb201_neighbours(meta.metric) if ensemble else {}
    else:
        if getattr(meta, "space", None) != space:
            raise InvalidInputError(
                f"the prior model is for space {getattr(meta, 'space', None)!r}, not {space!r}"
            )

        def prior(codes: np.ndarray) -> np.ndarray:
            return meta.predict([tuple(int(v) for v in r) for r in codes], ref_vals)

        def prior_for(values: np.ndarray, codes: np.ndarray) -> np.ndarray:
            return meta.predict([tuple(int(v) for v in r) for r in codes], values)

        neighbours = {}
        if ensemble and hasattr(meta, "devices") and hasattr(meta, "reference_values"):
            neighbours = {d: np.asarray(meta.reference_values(d), np.float64) for d in meta.devices}
    if ensemble and space in ZS_NORM_Q and len(neighbours) >= 2:
        kwargs.setdefault("zero_shot_scale", ZS_NORM_Q[space])

        def difficulty(codes: np.ndarray) -> np.ndarray:
            c = np.asarray(codes, np.int64)
            ens = ensemble_log_prediction(ref_vals, neighbours, lambda v: np.log(prior_for(v, c)))
            return ensemble_difficulty(np.log(prior(c)), ens)

        kwargs.setdefault("difficulty", difficulty)
    if space == "nb201" and features is None:
        kwargs.setdefault("group_column", nb201_group_column())
    return LearningPredictor(
        prior=prior,
        features=features or space_features(space),
        reference_codes=refs,
        reference_values=ref_vals,
        **kwargs,
    )


def _nb201_neighbours(metric: str) -> dict[str, np.ndarray]:
    """The shipped NB201 devices' reference values for ``metric`` (the meta-predictor's
    training devices)."""
    from hilnas.pipeline import refdata

    ref = refdata.load_nb201()
    idx = list(ref.reference_indices)
    names = ref.latency_devices if metric == "latency_ms" else ref.energy_devices
    get = ref.latency if metric == "latency_ms" else ref.energy
    return {n: np.asarray(get(n), np.float64)[idx] for n in names}


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

    ``"active"``: when ``state`` has a ``group_column`` and fewer than :data:`GROUP_TARGET`
    group members were measured, ``min(GROUP_TARGET - measured, ceil(GROUP_SHARE * k))``
    group candidates drawn at random (the group has no reference architecture, so the prior is
    blind there; its own level needs a few members). The rest: among a random subset of
    ``max(ACTIVE_SUBSET * k, ACTIVE_MIN_SUBSET)`` candidates, greedily the one maximising ``u / max(u) + diversity * d / max(d)``, where ``u``
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
    # the group (NB201: cells with no path to the output) holds no reference architecture, so
    # the prior is blind there: until GROUP_TARGET members are measured it gets a share of the
    # picks (at most GROUP_SHARE of them), the rest as below
    head = np.zeros(0, dtype=np.int64)
    if state.group_column is not None:
        g = np.flatnonzero(x[:, state.group_column] > 0.5)
        want = min(GROUP_TARGET - state._n_group, int(math.ceil(GROUP_SHARE * k)), len(g))
        if want > 0:
            head = g[np.random.default_rng(seed + 7).choice(len(g), want, replace=False)]
    k_rest = k - len(head)
    if k_rest == 0:
        return head
    keep = np.setdiff1d(np.arange(len(x)), head)
    xr, lr = x[keep], np.asarray(lp, np.float64).reshape(-1)[keep]
    u = state.uncertainty_arrays(xr, lr)
    std = _Standardiser(np.concatenate([state._x, xr]))
    rest = _active_pick(u, std(xr), std(state._x), k_rest, seed, diversity)
    return np.concatenate([head, keep[rest]])


#: Measured group members (``group_column``) the active strategy aims for, and the largest
#: share of one call's picks it spends on them.
GROUP_TARGET = 12
GROUP_SHARE = 0.25


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
