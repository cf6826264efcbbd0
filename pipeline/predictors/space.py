"""A space-generic cross-device cost predictor (latency or energy) for any registered space.

The idea is the NB201 meta-predictor's (:mod:`hilnas.pipeline.predictors`, after HELP and
MODNAS): a device is described by its costs on the space's reference architectures (its
*hardware embedding*), and one model trained across devices predicts any architecture on a new
device from that embedding alone (zero-shot). Nothing here knows a space's internals: an
architecture is described by the space's masked one-hot (inactive decisions zeroed, only real
options kept) and its log-scaled cost features; the embedding is the log of the device's
reference values minus their mean (its *profile*), and that mean (its *level*) is added back.

The model is ridge regression on every product of an architecture feature with ``[1, profile]``
(``log cost - level = x^T W [1, e]``): a per-device linear model in the architecture features
whose weights are a linear function of the embedding. Its normal equations are Kronecker
products of per-device Gram matrices, so training and leave-one-device-out selection of the
penalty take seconds. Nonlinear models (gradient boosting with the embedding as input, a
HELP-style MLP) have not been compared yet; that comparison belongs to the predictor work of
issue 11.

Promises:

- Predictions never fall below ``FLOOR_SHARE`` (0.8) times the smallest value measured on the
  device that the prediction was given (its reference values and any further shots), the
  NB201 predictors' :func:`~hilnas.pipeline.predictors.cost_floor`.
- Few-shot (:meth:`SpacePredictor.few_shot`): with k further measurements a correction of the
  log residual (none, a constant, a line in the meta prediction, or ridge on the features) is
  chosen by leave-one-out error on the device's own points; one is used only when it beats no
  correction by more than ``FEW_SHOT_MARGIN``, so it is not worse than zero-shot beyond noise.
- Saved as one JSON file (arrays as lists, no pickle); loading checks format, space, metric and
  shapes and raises :class:`~hilnas.devices.errors.DataIntegrityError` on a damaged file.
- Bad input (an unknown device, an architecture of another space, reference values missing,
  non-positive or non-finite) raises a :class:`~hilnas.devices.errors.UserError` subclass with a
  one-line message naming the fix.
- Training is deterministic (closed form).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from hilnas.devices.errors import (
    DataIntegrityError,
    InvalidInputError,
    NotFoundError,
)
from hilnas.pipeline.predictors import FLOOR_SHARE, cost_floor, spearman, within
from hilnas.pipeline.spaces import get_space
from hilnas.pipeline.spaces.base import SearchSpace

FORMAT = "hilnas.space_predictor/1"
METRICS = ("latency_ms", "energy_mj")
#: Penalties tried by leave-one-device-out (scaled by the number of training rows per device).
ALPHAS = (0.01, 0.1, 1.0)
#: A few-shot correction must cut the leave-one-out squared log error by this share.
FEW_SHOT_MARGIN = 0.05
FEW_SHOT_ALPHAS = (0.1, 1.0, 10.0, 100.0)

__all__ = [
    "FLOOR_SHARE",
    "DeviceTable",
    "FewShotPredictor",
    "SpacePredictor",
    "arch_features",
    "default_predictor",
    "fit_predictor",
    "gpt_measured_table",
    "load_predictor",
    "ofa_latency_table",
    "shipped_table",
]


# ----------------------------------------------------------------------------------------------
# tables of measurements
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DeviceTable:
    """Measured costs of one space's architectures on several devices (NaN = invalid).

    ``reference_rows`` are the rows whose values form a device's embedding.
    """

    space: str
    metric: str
    codes: np.ndarray  # (n, num_decisions) int canonical codes
    values: np.ndarray  # (n, num_devices) float64, the metric's unit
    devices: tuple[str, ...]
    reference_rows: tuple[int, ...]

    def column(self, device: str) -> np.ndarray:
        if device not in self.devices:
            raise NotFoundError(
                f"no {self.space} {self.metric} measurements for device {device!r}; "
                f"known: {', '.join(self.devices)}"
            )
        return self.values[:, self.devices.index(device)]

    def reference_values(self, device: str) -> np.ndarray:
        return self.column(device)[list(self.reference_rows)]


def ofa_latency_table(path: str | os.PathLike[str] | None = None) -> DeviceTable:
    """HELP's 5,000 OFA subnets on its 9 GPU configurations (``ofa_mbv3/data/latency.npz``)."""
    from hilnas.pipeline.spaces.ofa_mbv3.derive import LATENCY_FILE

    path = Path(path or LATENCY_FILE)
    if not path.is_file():
        raise NotFoundError(
            f"OFA latency table {path} is missing; reinstall hilnas or rebuild it with "
            "`python -m hilnas.pipeline.spaces.ofa_mbv3.derive ../shared/data/ofa`"
        )
    with np.load(path, allow_pickle=False) as z:
        return DeviceTable(
            space="ofa_mbv3",
            metric="latency_ms",
            codes=z["arch_codes"].astype(np.int64),
            values=z["latency_ms"].astype(np.float64),
            devices=tuple(str(c) for c in z["configs"]),
            reference_rows=tuple(int(i) for i in z["reference_indices"]),
        )


def _rows_of(codes: np.ndarray, archs: Sequence[Sequence[int]]) -> tuple[int, ...]:
    """The row of each architecture in ``codes`` (every one must be there)."""
    pos = {tuple(int(v) for v in c): i for i, c in enumerate(codes)}
    return tuple(pos[tuple(int(v) for v in a)] for a in archs)


def gpt_measured_table(metric: str = "latency_ms") -> DeviceTable:
    """HW-GPT-Bench's 10,000 measured GPT-S architectures on 10 devices, one metric.

    The space's reference architectures are measured rows of this table (its parameter-count
    deciles, chosen by size alone: ``GPTSpace.reference_architectures``).
    """
    from hilnas.pipeline.spaces.gpt_s.measured import load_measured

    _check_metric(metric)
    m = load_measured()
    codes = m.arch_codes.astype(np.int64)
    values = (m.latency_ms if metric == "latency_ms" else m.energy_mj).astype(np.float64)
    values = np.where(values > 0, values, np.nan)
    return DeviceTable(
        space="gpt_s",
        metric=metric,
        codes=codes,
        values=values,
        devices=m.devices,
        reference_rows=_rows_of(codes, get_space("gpt_s").reference_architectures()),
    )


# ----------------------------------------------------------------------------------------------
# features
# ----------------------------------------------------------------------------------------------
def _check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise InvalidInputError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
    return metric


def arch_features(space: SearchSpace, codes: Sequence[Sequence[int]]) -> np.ndarray:
    """``[masked one-hot (real options only), log1p(cost features)]`` per architecture."""
    onehot = space.one_hot_batch(codes)[:, space.option_mask]
    cost = np.log1p(np.maximum(space.cost_features_batch(codes).astype(np.float64), 0.0))
    return np.concatenate([onehot.astype(np.float64), cost], axis=1)


def _profile(ref_values: np.ndarray) -> tuple[np.ndarray, float]:
    logs = np.log(ref_values)
    level = float(logs.mean())
    return logs - level, level


def _design(feats: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Standardised features with a leading 1 (the per-device intercept)."""
    z = (feats - mean) / std
    return np.concatenate([np.ones((len(z), 1)), z], axis=1)


# ----------------------------------------------------------------------------------------------
# the model
# ----------------------------------------------------------------------------------------------
@dataclass
class SpacePredictor:
    """Zero-shot cost predictor of one space and metric (see the module docstring)."""

    space: str
    metric: str
    reference_archs: tuple[str, ...]
    feat_mean: np.ndarray
    feat_std: np.ndarray
    weights: np.ndarray  # (1 + num_features, 1 + num_references)
    alpha: float
    devices: dict[str, tuple[float, ...]] = field(default_factory=dict)  # reference values
    info: dict[str, Any] = field(default_factory=dict)

    # ----- inputs ------------------------------------------------------------------------
    def _space(self) -> SearchSpace:
        return get_space(self.space)

    def codes(self, archs: Sequence[str | Sequence[int]]) -> list[tuple[int, ...]]:
        """Canonical codes of architecture strings or codes of this predictor's space."""
        space = self._space()
        if isinstance(archs, str):
            archs = [archs]
        if not len(archs):
            raise InvalidInputError(f"no {self.space} architectures given; pass at least one")
        return [space.coerce(a) for a in archs]

    def reference_values(
        self, values: Mapping[str, float] | Sequence[float] | np.ndarray | str
    ) -> np.ndarray:
        """A device's values on the reference architectures: a training device's name, a
        mapping reference string -> value, or a sequence in reference order."""
        n = len(self.reference_archs)
        if isinstance(values, str):
            if values not in self.devices:
                raise NotFoundError(
                    f"{self.space} {self.metric} predictor has no device {values!r} (known: "
                    f"{', '.join(self.devices)}); pass its values on the {n} reference "
                    "architectures instead (hilnas space show --json lists them)"
                )
            return np.asarray(self.devices[values], dtype=np.float64)
        if isinstance(values, Mapping):
            space = self._space()
            given = {space.format(space.coerce(k)): float(v) for k, v in values.items()}
            missing = [r for r in self.reference_archs if r not in given]
            if missing:
                raise InvalidInputError(
                    f"{len(missing)} of the {n} {self.space} reference architectures have no "
                    f"{self.metric} value (first missing: {missing[0]}); measure them all"
                )
            out = np.array([given[r] for r in self.reference_archs], dtype=np.float64)
        else:
            out = np.asarray(values, dtype=np.float64).reshape(-1)
            if len(out) != n:
                raise InvalidInputError(
                    f"expected {n} {self.metric} values, one per {self.space} reference "
                    f"architecture, got {len(out)}; measure all {n} references"
                )
        if not np.all(np.isfinite(out)) or np.any(out <= 0):
            raise InvalidInputError(
                f"reference {self.metric} values must be finite and > 0, got "
                f"{np.round(out, 4).tolist()}; remeasure the invalid ones"
            )
        return out

    # ----- prediction ----------------------------------------------------------------------
    def _log_rel(self, feats: np.ndarray, profile: np.ndarray) -> np.ndarray:
        u = np.concatenate([[1.0], profile])
        return _design(feats, self.feat_mean, self.feat_std) @ (self.weights @ u)

    def predict_features(self, feats: np.ndarray, ref_values: np.ndarray) -> np.ndarray:
        """Predictions (metric's unit) from precomputed :func:`arch_features`, floored."""
        profile, level = _profile(ref_values)
        pred = np.exp(level + self._log_rel(feats, profile))
        return np.maximum(pred, cost_floor(ref_values))

    def predict(
        self,
        archs: Sequence[str | Sequence[int]],
        reference: Mapping[str, float] | Sequence[float] | np.ndarray | str,
    ) -> np.ndarray:
        """Zero-shot predictions for ``archs`` on the device described by ``reference``."""
        ref = self.reference_values(reference)
        feats = arch_features(self._space(), self.codes(archs))
        return self.predict_features(feats, ref)

    def few_shot(
        self,
        reference: Mapping[str, float] | Sequence[float] | np.ndarray | str,
        shot_archs: Sequence[str | Sequence[int]],
        shot_values: Sequence[float] | np.ndarray,
    ) -> FewShotPredictor:
        """A per-device correction fit on the references and ``k`` further measurements."""
        ref = self.reference_values(reference)
        space = self._space()
        codes = self.codes(shot_archs)
        vals = np.asarray(shot_values, dtype=np.float64).reshape(-1)
        if len(vals) != len(codes) or not np.all(np.isfinite(vals)) or np.any(vals <= 0):
            raise InvalidInputError(
                f"few-shot needs one finite value > 0 per architecture, got {len(vals)} values "
                f"for {len(codes)} architectures; fix the measurements"
            )
        ref_codes = [space.parse(s) for s in self.reference_archs]
        feats = arch_features(space, ref_codes + codes)
        return FewShotPredictor.fit(self, ref, feats, np.concatenate([ref, vals]))

    # ----- persistence ---------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "space": self.space,
            "metric": self.metric,
            "reference_archs": list(self.reference_archs),
            "feat_mean": self.feat_mean.tolist(),
            "feat_std": self.feat_std.tolist(),
            "weights": self.weights.tolist(),
            "alpha": self.alpha,
            "devices": {k: list(v) for k, v in self.devices.items()},
            "info": self.info,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the model as one JSON file (atomically: a temporary file, then a rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json()))
        os.replace(tmp, path)
        return path


def load_predictor(
    path: str | os.PathLike[str], *, space: str | None = None, metric: str | None = None
) -> SpacePredictor:
    """Read a model written by :meth:`SpacePredictor.save`; checks format, space and shapes."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"no predictor file {path}; fit one with fit_predictor() and save it")
    try:
        d = json.loads(path.read_text())
        if d.get("format") != FORMAT:
            raise ValueError(f"format {d.get('format')!r}")
        mean = np.asarray(d["feat_mean"], dtype=np.float64)
        std = np.asarray(d["feat_std"], dtype=np.float64)
        weights = np.asarray(d["weights"], dtype=np.float64)
        refs = tuple(str(s) for s in d["reference_archs"])
        if mean.shape != std.shape or weights.shape != (len(mean) + 1, len(refs) + 1):
            raise ValueError("array shapes do not match")
        model = SpacePredictor(
            space=str(d["space"]),
            metric=_check_metric(str(d["metric"])),
            reference_archs=refs,
            feat_mean=mean,
            feat_std=std,
            weights=weights,
            alpha=float(d["alpha"]),
            devices={str(k): tuple(float(x) for x in v) for k, v in d["devices"].items()},
            info=dict(d.get("info", {})),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise DataIntegrityError(
            f"predictor file {path} is damaged ({str(exc).splitlines()[0][:80]}); refit and save"
        ) from None
    for want, got, what in ((space, model.space, "space"), (metric, model.metric, "metric")):
        if want is not None and want != got:
            raise InvalidInputError(
                f"predictor file {path} is for {what} {got!r}, not {want!r}; use a {want} model"
            )
    return model


# ----------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------
def _device_blocks(
    table: DeviceTable, rows: np.ndarray, design: np.ndarray, devices: Sequence[str]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per device: the Gram matrix and moment vector of its Kronecker design."""
    blocks: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    shared = None
    for dev in devices:
        profile, level = _profile(table.reference_values(dev))
        u = np.concatenate([[1.0], profile])
        y = table.column(dev)[rows]
        ok = np.isfinite(y)
        x = design[ok]
        if ok.all():
            shared = shared if shared is not None else x.T @ x
            gram = shared
        else:
            gram = x.T @ x
        target = np.log(y[ok]) - level
        blocks[dev] = (np.kron(gram, np.outer(u, u)), np.kron(x.T @ target, u))
    return blocks


def _solve(gram: np.ndarray, moment: np.ndarray, alpha: float, rows: int) -> np.ndarray:
    import scipy.linalg

    a = gram + alpha * rows * np.eye(len(gram))
    return scipy.linalg.cho_solve(scipy.linalg.cho_factor(a), moment)


def fit_predictor(
    table: DeviceTable,
    devices: Sequence[str] | None = None,
    rows: Sequence[int] | np.ndarray | None = None,
    *,
    alpha: float | None = None,
) -> SpacePredictor:
    """Train on ``devices`` (default: all of the table's) over ``rows`` (default: all).

    ``alpha=None`` chooses the penalty by leave-one-device-out Spearman over the training
    devices only (never a device outside ``devices``).
    """
    devices = list(table.devices if devices is None else devices)
    for dev in devices:
        table.column(dev)
    if len(devices) < 2 and alpha is None:
        raise InvalidInputError("choosing the penalty needs >= 2 training devices; pass alpha=")
    rows = np.arange(len(table.codes)) if rows is None else np.asarray(rows, dtype=np.int64)
    space = get_space(table.space)
    feats = arch_features(space, [tuple(c) for c in table.codes[rows]])
    mean = feats.mean(0)
    std = feats.std(0)
    std[std < 1e-9] = 1.0
    design = _design(feats, mean, std)
    blocks = _device_blocks(table, rows, design, devices)
    gram = sum(b[0] for b in blocks.values())
    moment = sum(b[1] for b in blocks.values())
    n_rows = len(rows)
    scores: dict[str, float] = {}
    if alpha is None:
        rhos: dict[float, list[float]] = {a: [] for a in ALPHAS}
        for dev in devices:
            g, m = blocks[dev]
            profile, _ = _profile(table.reference_values(dev))
            y = table.column(dev)[rows]
            ok = np.isfinite(y)
            for a in ALPHAS:
                w = _solve(gram - g, moment - m, a, n_rows).reshape(design.shape[1], -1)
                pred = design @ (w @ np.concatenate([[1.0], profile]))
                rhos[a].append(spearman(pred[ok], y[ok]))
        scores = {str(a): float(np.mean(r)) for a, r in rhos.items()}
        alpha = float(max(ALPHAS, key=lambda a: scores[str(a)]))
    w = _solve(gram, moment, alpha, n_rows).reshape(design.shape[1], -1)
    ref_codes = [tuple(int(v) for v in table.codes[r]) for r in table.reference_rows]
    digest = hashlib.sha256(np.ascontiguousarray(table.values).tobytes()).hexdigest()
    return SpacePredictor(
        space=table.space,
        metric=table.metric,
        reference_archs=tuple(space.format(c) for c in ref_codes),
        feat_mean=mean,
        feat_std=std,
        weights=w,
        alpha=alpha,
        devices={d: tuple(float(v) for v in table.reference_values(d)) for d in devices},
        info={
            "train_devices": devices,
            "train_rows": int(n_rows),
            "lodo_spearman_by_alpha": scores,
            "table_sha256": digest,
        },
    )


# ----------------------------------------------------------------------------------------------
# few-shot
# ----------------------------------------------------------------------------------------------
def _loo_ridge(z: np.ndarray, r: np.ndarray, alpha: float) -> tuple[float, np.ndarray]:
    """Leave-one-out mean squared error of ridge ``r ~ z`` (closed form) and its weights."""
    a = z.T @ z + alpha * np.eye(z.shape[1])
    a[0, 0] -= alpha  # no penalty on the intercept
    inv = np.linalg.pinv(a)
    w = inv @ z.T @ r
    hat = np.einsum("ij,jk,ik->i", z, inv, z)
    resid = (r - z @ w) / np.maximum(1.0 - hat, 1e-6)
    return float(np.mean(resid**2)), w


@dataclass
class FewShotPredictor:
    """A meta prediction plus a correction of its log residual on one device."""

    meta: SpacePredictor
    ref_values: np.ndarray
    floor_values: np.ndarray
    kind: str  # none | shift | line | ridge
    weights: np.ndarray
    loo_mse: dict[str, float]

    @staticmethod
    def _inputs(meta: SpacePredictor, feats: np.ndarray, ref: np.ndarray, kind: str) -> np.ndarray:
        profile, _ = _profile(ref)
        lp = meta._log_rel(feats, profile)[:, None]
        one = np.ones_like(lp)
        if kind == "shift":
            return one
        if kind == "line":
            return np.concatenate([one, lp], axis=1)
        return np.concatenate([one, lp, (feats - meta.feat_mean) / meta.feat_std], axis=1)

    @classmethod
    def fit(
        cls, meta: SpacePredictor, ref: np.ndarray, feats: np.ndarray, values: np.ndarray
    ) -> FewShotPredictor:
        profile, level = _profile(ref)
        resid = np.log(values) - level - meta._log_rel(feats, profile)
        scores: dict[str, float] = {"none": float(np.mean(resid**2))}
        fits: dict[str, np.ndarray] = {"none": np.zeros(0)}
        for kind, alphas in (("shift", (0.0,)), ("line", (0.0,)), ("ridge", FEW_SHOT_ALPHAS)):
            z = cls._inputs(meta, feats, ref, kind)
            for a in alphas:
                mse, w = _loo_ridge(z, resid, a)
                name = kind if kind != "ridge" else f"ridge:{a}"
                scores[name], fits[name] = mse, w
        best = min(scores, key=scores.__getitem__)
        if scores[best] > (1.0 - FEW_SHOT_MARGIN) * scores["none"]:
            best = "none"
        return cls(meta, ref, values, best, fits[best], scores)

    def predict_features(self, feats: np.ndarray) -> np.ndarray:
        profile, level = _profile(self.ref_values)
        log = level + self.meta._log_rel(feats, profile)
        if self.kind != "none":
            log = log + self._inputs(self.meta, feats, self.ref_values, self.kind.split(":")[0]) @ (
                self.weights
            )
        return np.maximum(np.exp(log), cost_floor(self.floor_values))

    def predict(self, archs: Sequence[str | Sequence[int]]) -> np.ndarray:
        """Predictions (metric's unit) for ``archs`` on this device, floored."""
        feats = arch_features(self.meta._space(), self.meta.codes(archs))
        return self.predict_features(feats)


def quality(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Spearman and share within +-10 % (the benchmark's figures)."""
    ok = np.isfinite(true)
    return {"spearman": spearman(pred[ok], true[ok]), "within10": within(pred[ok], true[ok])}


def shipped_table(space: str, metric: str = "latency_ms") -> DeviceTable:
    """The reference table shipped for a space: OFA's 9 GPU configurations (latency only),
    GPT-S's 10 measured devices (latency and energy)."""
    _check_metric(metric)
    if space == "ofa_mbv3" and metric == "latency_ms":
        return ofa_latency_table()
    if space == "gpt_s":
        return gpt_measured_table(metric)
    have = "ofa_mbv3 (latency_ms), gpt_s (latency_ms, energy_mj)"
    raise NotFoundError(
        f"no shipped {metric} table for space {space!r}; tables exist for {have} "
        "(nb201 uses hilnas.pipeline.predictors)"
    )


def default_predictor(
    space: str, metric: str = "latency_ms", cache_dir: str | os.PathLike[str] | None = None
) -> SpacePredictor:
    """The predictor trained on every device and row of :func:`shipped_table`.

    Training (with the leave-one-device-out penalty choice) takes tens of seconds, so with
    ``cache_dir`` the model is saved there as ``<space>_<metric>.json`` and reused while the
    table it was trained on is unchanged (its sha256 is recorded).
    """
    table = shipped_table(space, metric)
    digest = hashlib.sha256(np.ascontiguousarray(table.values).tobytes()).hexdigest()
    path = Path(cache_dir) / f"{space}_{metric}.json" if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            model = load_predictor(path, space=space, metric=metric)
            if model.info.get("table_sha256") == digest:
                return model
        except DataIntegrityError:
            pass  # a damaged cache is refitted and overwritten below
    model = fit_predictor(table)
    if path is not None:
        model.save(path)
    return model
