"""A space-generic cross-device cost predictor (latency or energy) for any registered space.

The idea is the NB201 meta-predictor's (:mod:`hilnas.pipeline.predictors`, after HELP and
MODNAS): a device is described by its costs on the space's reference architectures (its
*hardware embedding*), and one model trained across devices predicts any architecture on a new
device from that embedding alone (zero-shot). Nothing here knows a space's internals: an
architecture is described by the space's masked one-hot (inactive decisions zeroed, only real
options kept) and its log-scaled cost features; the embedding is the log of the device's
reference values minus their mean (its *profile*), and that mean (its *level*) is added back.

Two zero-shot models, one chosen per training set by leave-one-device-out Spearman over the
training devices (``zero_shot``, :data:`ZERO_SHOT`):

- ``meta``: ridge regression on every product of an architecture feature with ``[1, profile]``
  (``log cost - level = x^T W [1, e]``): a per-device linear model in the architecture features
  whose weights are a linear function of the embedding. Its normal equations are Kronecker
  products of per-device Gram matrices, so training and leave-one-device-out selection of the
  penalty take seconds.
- ``experts``: one ridge model per training device on its own rows (a denoised copy of that
  device); a new device is a mix of them, weighted by how well each one's reference
  predictions, scaled, fit its profile (:func:`_expert_mix`). On OFA's batch-1 GPU
  configurations, whose measurements are mostly noise and drift, the meta model's linear
  dependence on a noisy 10-value embedding loses to borrowing another batch-1 device's denoised
  model (leave-one-out over the 8 configurations other than ``titan_rtx_64``: mean Spearman
  0.900 vs 0.890; over all 9, batch 1 0.792 vs 0.761;
  pipeline/benchmarks/results/predictors_spaces.md). Gradient boosting and an MLP fit on a
  configuration's own 4,000 rows are no better than ridge there, so a nonlinear meta-model
  was not pursued. On GPT-S leave-one-device-out keeps ``meta``.

Promises:

- Predictions never fall below ``FLOOR_SHARE`` (0.8) times the smallest value measured on the
  device that the prediction was given (its reference values and any further shots), the
  NB201 predictors' :func:`~hilnas.pipeline.predictors.cost_floor`.
- Few-shot (:meth:`SpacePredictor.few_shot`): with k further measurements a correction of the
  log residual (none, a constant, a line in the zero-shot prediction, or ridge on the
  features) is chosen by leave-one-out error on the device's own points; one is used only when
  its gain over no correction exceeds ``FEW_SHOT_SE`` standard errors of the per-point gains
  and ``FEW_SHOT_MARGIN`` of the error, so it is not worse than zero-shot beyond noise *on
  points like the ones measured* (a device whose cost drifts between the measured and the
  predicted architectures can still lose: HW-GPT-Bench's cpu_xeon_silver energy).
- Saved as one JSON file (arrays as lists, no pickle); loading checks format, space, metric and
  shapes and raises :class:`~hilnas.devices.errors.DataIntegrityError` on a damaged file.
- Bad input (an unknown device, an architecture of another space, reference values missing,
  non-positive or non-finite) raises a :class:`~hilnas.devices.errors.UserError` subclass with a
  one-line message naming the fix.
- Training is deterministic (closed form). Files of the first format (meta model only) load.
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

FORMAT = "hilnas.space_predictor/2"
#: Formats :func:`load_predictor` reads (``/1``: the meta model only, no experts).
FORMATS = ("hilnas.space_predictor/1", FORMAT)
METRICS = ("latency_ms", "energy_mj")
#: Penalties tried by leave-one-device-out (scaled by the number of training rows per device).
ALPHAS = (0.01, 0.1, 1.0)
#: Zero-shot models chosen between by leave-one-device-out (see the module docstring).
ZERO_SHOT = ("meta", "experts")
#: Ridge penalty of each training device's own model (scaled by its number of rows).
EXPERT_ALPHA = 0.01
#: Sharpness of the expert weights: an expert whose scaled fit of the reference profile has
#: squared error ``e`` gets weight ``exp(-(e - e_min) / (EXPERT_TAU * e_min))``.
EXPERT_TAU = 0.1
#: A few-shot correction is used only if its leave-one-out gain over no correction (mean of
#: per-point squared log error differences) exceeds this many standard errors of that gain.
FEW_SHOT_SE = 1.0
#: ... and cuts the leave-one-out squared log error by at least this share.
FEW_SHOT_MARGIN = 0.05
FEW_SHOT_ALPHAS = (0.1, 1.0, 10.0, 100.0)
#: Bootstrap resamples (fixed seed) for the standard error of a ridge correction's Spearman gain.
FEW_SHOT_BOOTSTRAP = 200
#: A ridge correction reorders architectures: its Spearman gain must exceed this many bootstrap
#: standard errors (2, not 1: the best of four penalties is taken, so its gain is optimistic).
FEW_SHOT_RANK_SE = 2.0

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


def _expert_mix(pred: np.ndarray, ref_pred: np.ndarray, profile: np.ndarray) -> np.ndarray:
    """Log cost minus level from the experts' log predictions ``pred`` (n, E), given their
    predictions on the reference architectures ``ref_pred`` (R, E) and the device's profile.

    Each expert's centred reference predictions are scaled (>= 0) to fit the profile; the
    experts are weighted by ``exp(-(e - e_min) / (EXPERT_TAU * e_min))`` of that fit's mean
    squared error ``e``, and the weighted mix is scaled (>= 0) to the profile once more.
    """
    centre = ref_pred.mean(0)
    c = ref_pred - centre
    norms = np.maximum((c * c).sum(0), 1e-12)
    scales = np.maximum(c.T @ profile / norms, 0.0)
    err = ((profile[:, None] - c * scales) ** 2).mean(0)
    lowest = float(err.min())
    share = np.exp(-(err - lowest) / (EXPERT_TAU * max(lowest, 1e-12)))
    share /= share.sum()
    mix = c @ share
    scale = max(float(mix @ profile) / max(float(mix @ mix), 1e-12), 0.0)
    return scale * ((pred - centre) @ share)


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
    zero_shot: str = "meta"  # one of ZERO_SHOT
    experts: np.ndarray | None = None  # (num_experts, 1 + num_features) per-device ridge
    expert_devices: tuple[str, ...] = ()
    _ref_feats: np.ndarray | None = field(default=None, repr=False, compare=False)

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
        """Predicted log cost minus the device's level (the zero-shot model's output)."""
        design = _design(feats, self.feat_mean, self.feat_std)
        if self.zero_shot == "experts" and self.experts is not None:
            ref = _design(self._reference_features(), self.feat_mean, self.feat_std)
            return _expert_mix(design @ self.experts.T, ref @ self.experts.T, profile)
        return design @ (self.weights @ np.concatenate([[1.0], profile]))

    def _reference_features(self) -> np.ndarray:
        if self._ref_feats is None:
            space = self._space()
            codes = [space.parse(s) for s in self.reference_archs]
            self._ref_feats = arch_features(space, codes)
        return self._ref_feats

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
            "zero_shot": self.zero_shot,
            "experts": None if self.experts is None else self.experts.tolist(),
            "expert_devices": list(self.expert_devices),
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
        if d.get("format") not in FORMATS:
            raise ValueError(f"format {d.get('format')!r}")
        mean = np.asarray(d["feat_mean"], dtype=np.float64)
        std = np.asarray(d["feat_std"], dtype=np.float64)
        weights = np.asarray(d["weights"], dtype=np.float64)
        refs = tuple(str(s) for s in d["reference_archs"])
        if mean.shape != std.shape or weights.shape != (len(mean) + 1, len(refs) + 1):
            raise ValueError("array shapes do not match")
        zero_shot = str(d.get("zero_shot", "meta"))
        experts = d.get("experts")
        experts = None if experts is None else np.asarray(experts, dtype=np.float64)
        expert_devices = tuple(str(x) for x in d.get("expert_devices", ()))
        if zero_shot not in ZERO_SHOT:
            raise ValueError(f"zero-shot model {zero_shot!r}")
        if experts is not None and experts.shape != (len(expert_devices), len(mean) + 1):
            raise ValueError("expert shapes do not match")
        if zero_shot == "experts" and (experts is None or not len(experts)):
            raise ValueError("zero-shot model 'experts' without experts")
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
            zero_shot=zero_shot,
            experts=experts,
            expert_devices=expert_devices,
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


def _fit_experts(
    table: DeviceTable, rows: np.ndarray, design: np.ndarray, devices: Sequence[str]
) -> np.ndarray:
    """Each device's own ridge model of its log cost on the design, ``(devices, columns)``."""
    out = np.zeros((len(devices), design.shape[1]))
    for i, dev in enumerate(devices):
        y = table.column(dev)[rows]
        ok = np.isfinite(y)
        x = design[ok]
        a = x.T @ x + EXPERT_ALPHA * len(x) * np.eye(x.shape[1])
        a[0, 0] -= EXPERT_ALPHA * len(x)  # no penalty on the intercept
        out[i] = np.linalg.solve(a, x.T @ np.log(y[ok]))
    return out


def fit_predictor(
    table: DeviceTable,
    devices: Sequence[str] | None = None,
    rows: Sequence[int] | np.ndarray | None = None,
    *,
    alpha: float | None = None,
    zero_shot: str | None = None,
) -> SpacePredictor:
    """Train on ``devices`` (default: all of the table's) over ``rows`` (default: all).

    ``alpha=None`` chooses the penalty, ``zero_shot=None`` the zero-shot model (``meta`` or
    ``experts``, :data:`ZERO_SHOT`), by leave-one-device-out Spearman over the training
    devices only (never a device outside ``devices``).
    """
    devices = list(table.devices if devices is None else devices)
    for dev in devices:
        table.column(dev)
    if zero_shot is not None and zero_shot not in ZERO_SHOT:
        raise InvalidInputError(
            f"unknown zero-shot model {zero_shot!r}; use one of {', '.join(ZERO_SHOT)}"
        )
    if len(devices) < 2 and (alpha is None or zero_shot is None):
        raise InvalidInputError(
            "choosing the penalty and zero-shot model needs >= 2 training devices; pass "
            "alpha= and zero_shot="
        )
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
    experts = _fit_experts(table, rows, design, devices)
    ref_rows = list(table.reference_rows)
    ref_design = _design(arch_features(space, [tuple(c) for c in table.codes[ref_rows]]), mean, std)
    scores: dict[str, float] = {}
    zero_scores: dict[str, float] = {}
    if alpha is None or zero_shot is None:
        tried = ALPHAS if alpha is None else (alpha,)
        rhos: dict[float, list[float]] = {a: [] for a in tried}
        expert_rhos: list[float] = []
        for i, dev in enumerate(devices):
            g, m = blocks[dev]
            profile, _ = _profile(table.reference_values(dev))
            y = table.column(dev)[rows]
            ok = np.isfinite(y)
            for a in tried:
                w = _solve(gram - g, moment - m, a, n_rows).reshape(design.shape[1], -1)
                pred = design @ (w @ np.concatenate([[1.0], profile]))
                rhos[a].append(spearman(pred[ok], y[ok]))
            if zero_shot is None:
                rest = np.delete(experts, i, axis=0)
                pred = _expert_mix(design @ rest.T, ref_design @ rest.T, profile)
                expert_rhos.append(spearman(pred[ok], y[ok]))
        if alpha is None:
            scores = {str(a): float(np.mean(r)) for a, r in rhos.items()}
            alpha = float(max(ALPHAS, key=lambda a: scores[str(a)]))
        if zero_shot is None:
            zero_scores = {
                "meta": float(np.mean(rhos[alpha])),
                "experts": float(np.mean(expert_rhos)),
            }
            zero_shot = "experts" if zero_scores["experts"] > zero_scores["meta"] else "meta"
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
            "lodo_spearman_by_zero_shot": zero_scores,
            "table_sha256": digest,
        },
        zero_shot=zero_shot,
        experts=experts,
        expert_devices=tuple(devices),
    )


# ----------------------------------------------------------------------------------------------
# few-shot
# ----------------------------------------------------------------------------------------------
def _loo_ridge(z: np.ndarray, r: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-out residuals of ridge ``r ~ z`` per point (closed form) and its weights."""
    a = z.T @ z + alpha * np.eye(z.shape[1])
    a[0, 0] -= alpha  # no penalty on the intercept
    inv = np.linalg.pinv(a)
    w = inv @ z.T @ r
    hat = np.einsum("ij,jk,ik->i", z, inv, z)
    return (r - z @ w) / np.maximum(1.0 - hat, 1e-6), w


def _beats_prior(
    kind: str,
    weights: np.ndarray,
    loo: np.ndarray,
    resid: np.ndarray,
    log_values: np.ndarray,
    scores: Mapping[str, float],
) -> bool:
    """Whether a correction with leave-one-out log errors ``loo`` beats no correction (log
    errors ``resid``) beyond noise on the device's own points.

    It must cut the mean absolute log error by more than ``FEW_SHOT_SE`` standard errors of the
    per-point gains and by ``FEW_SHOT_MARGIN`` of it, must not leave fewer points within 10 %,
    and must not risk the ranking: a shift keeps it, a line only with a positive slope, and a
    ridge correction (which reorders architectures) needs a Spearman gain of its leave-one-out
    predictions above ``FEW_SHOT_RANK_SE`` bootstrap standard errors.
    """
    gain = np.abs(resid) - np.abs(loo)
    n = len(gain)
    if n < 3:
        return False
    noise = FEW_SHOT_SE * float(np.std(gain, ddof=1)) / np.sqrt(n)
    if gain.mean() <= max(noise, FEW_SHOT_MARGIN * scores["none"]):
        return False
    tol = np.log(1.1)
    if np.mean(np.abs(loo) <= tol) < np.mean(np.abs(resid) <= tol):
        return False
    if kind == "shift":
        return True
    if kind == "line":
        return bool(1.0 + weights[1] > 0.0)
    cand, prior = log_values - loo, log_values - resid
    rho_gain = spearman(cand, log_values) - spearman(prior, log_values)
    draws = np.random.default_rng(0).integers(0, n, size=(FEW_SHOT_BOOTSTRAP, n))
    boot = [spearman(cand[i], log_values[i]) - spearman(prior[i], log_values[i]) for i in draws]
    return rho_gain > FEW_SHOT_RANK_SE * float(np.std(boot))


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
        log_values = np.log(values)
        prior = level + meta._log_rel(feats, profile)
        resid = log_values - prior
        # out-of-sample log error of each candidate at each point (leave-one-out, closed form)
        loo: dict[str, np.ndarray] = {"none": resid}
        fits: dict[str, np.ndarray] = {"none": np.zeros(0)}
        for kind, alphas in (("shift", (0.0,)), ("line", (0.0,)), ("ridge", FEW_SHOT_ALPHAS)):
            z = cls._inputs(meta, feats, ref, kind)
            for a in alphas:
                name = kind if kind != "ridge" else f"ridge:{a}"
                loo[name], fits[name] = _loo_ridge(z, resid, a)
        scores = {k: float(np.mean(np.abs(e))) for k, e in loo.items()}
        best = "none"
        for name in sorted(scores, key=scores.__getitem__):
            kind = name.split(":")[0]
            if name == "none" or not _beats_prior(
                kind, fits[name], loo[name], resid, log_values, scores
            ):
                continue
            best = name
            break
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
    table it was trained on is unchanged (its sha256 is recorded) and the file is of the
    current format.
    """
    table = shipped_table(space, metric)
    digest = hashlib.sha256(np.ascontiguousarray(table.values).tobytes()).hexdigest()
    path = Path(cache_dir) / f"{space}_{metric}.json" if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            model = load_predictor(path, space=space, metric=metric)
            if model.info.get("table_sha256") == digest and model.experts is not None:
                return model  # (a first-format file has no experts: refitted)
        except DataIntegrityError:
            pass  # a damaged cache is refitted and overwritten below
    model = fit_predictor(table)
    if path is not None:
        model.save(path)
    return model
