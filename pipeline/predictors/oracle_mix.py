"""Zero-shot GPT-S cost model from the reference devices' own oracles (issue 10).

HW-GPT-Bench ships one latency and one energy MLP surrogate per reference device
(:mod:`hilnas.pipeline.spaces.gpt_s.surrogates`); unlike the measured table they can be evaluated
at ANY architecture, also where the search's fronts live (the smallest models, below every
measured one). :class:`OracleMix` models a new device's log cost as a regularised combination of
the base devices' log oracle costs,

    log c_new(a) = b0 + sum_k w_k log c_k(a),

fitted on the new device's values on the space's 10 reference architectures only. The
combination is chosen by leave-one-out over those 10 values among

- ``single:<device>``: one base device, affine in its log cost (2 parameters);
- ``ridge:<alpha>``: every base, weights shrunk towards the equal-weight average (sum 1) with
  ridge strength ``alpha`` (on centred log costs);
- ``nnls:<alpha>``: the same with non-negative weights.

A base's oracle value <= 0 (an energy surrogate extrapolating below zero) is floored at
:data:`FLOOR` times its smallest reference value before the log. A target whose reference values
ARE a base device's (a reference device of the space itself) gets that device's oracle, exact.

For a device that is not a reference device (this machine, an imported one) the same model
applies with all 10 reference devices as bases: it needs only the shipped surrogates and the
new device's reference values. The interface matches what the space search calls on its cost
predictors (``predict_features(arch_features, reference values)``, ``to_json``).

Measured (leave-one-device-out of the 10 devices, ``benchmarks/results/search_gpt_costmodel.md``):
it ranks held-out energy rows WORSE than the space predictor (measured.csv rows 8000-9999, mean
Spearman 0.891 vs 0.963) and latency too (a100, P100), so the space search does not use it by
default; ask for it with ``spacesearch.targets.cost_predictor(..., cost_model="oracle_mix")``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hilnas.devices.errors import InvalidInputError

__all__ = ["FLOOR", "KIND", "MixFit", "OracleMix", "fit_mix", "oracle_mix"]

#: A base oracle's value <= 0 is floored at this fraction of its smallest reference value.
FLOOR = 1e-3
KIND = "oracle_mix"
#: Ridge strengths tried (towards equal weights), chosen by leave-one-out on the references.
ALPHAS: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
_PREFIX = {"latency_ms": "latency_", "energy_mj": "energy_"}


@dataclass(frozen=True)
class MixFit:
    """A fitted combination: ``log c = intercept + (B - centre) @ weights``."""

    choice: str
    intercept: float
    centre: np.ndarray
    weights: np.ndarray
    loo_rmse: float

    def __call__(self, B: np.ndarray) -> np.ndarray:
        return self.intercept + (B - self.centre) @ self.weights


def _fit_one(kind: str, param: float | int, B: np.ndarray, y: np.ndarray) -> MixFit:
    K = B.shape[1]
    if kind == "single":
        k = int(param)
        X = np.c_[np.ones(len(y)), B[:, k]]
        w = np.linalg.lstsq(X, y, rcond=None)[0]
        weights = np.zeros(K)
        weights[k] = w[1]
        return MixFit(f"single:{k}", float(w[0]), np.zeros(K), weights, float("nan"))
    centre = B.mean(0)
    Xc, yc = B - centre, y - y.mean()
    w0 = np.full(K, 1.0 / K)
    if kind == "ridge":
        delta = np.linalg.solve(Xc.T @ Xc + float(param) * np.eye(K), Xc.T @ (yc - Xc @ w0))
        weights = w0 + delta
    else:
        from scipy.optimize import nnls

        s = np.sqrt(float(param))
        weights = nnls(np.vstack([Xc, s * np.eye(K)]), np.concatenate([yc, s * w0]))[0]
    return MixFit(f"{kind}:{param:g}", float(y.mean()), centre, weights, float("nan"))


def fit_mix(B: np.ndarray, y: np.ndarray) -> MixFit:
    """The candidate with the lowest leave-one-out RMSE of ``y`` (log reference values) from
    ``B`` (``(n, K)`` base log costs on the references), refitted on all ``n``."""
    B = np.asarray(B, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n, K = B.shape
    if n < 3 or len(y) != n or not np.all(np.isfinite(B)) or not np.all(np.isfinite(y)):
        raise InvalidInputError(
            f"the oracle mix needs >= 3 finite reference values and base costs, got {len(y)}; "
            "measure every reference architecture"
        )
    cands: list[tuple[str, float | int]] = [("single", k) for k in range(K)]
    cands += [(kind, a) for a in ALPHAS for kind in ("ridge", "nnls")]
    best: tuple[float, str, float | int] | None = None
    for kind, p in cands:
        err = np.empty(n)
        for i in range(n):
            keep = np.arange(n) != i
            err[i] = _fit_one(kind, p, B[keep], y[keep])(B[i : i + 1])[0] - y[i]
        rmse = float(np.sqrt(np.mean(err**2)))
        if best is None or rmse < best[0] - 1e-12:
            best = (rmse, kind, p)
    assert best is not None
    out = _fit_one(best[1], best[2], B, y)
    return MixFit(out.choice, out.intercept, out.centre, out.weights, best[0])


@dataclass
class OracleMix:
    """Zero-shot ``metric`` model of ``gpt_s`` from the oracles of ``devices`` (see module)."""

    metric: str
    devices: tuple[str, ...]
    space: str = "gpt_s"
    info: dict[str, Any] = field(default_factory=dict)
    _fits: dict[tuple[float, ...], tuple[MixFit | None, int | None]] = field(
        default_factory=dict, repr=False, compare=False
    )
    _floors: np.ndarray | None = field(default=None, repr=False, compare=False)
    _ref_bases: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        from hilnas.pipeline.spaces.gpt_s.surrogates import DEVICES

        if self.space != "gpt_s":
            raise InvalidInputError(
                f"the oracle mix needs a space with per-device oracles (gpt_s), got {self.space!r}"
            )
        if self.metric not in _PREFIX:
            raise InvalidInputError(f"unknown metric {self.metric!r}; use {', '.join(_PREFIX)}")
        self.devices = tuple(self.devices)
        bad = [d for d in self.devices if d not in DEVICES]
        if not self.devices or bad:
            raise InvalidInputError(
                f"oracle-mix base devices must be GPT-S reference devices ({', '.join(DEVICES)}),"
                f" got {', '.join(bad) or 'none'}"
            )

    # ----- the bases -----------------------------------------------------------------------
    @staticmethod
    def _surrogates() -> Any:
        from hilnas.pipeline.spaces.gpt_s.surrogates import load_surrogates

        return load_surrogates()  # cached by the surrogates module

    def _raw(self, codes: np.ndarray) -> np.ndarray:
        sur = self._surrogates()
        scale = 3.6e6 if self.metric == "energy_mj" else 1.0  # Wh -> mJ, as energy_mj does
        return np.stack(
            [sur.raw(_PREFIX[self.metric] + d, codes) * scale for d in self.devices], axis=1
        )

    def _reference_codes(self) -> np.ndarray:
        from hilnas.pipeline.spaces import get_space

        space = get_space(self.space)
        return np.asarray([space.parse(s) for s in space.reference_strings()], dtype=np.int64)

    def bases(self, codes: Sequence[Sequence[int]] | np.ndarray) -> np.ndarray:
        """``(n, K)`` log base costs (floored, see :data:`FLOOR`)."""
        if self._floors is None:
            raw = self._raw(self._reference_codes())
            self._ref_bases = raw
            self._floors = FLOOR * raw.min(0)
        raw = self._raw(np.asarray(codes, dtype=np.int64).reshape(-1, 27))
        return np.log(np.maximum(raw, self._floors))

    def _fit(self, ref_values: np.ndarray) -> tuple[MixFit | None, int | None]:
        ref = np.asarray(ref_values, dtype=np.float64).reshape(-1)
        key = tuple(float(v) for v in ref)
        if key not in self._fits:
            refs = self._reference_codes()
            if len(ref) != len(refs) or not np.all(np.isfinite(ref)) or np.any(ref <= 0):
                raise InvalidInputError(
                    f"expected {len(refs)} finite {self.metric} values > 0, one per gpt_s "
                    f"reference architecture, got {np.round(ref, 4).tolist()}; remeasure them"
                )
            B = self.bases(refs)
            assert self._ref_bases is not None
            same = [
                k
                for k in range(len(self.devices))
                if np.allclose(self._ref_bases[:, k], ref, rtol=1e-9, atol=0)
            ]
            self._fits[key] = (None, same[0]) if same else (fit_mix(B, np.log(ref)), None)
        return self._fits[key]

    def describe(self, ref_values: np.ndarray) -> dict[str, Any]:
        """The chosen combination for a device's reference values."""
        fit, own = self._fit(ref_values)
        if fit is None:
            return {"choice": f"own:{self.devices[int(own)]}", "loo_rmse": 0.0}
        choice = fit.choice
        if choice.startswith("single:"):
            choice = "single:" + self.devices[int(choice.split(":")[1])]
        return {
            "choice": choice,
            "loo_rmse": round(fit.loo_rmse, 5),
            "weights": dict(zip(self.devices, np.round(fit.weights, 4).tolist(), strict=True)),
        }

    # ----- prediction ----------------------------------------------------------------------
    def predict_codes(
        self, codes: Sequence[Sequence[int]] | np.ndarray, ref_values: np.ndarray
    ) -> np.ndarray:
        """Predicted ``metric`` (its unit) of canonical ``codes`` on the device of ``ref_values``."""
        fit, own = self._fit(ref_values)
        B = self.bases(codes)
        if fit is None:
            return np.exp(B[:, int(own)])
        return np.exp(fit(B))

    def predict_features(self, feats: np.ndarray, ref_values: np.ndarray) -> np.ndarray:
        """:meth:`predict_codes` from :func:`~hilnas.pipeline.predictors.space.arch_features`
        (the codes are read back from its masked one-hot block), as the space search calls."""
        return self.predict_codes(codes_from_features(self.space, feats), ref_values)

    def predict(self, archs: Sequence[str | Sequence[int]], ref_values: Any) -> np.ndarray:
        from hilnas.pipeline.spaces import get_space

        space = get_space(self.space)
        if isinstance(archs, str):
            archs = [archs]
        codes = np.asarray([space.coerce(a) for a in archs], dtype=np.int64)
        return self.predict_codes(codes, np.asarray(ref_values, dtype=np.float64))

    # ----- persistence ---------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "space": self.space,
            "metric": self.metric,
            "devices": list(self.devices),
            "floor": FLOOR,
            "info": self.info,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OracleMix:
        if data.get("kind") != KIND:
            raise InvalidInputError(f"not an oracle-mix model (kind {data.get('kind')!r})")
        return cls(
            metric=str(data["metric"]),
            devices=tuple(str(d) for d in data["devices"]),
            space=str(data.get("space", "gpt_s")),
            info=dict(data.get("info", {})),
        )


def codes_from_features(space_name: str, feats: np.ndarray) -> np.ndarray:
    """Canonical codes ``(n, num_decisions)`` read back from the masked one-hot block of
    :func:`~hilnas.pipeline.predictors.space.arch_features` (an inactive decision: option 0)."""
    from hilnas.pipeline.spaces import get_space

    space = get_space(space_name)
    mask = space.option_mask
    k = int(mask.sum())
    f = np.asarray(feats)
    if f.ndim != 2 or f.shape[1] < k:
        raise InvalidInputError(
            f"expected arch_features rows of {space_name} (>= {k} columns), got shape {f.shape}"
        )
    full = np.zeros((len(f), *mask.shape))
    full[:, mask] = f[:, :k]
    codes = full.argmax(-1)
    codes[full.max(-1) <= 0.5] = 0
    return codes.astype(np.int64)


def oracle_mix(metric: str, devices: Sequence[str] | None = None) -> OracleMix:
    """An :class:`OracleMix` over ``devices`` (default: every GPT-S reference device)."""
    from hilnas.pipeline.spaces.gpt_s.surrogates import DEVICES

    return OracleMix(metric=metric, devices=tuple(devices or DEVICES))
