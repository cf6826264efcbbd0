"""Per-device predictors for targets with many measurements of their own (``hilnas fit``).

For one target and metric, candidate models are compared by k-fold cross-validation over the
target's non-reference measurements (the 10 reference measurements are always in the fit, as
they are for the meta-predictor):

- ``meta``: the cross-device meta-predictor conditioned on the training folds (few-shot);
- ``ridge``: ridge regression on the differentiable architecture features (feature set ``v3``)
  in linear space (costs add up over operations), minimising relative squared error; the
  whole-cell blocks (op counts on live edges, distinct pools, additions) are not penalised, the
  per-edge blocks are shrunk with a strength chosen by leave-one-out;
- ``ridge_log``: the same on log-cost (for devices whose costs behave multiplicatively);
- ``additive``: fixed skeleton cost + one cost per op that actually runs (feature set
  ``additive``: ops on edges that are live and whose result reaches the output, and the
  additions joining them), every coefficient constrained non-negative (NNLS on relative
  error, lightly shrunk). Its predictions are bounded below by the fitted fixed part, so even an
  all-skip cell costs at least the stem, reductions and head.

Every kind's predictions, disconnected cells included, keep the floor of the meta-predictor:
never below ``FLOOR_SHARE`` (0.8) times the smallest value the model was fit on (see
:func:`hilnas.pipeline.predictors.cost_floor`; in cross-validation, the training folds' smallest),
and a target whose measured values are all equal is predicted flat at their median.

The winner (lowest CV mean absolute relative error, a smoother criterion than the +-10% count)
is refit on everything and saved as
JSON (coefficients only, no pickles) under ``HILNAS_HOME/models/devices`` together with the
sha256 of the data it saw; :func:`load_device_predictor` uses it only while the target's data is
unchanged.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from hilnas.pipeline.predictors import (
    PredictorError,
    TargetEmbedding,
    _atomic_write,
    cost_floor,
    hilnas_version,
    is_flat,
    load_meta_predictor,
    quality,
    reference_codes,
)
from hilnas.pipeline.predictors.features import (
    BLOCK_SIZES,
    COMPACT_BLOCKS,
    FEATURE_SETS,
    features_np,
)

#: Fewest non-reference measurements for which a per-device model is fitted.
MIN_EXTRA = 20
CANDIDATES = ("meta", "ridge", "ridge_log", "additive")
#: The feature set the ``additive`` kind always uses.
ADDITIVE_FEATURES = "additive"
#: Shrinkage of the per-edge coefficients of the ``additive`` kind towards 0 (on costs relative
#: to the mean reference value).
ADDITIVE_ALPHAS = (1e-4, 1e-3, 1e-2, 1e-1)
ALPHAS = tuple(float(a) for a in np.logspace(-6, 4, 21))
DEFAULT_FEATURE_SET = "v3"


def data_sha256(emb: TargetEmbedding) -> str:
    codes = np.concatenate([reference_codes(), emb.support_codes.reshape(-1, 6)]).astype(np.int64)
    values = np.concatenate([emb.raw, emb.support_values]).astype(np.float64)
    order = np.lexsort(codes.T[::-1])
    h = hashlib.sha256(codes[order].tobytes() + values[order].tobytes())
    return h.hexdigest()


def _ridge_fit(
    x: np.ndarray,
    y: np.ndarray,
    penalised: np.ndarray,
    weights: np.ndarray | None = None,
    alphas=ALPHAS,
) -> tuple[np.ndarray, float]:
    """Weighted ridge; only the ``penalised`` columns are shrunk (the compact whole-cell blocks
    are not); alpha by weighted leave-one-out error (closed form)."""
    n = x.shape[0]
    wts = np.ones(n) if weights is None else weights
    xw = x * wts[:, None]
    pen = np.where(penalised, 1.0, 1e-9)
    best = None
    for a in alphas:
        lhs = x.T @ xw + a * np.diag(pen)
        try:
            inv = np.linalg.inv(lhs)
        except np.linalg.LinAlgError:
            continue
        w = inv @ (xw.T @ y)
        hat = np.einsum("ij,jk,ik->i", x, inv, xw)
        loo = (y - x @ w) / np.maximum(1.0 - hat, 1e-6)
        err = float(np.mean(wts * loo**2))
        if best is None or err < best[0]:
            best = (err, w, a)
    if best is None:  # pragma: no cover - degenerate
        raise PredictorError("ridge fit failed")
    return best[1], best[2]


def _nnls_fit(
    x: np.ndarray, y: np.ndarray, penalised: np.ndarray, weights: np.ndarray, alpha: float
) -> np.ndarray:
    """Weighted non-negative least squares with ridge shrinkage on the ``penalised`` columns."""
    from scipy.optimize import nnls

    sw = np.sqrt(weights)
    aug = np.diag(np.where(penalised, np.sqrt(alpha), 0.0))[penalised]
    a = np.vstack([x * sw[:, None], aug])
    b = np.concatenate([y * sw, np.zeros(len(aug))])
    w, _ = nnls(a, b, maxiter=50 * a.shape[1])
    return w


def _additive_fit(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, float]:
    """NNLS with the shrinkage chosen by 5-fold CV (relative error) on the given rows."""
    pen = _penalised(ADDITIVE_FEATURES)
    n = len(y)
    if n < 10 or len(ADDITIVE_ALPHAS) == 1:
        a = ADDITIVE_ALPHAS[len(ADDITIVE_ALPHAS) // 2]
        return _nnls_fit(x, y, pen, weights, a), a
    parts = np.array_split(np.random.default_rng(0).permutation(n), 5)
    best = None
    for a in ADDITIVE_ALPHAS:
        err = 0.0
        for k in range(5):
            tr = np.concatenate([parts[j] for j in range(5) if j != k])
            w = _nnls_fit(x[tr], y[tr], pen, weights[tr], a)
            err += float(np.sum(weights[parts[k]] * (x[parts[k]] @ w - y[parts[k]]) ** 2))
        if best is None or err < best[0]:
            best = (err, a)
    return _nnls_fit(x, y, pen, weights, best[1]), best[1]


def bounded(pred: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Predictions kept above the floor of the values the model was given (``measured``: the
    reference values and the further measurements it was fit on); all of them the median of
    ``measured`` when those are flat (see :func:`hilnas.pipeline.predictors.is_flat`)."""
    if is_flat(measured):
        return np.full(np.shape(pred), float(np.median(measured)))
    return np.maximum(pred, cost_floor(measured))


def _penalised(feature_set: str) -> np.ndarray:
    return np.concatenate(
        [np.full(BLOCK_SIZES[b], b not in COMPACT_BLOCKS) for b in FEATURE_SETS[feature_set]]
    )


@dataclass
class DevicePredictor:
    """A fitted per-device model for one target and metric."""

    target: str
    metric: str
    kind: str
    feature_set: str = DEFAULT_FEATURE_SET
    coef: np.ndarray | None = None
    alpha: float | None = None
    data_sha256: str = ""
    n: int = 0
    cv: dict[str, Any] = field(default_factory=dict)
    _emb: TargetEmbedding | None = None

    def predict_codes(self, codes: np.ndarray) -> np.ndarray:
        codes = np.asarray(codes, dtype=np.int64).reshape(-1, 6)
        if self.kind == "meta":
            if self._emb is None:
                raise PredictorError("a meta-kind device predictor needs its embedding")
            return load_meta_predictor(self.metric).predict_codes(codes, self._emb)
        if self._emb is None:
            raise PredictorError(
                f"the {self.kind} device predictor of {self.target!r} needs the embedding it was "
                "fit on (its floor is the smallest value measured there)"
            )
        f = features_np(codes, FEATURE_SETS[self.feature_set]) @ self.coef
        return bounded(np.exp(f) if self.kind == "ridge_log" else f, self._emb.measured)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": "DevicePredictor",
            "target": self.target,
            "metric": self.metric,
            "kind": self.kind,
            "feature_set": self.feature_set,
            "blocks": list(FEATURE_SETS[self.feature_set]),
            "coef": None if self.coef is None else [float(v) for v in self.coef],
            "alpha": self.alpha,
            "data_sha256": self.data_sha256,
            "floor": None if self._emb is None else self._emb.floor,
            "n": self.n,
            "cv": self.cv,
            "hilnas_version": hilnas_version(),
        }


def _fit_kind(
    kind: str, emb: TargetEmbedding, codes: np.ndarray, values: np.ndarray, feature_set: str
):
    """Fit one candidate on (refs + given support); returns a predict(codes) function and extras."""
    sub = emb.with_support(codes, values)
    if kind == "meta":
        model = load_meta_predictor(emb.metric)
        return (lambda c: model.predict_codes(c, sub)), None, None
    all_codes = np.concatenate([reference_codes(), codes])
    all_vals = np.concatenate([emb.raw, values])
    if kind == "additive":
        feature_set = ADDITIVE_FEATURES
    x = features_np(all_codes, FEATURE_SETS[feature_set])
    scale = float(np.mean(emb.raw))
    blocks = FEATURE_SETS[feature_set]
    pen = _penalised(feature_set)
    if kind == "ridge":  # relative squared error: weights 1 / y^2 (capped for near-zero artefacts)
        y = all_vals / scale
        w, a = _ridge_fit(x, y, pen, 1.0 / np.maximum(y, 0.25 * np.median(y)) ** 2)
        w = w * scale
        return (lambda c: bounded(features_np(c, blocks) @ w, all_vals)), w, a
    if kind == "additive":
        y = all_vals / scale
        w, a = _additive_fit(x, y, 1.0 / np.maximum(y, 0.25 * np.median(y)) ** 2)
        w = w * scale
        return (lambda c: bounded(features_np(c, blocks) @ w, all_vals)), w, a
    if kind == "ridge_log":
        w, a = _ridge_fit(x, np.log(all_vals), pen)
        return (lambda c: bounded(np.exp(features_np(c, blocks) @ w), all_vals)), w, a
    raise PredictorError(f"unknown device model kind {kind!r}; known: {', '.join(CANDIDATES)}")


def cross_validate(
    emb: TargetEmbedding,
    *,
    folds: int = 5,
    seed: int = 0,
    kinds=CANDIDATES,
    feature_set: str = DEFAULT_FEATURE_SET,
) -> dict[str, dict[str, float]]:
    """k-fold CV over the non-reference measurements: per kind, mean Spearman, Kendall, within10."""
    codes, values = emb.support_codes, emb.support_values
    n = len(values)
    if n < max(folds, 2):
        raise PredictorError(
            f"{emb.name!r} has {n} measurements besides the references; CV needs at least {folds}"
        )
    order = np.random.default_rng(seed).permutation(n)
    parts = np.array_split(order, folds)
    out: dict[str, dict[str, float]] = {}
    for kind in kinds:
        preds = np.empty(n)
        for k in range(folds):
            test = parts[k]
            train = np.concatenate([parts[j] for j in range(folds) if j != k])
            fn, _, _ = _fit_kind(kind, emb, codes[train], values[train], feature_set)
            preds[test] = fn(codes[test])
        q = quality(preds, values)
        q["mean_abs_rel_error"] = float(np.mean(np.abs(preds / values - 1.0)))
        q["folds"] = folds
        q["n"] = n
        out[kind] = q
    return out


def fit_device_predictor(
    emb: TargetEmbedding,
    *,
    folds: int = 5,
    seed: int = 0,
    feature_set: str = DEFAULT_FEATURE_SET,
    kinds=CANDIDATES,
) -> DevicePredictor:
    """Choose the best candidate by CV and refit it on all measurements of the target."""
    if len(emb.support_values) < MIN_EXTRA:
        raise PredictorError(
            f"{emb.name!r} has {len(emb.support_values)} {emb.metric} measurements besides the 10 "
            f"reference ones; a per-device model needs at least {MIN_EXTRA} (profile more architectures)"
        )
    cv = cross_validate(emb, folds=folds, seed=seed, kinds=kinds, feature_set=feature_set)
    # the mean absolute relative error is a smoother selection criterion than the +-10% count
    best = min(kinds, key=lambda k: (cv[k]["mean_abs_rel_error"], -cv[k]["spearman"]))
    _, w, a = _fit_kind(best, emb, emb.support_codes, emb.support_values, feature_set)
    return DevicePredictor(
        target=emb.name,
        metric=emb.metric,
        kind=best,
        feature_set=ADDITIVE_FEATURES if best == "additive" else feature_set,
        coef=w,
        alpha=a,
        data_sha256=data_sha256(emb),
        n=len(emb.support_values) + len(emb.raw),
        cv={"chosen": best, **cv},
        _emb=emb,
    )


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def device_model_path(target: str, metric: str, *, create: bool = False) -> Path:
    """Where a target's fitted model lives; ``create`` (for saving) checks the home is writable,
    so reading works on a read-only, archived home."""
    from hilnas.pipeline.home import home_dir

    return home_dir(create=create) / "models" / "devices" / f"{_safe(target)}__{metric}.json"


def save_device_predictor(model: DevicePredictor) -> Path:
    path = device_model_path(model.target, model.metric, create=True)
    _atomic_write(path, (json.dumps(model.to_json(), indent=2, sort_keys=True) + "\n").encode())
    return path


def load_device_predictor(emb: TargetEmbedding) -> DevicePredictor | None:
    """The saved per-device model of a target, if it was fit on exactly the target's current data."""
    path = device_model_path(emb.name, emb.metric)
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if (
        meta.get("model") != "DevicePredictor"
        or meta.get("target") != emb.name
        or meta.get("metric") != emb.metric
        or meta.get("data_sha256") != data_sha256(emb)
        or meta.get("feature_set") not in FEATURE_SETS
        or tuple(meta.get("blocks", ())) != FEATURE_SETS[meta.get("feature_set")]
        or meta.get("kind") not in CANDIDATES
    ):
        return None  # stale or foreign: the caller falls back to the meta-predictor
    coef = None if meta.get("coef") is None else np.asarray(meta["coef"], dtype=np.float64)
    return DevicePredictor(
        target=emb.name,
        metric=emb.metric,
        kind=meta["kind"],
        feature_set=meta["feature_set"],
        coef=coef,
        alpha=meta.get("alpha"),
        data_sha256=meta["data_sha256"],
        n=int(meta.get("n", 0)),
        cv=meta.get("cv", {}),
        _emb=emb,
    )


# ----------------------------------------------------------------------------------------------
# refitting everything the store holds (`hilnas fit`, the `hilnas run` job)
# ----------------------------------------------------------------------------------------------
@dataclass
class FitReport:
    """What :func:`fit_store_targets` did.

    ``devices``: one row per (target, metric) with ``status`` "fitted" (then ``chosen``, ``cv``,
    ``path``), "meta only" or "skipped" (then ``reason``). ``meta``: per metric, ``status``
    ("refit" with ``path`` and ``targets``, or "shipped" with ``reason``).
    """

    devices: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, dict[str, Any]] = field(default_factory=dict)

    def fitted(self) -> list[dict[str, Any]]:
        return [r for r in self.devices if r["status"] == "fitted"]

    def to_json(self) -> dict[str, Any]:
        return {"devices": list(self.devices), "meta": dict(self.meta)}


def fit_store_targets(
    store,
    *,
    devices=None,
    meta: bool = False,
    meta_latency_devices=None,
    meta_only_with_store_targets: bool = False,
    folds: int = 5,
    seed: int = 0,
    progress=None,
) -> FitReport:
    """Refit per-device models (cross-validated) for every target of ``store`` (or ``devices``,
    names resolved in the store) with at least :data:`MIN_EXTRA` measurements besides the
    references, and with ``meta`` the meta-predictor of each metric from the reference devices
    (``meta_latency_devices``; default the 13 MODNAS training devices) plus the store's targets.
    With ``meta_only_with_store_targets`` a metric without store targets keeps the shipped
    weights. ``progress`` receives one line per step."""
    from hilnas.pipeline import predictors as P

    if folds < 2:
        raise PredictorError(f"cross-validation needs at least 2 folds, got {folds}")
    say = progress or (lambda _text: None)
    report = FitReport()
    if meta:
        for metric in P.METRICS:
            extra = P.store_training_targets(store, metric)
            if not extra and meta_only_with_store_targets:
                report.meta[metric] = {
                    "status": "shipped",
                    "reason": "no store target with enough measurements",
                }
                continue
            model = P.train_meta_predictor(
                metric, latency_devices=meta_latency_devices, extra_targets=extra, seed=seed
            )
            st, _ = P.save_meta_predictor(model, P.user_weights_path(metric, create=True))
            report.meta[metric] = {
                "status": "refit",
                "path": str(st),
                "targets": model.metadata["fingerprint"]["training_targets"],
                "store_targets": [t.name for t in extra],
            }
            say(
                f"meta-predictor {metric}: refit on {len(report.meta[metric]['targets'])} targets -> {st}"
            )
    targets = [store.resolve_target(t) for t in devices] if devices else store.targets()
    for target in targets:
        for metric in P.METRICS:
            row: dict[str, Any] = {"target": target, "metric": metric}
            try:
                emb = P.embedding_for(target, metric, store)
            except P.MissingReferenceError as exc:
                row.update(status="skipped", reason=str(exc))
                report.devices.append(row)
                continue
            except P.NoEmbeddingError:
                continue  # no such measurements (e.g. energy unknown on this CPU)
            row["n"] = len(emb.raw) + len(emb.support_values)
            ex = store.quality_exclusions(target, metric=metric)  # imported devices: none
            if ex.excluded or ex.kept_flagged:
                row["flagged"] = {"left_out": ex.excluded, "kept": ex.kept_flagged}
                kept = f", {ex.kept_flagged} kept (most rows are)" if ex.kept_flagged else ""
                say(
                    f"{target} {metric}: {ex.excluded} flagged measurement(s) left out{kept}; "
                    "re-measure them with `hilnas profile --retry-flagged` on a quiet machine"
                )
            if len(emb.support_values) < MIN_EXTRA:
                row.update(
                    status="meta only",
                    reason=f"fewer than {MIN_EXTRA} measurements besides the references",
                )
                report.devices.append(row)
                continue
            model = fit_device_predictor(emb, folds=folds, seed=seed)
            path = save_device_predictor(model)
            row.update(status="fitted", chosen=model.kind, cv=model.cv, path=str(path))
            report.devices.append(row)
            chosen = model.cv[model.kind]
            say(
                f"per-device {metric} predictor of {target}: {model.kind}, CV within +-10% "
                f"{chosen['within10']:.1%}, Spearman {chosen['spearman']:.3f}"
            )
    return report
