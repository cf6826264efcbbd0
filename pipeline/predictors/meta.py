"""The cross-device meta-predictor: model, training, save and load.

Targets and their embeddings: :mod:`hilnas.pipeline.predictors.embedding`.

The meta-predictor (:class:`MetaPredictor`) is a hierarchical (empirical-Bayes) linear cost model
on differentiable architecture features (:mod:`hilnas.pipeline.predictors.features`):

    cost(a, d) = s_d * phi(a) . w_d,      s_d = mean of d's 10 reference values,
    w_d ~ mixture of N(w_k, c Sigma) over training devices k and N(mean_k w_k, Sigma)

The training devices' weights ``w_k`` and their covariance ``Sigma`` are learned across devices
(the noise level and kernel scale are averaged over by marginal likelihood). For a target
it conditions on the 10 reference measurements (zero-shot) and on any further measurements
(few-shot): the posterior mean of ``w_d`` is a closed-form, differentiable function of the support
set, so ``predict`` is differentiable in the architecture encoding. Costs are additive over the
operations of a network, which is why the model works in linear (not log) space; the benchmark
in :mod:`hilnas.pipeline.benchmarks.predictors` compares the alternatives.

Promises:
- ``predict`` returns strictly positive values in the target's units; it never trains.
- The floor: no architecture, connected or not, is ever predicted below ``FLOOR_SHARE`` (0.8)
  times the smallest value measured on the target that the prediction was given (its 10
  reference values and any further measurements; :func:`cost_floor`). Every network of every
  space pays for its skeleton (NB201: the stem, the two residual reductions, the head), also
  when its cells compute nothing, so the cheapest network measured there bounds what any other
  can cost. The bound is smooth (differentiable in the architecture) and needs nothing from the
  space but the measured values, so it holds unchanged for every registered space.
- A target whose measured values are all equal (within ``FLAT_SPREAD``, 1 %) carries no ranking
  information: it is predicted flat, at its median value, for every architecture (a degenerate
  front: on that device the architectures cannot be told apart by cost), and
  :func:`embedding_for` logs a warning saying so and what to measure (:func:`flat_warning`).
- Trained weights are safetensors + a JSON metadata file holding the training-data fingerprint
  (reference-data sha256, device list, seed, hyper-parameters, hilnas version, sha256 of the
  tensor file); loading checks all of it and raises :class:`PredictorFingerprintError` on a
  mismatch. No pickles are read.
- Training is deterministic for a seed on CPU.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from hilnas.pipeline import refdata
from hilnas.pipeline.predictors.embedding import (
    FLAT_SPREAD,
    FLOOR_SHARE,
    NETWORKS,
    SPACE,
    TargetEmbedding,
    _check_metric,
    _sha256_bytes,
    _space,
    hilnas_version,
    reference_codes,
)
from hilnas.pipeline.predictors.errors import PredictorError, PredictorFingerprintError
from hilnas.pipeline.predictors.features import (
    BLOCK_SIZES,
    FEATURE_SETS,
    arch_features,
    feature_dim,
    features_np,
    one_hot_codes,
)
from torch import nn

if TYPE_CHECKING:  # pragma: no cover
    from hilnas.pipeline.store import MeasurementStore

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
DATA_DIR = Path(__file__).resolve().parent.parent / "data"


# ----------------------------------------------------------------------------------------------
# the meta-predictor
# ----------------------------------------------------------------------------------------------
def _smooth_positive(x: torch.Tensor, eps: float) -> torch.Tensor:
    """~x for x >> eps, always > 0, smooth (keeps gradients alive)."""
    return 0.5 * (x + torch.sqrt(x * x + eps * eps))


def _flat_rows(values: torch.Tensor) -> torch.Tensor:
    """Whether each row of measured values ``(..., n)`` is flat (see :func:`is_flat`)."""
    lo, hi = values.min(-1).values, values.max(-1).values
    return hi - lo <= FLAT_SPREAD * lo


def _bounded(
    f: torch.Tensor, values: torch.Tensor, scale: torch.Tensor, eps: float
) -> torch.Tensor:
    """Predictions in the target's units from raw model outputs ``f`` (in scale units).

    ``values`` are the measured values the prediction was given (``(n,)`` for one target, or
    ``(B, n)``, one row per architecture): every prediction stays above ``FLOOR_SHARE`` times
    their minimum (smoothly: ``lb + softplus-like(f - lb)``, strictly increasing in ``f``, so the
    ranking is kept), and a flat row predicts its median for every architecture."""
    lb = FLOOR_SHARE * values.min(-1).values / scale
    out = (lb + _smooth_positive(f - lb, eps)) * scale
    flat = _flat_rows(values)
    if bool(flat.any()):
        out = torch.where(flat, values.quantile(0.5, dim=-1).to(out.dtype), out)
    return out


class MetaPredictor(nn.Module):
    """Cross-device cost predictor conditioned on a target's measurements.

    The prior over a target's (scale-normalised) weight vector ``w`` is a mixture: one Gaussian
    centred on each training device's weights ``device_weights[k]`` with covariance
    ``c * prior_cov + iso * I`` for every ``c`` in ``kernel_scales``, plus the global Gaussian
    ``N(mean, prior_cov + iso * I)``; each component is tried with every noise variance in
    ``noises``. Given a support set (the 10 reference values, plus any further measurements), the
    components are weighted by their marginal likelihood (Bayesian model averaging) and the
    posterior mean weights are averaged. With ``mode="gauss"`` only the global Gaussian is used
    (ordinary Bayesian linear regression with a learned prior).

    Network variants: the training devices' weights describe networks in which every
    non-``none`` op runs. A *pruned* network (hilnas's exporter) skips ops fed only by dead nodes;
    its weights are the same costs moved from the ``ops`` block to the ``live_ops`` block, a linear
    map ``T`` (``T w``, covariance ``T Sigma T'``). A target's ``network`` picks the unpruned
    components, the pruned ones, or both (``"unknown"``, half the prior mass each). Feature sets
    without a ``live_ops`` block have only the unpruned variant.
    """

    def __init__(
        self,
        *,
        metric: str = "latency_ms",
        feature_set: str = "v3",
        num_devices: int = 1,
        kernel_scales: Sequence[float] = (0.03, 0.1, 0.3),
        noises: Sequence[float] = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1),
        iso: float = 1e-4,
        mode: str = "mixture",
        floor: float = 0.02,
    ):
        super().__init__()
        self.metric = _check_metric(metric)
        if feature_set not in FEATURE_SETS:
            raise PredictorError(
                f"unknown feature set {feature_set!r}; known: {', '.join(FEATURE_SETS)}"
            )
        if mode not in ("mixture", "gauss"):
            raise PredictorError(f"mode must be 'mixture' or 'gauss', got {mode!r}")
        self.feature_set = feature_set
        self.blocks = FEATURE_SETS[feature_set]
        self.floor = float(floor)
        self.iso = float(iso)
        self.mode = mode
        f = feature_dim(self.blocks)
        self.register_buffer("device_weights", torch.zeros(num_devices, f, dtype=torch.float64))
        self.register_buffer("prior_cov", torch.eye(f, dtype=torch.float64))
        self.register_buffer(
            "kernel_scales", torch.tensor(list(kernel_scales), dtype=torch.float64)
        )
        self.register_buffer("noises", torch.tensor(list(noises), dtype=torch.float64))
        self.register_buffer(
            "ref_onehot", torch.from_numpy(one_hot_codes(reference_codes())).double()
        )
        self.metadata: dict[str, Any] = {}
        self._cache: dict[Any, Any] = {}
        t = torch.eye(f, dtype=torch.float64)
        if "ops" in self.blocks and "live_ops" in self.blocks:
            off, o = {}, 0
            for b in self.blocks:
                off[b] = o
                o += BLOCK_SIZES[b]
            a, c = off["ops"], off["live_ops"]
            for i in range(BLOCK_SIZES["ops"]):
                t[a + i, a + i] = 0.0
                t[c + i, a + i] = 1.0  # w'_live = w_live + w_ops; w'_ops = 0
            self._variants = {"unpruned": torch.eye(f, dtype=torch.float64), "pruned": t}
        else:
            self._variants = {"unpruned": t}
        self._disconnected: int | None = None
        if "disconnected" in self.blocks:
            i = self.blocks.index("disconnected")
            self._disconnected = sum(BLOCK_SIZES[b] for b in self.blocks[:i])

    def variants_for(self, network: str) -> tuple[str, ...]:
        if network not in NETWORKS:
            raise PredictorError(f"network must be one of {', '.join(NETWORKS)}, got {network!r}")
        if "pruned" not in self._variants or network == "unpruned":
            return ("unpruned",)
        return ("pruned",) if network == "pruned" else ("unpruned", "pruned")

    def config(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "feature_set": self.feature_set,
            "num_devices": int(self.device_weights.shape[0]),
            "kernel_scales": [float(v) for v in self.kernel_scales],
            "noises": [float(v) for v in self.noises],
            "iso": self.iso,
            "mode": self.mode,
            "floor": self.floor,
        }

    # ----- encoding ------------------------------------------------------------------------
    @property
    def num_features(self) -> int:
        return int(self.prior_cov.shape[0])

    def features(self, arch_onehot: torch.Tensor) -> torch.Tensor:
        return arch_features(arch_onehot, self.blocks)

    # ----- conditioning --------------------------------------------------------------------
    def _support(self, emb: TargetEmbedding | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Support one-hots ``(n, 6, 5)`` and values ``(n,)`` (float64) of one target."""
        if isinstance(emb, TargetEmbedding):
            if emb.metric != self.metric:
                raise PredictorError(
                    f"embedding of {emb.name!r} is for {emb.metric}, this predictor predicts {self.metric}"
                )
            codes = np.concatenate([reference_codes(), emb.support_codes.reshape(-1, 6)])
            values = np.concatenate([emb.raw, emb.support_values])
            return torch.from_numpy(one_hot_codes(codes)).double(), torch.as_tensor(
                values, dtype=torch.float64
            )
        raw = torch.as_tensor(emb, dtype=torch.float64).detach().cpu()
        return self.ref_onehot, raw

    def _components(
        self, network: str = "unknown"
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Prior means ``(C, F)``, covariances ``(C, F, F)``, noise variances ``(C,)``, log prior ``(C,)``."""
        f = self.num_features
        dev = self.prior_cov.device
        eye = torch.eye(f, dtype=torch.float64, device=dev)
        variants = self.variants_for(network)
        k = self.device_weights.shape[0]
        share = 1.0 / len(variants)
        means, covs, logp = [], [], []
        for v in variants:
            t = self._variants[v].to(dev)
            cov = t @ self.prior_cov @ t.T
            wts = self.device_weights @ t.T
            if v == "pruned" and self._disconnected is not None:
                # the training devices' "disconnected" weight is what their runtimes save when a
                # cell's output is constant (some fold the whole network away); a pruned network
                # still runs its skeleton then, so the prior mean carries no such saving (the
                # covariance keeps it learnable from measurements)
                wts = wts.clone()
                wts[:, self._disconnected] = 0.0
            means.append(wts.mean(0))
            covs.append(cov + self.iso * eye)
            logp.append(math.log(share * (1.0 if self.mode == "gauss" else 0.5)))
            if self.mode == "mixture":
                for c in self.kernel_scales:
                    for w in wts:
                        means.append(w)
                        covs.append(c * cov + self.iso * eye)
                        logp.append(math.log(share * 0.5 / (k * len(self.kernel_scales))))
        m = torch.stack(means)
        s = torch.stack(covs)
        nz = self.noises
        cm = m.repeat_interleave(len(nz), 0)
        cs = s.repeat_interleave(len(nz), 0)
        cn = nz.repeat(len(means))
        lp = torch.tensor(logp, dtype=torch.float64, device=dev).repeat_interleave(
            len(nz), 0
        ) - math.log(len(nz))
        return cm, cs, cn, lp

    def posterior(
        self, support_onehot: torch.Tensor, values: torch.Tensor, network: str = "unknown"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean weights ``(..., F)`` and the scale ``(...)`` for support set(s).

        ``values`` is ``(n,)`` or ``(T, n)`` (T targets sharing the support architectures); the
        first 10 support entries must be the reference architectures (they set the scale).
        """
        if torch.any(~torch.isfinite(values)) or torch.any(values <= 0):
            raise PredictorError("measured values must be finite and positive")
        dev = self.prior_cov.device
        support_onehot, values = (
            support_onehot.to(dev, torch.float64),
            values.to(dev, torch.float64),
        )
        a = self.features(support_onehot)  # (n, F)
        n_ref = self.ref_onehot.shape[0]
        scale = values[..., :n_ref].mean(-1)  # (...)
        t = values / scale.unsqueeze(-1)  # (..., n)
        key = (a.shape[0], hash(a.cpu().numpy().tobytes()), str(dev), network)
        if key not in self._cache:
            m, s, nz, lp = self._components(network)
            n = a.shape[0]
            k_mat = a @ s @ a.T + nz[:, None, None] * torch.eye(n, dtype=torch.float64, device=dev)
            chol = torch.linalg.cholesky(k_mat)
            k_inv = torch.cholesky_inverse(chol)
            logdet = 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
            gain = s @ a.T @ k_inv  # (C, F, n)
            if len(self._cache) > 8:
                self._cache.clear()
            self._cache[key] = (m, a @ m.T, k_inv, logdet, gain, lp)
        m, am, k_inv, logdet, gain, lp = self._cache[key]
        lead = t.shape[:-1]
        tt = t.reshape(-1, t.shape[-1])  # (T, n)
        r = tt.unsqueeze(0) - am.T.unsqueeze(1)  # (C, T, n)
        quad = ((r @ k_inv) * r).sum(-1)  # (C, T)
        logw = lp.unsqueeze(1) - 0.5 * (quad + logdet.unsqueeze(1))
        alpha = torch.softmax(logw, dim=0)  # (C, T)
        w_c = r @ gain.transpose(1, 2)  # (C, T, F): posterior mean minus prior mean
        w = alpha.T @ m + torch.einsum("ct,ctf->tf", alpha, w_c)  # (T, F)
        w = w.reshape(*lead, -1)
        return w, scale

    # ----- prediction ----------------------------------------------------------------------
    def predict(
        self,
        arch_onehot: torch.Tensor,
        emb: TargetEmbedding | torch.Tensor,
        *,
        network: str | None = None,
    ) -> torch.Tensor:
        """Cost ``(B,)`` in the target's units (ms or mJ) of architectures ``(B, 6, 5)``.

        ``emb`` is a :class:`TargetEmbedding` (its 10 reference values, any further measurements
        and its ``network`` are used) or a tensor of raw reference values in the target's units:
        ``(10,)`` for one target, or ``(B, 10)`` giving each architecture its own target (then
        ``network``, default ``"unknown"``, says how the target's networks were built). The
        encoding may be relaxed or straight-through; the result is differentiable with respect
        to it.
        """
        x = arch_onehot
        if x.dim() == 2:
            x = x.unsqueeze(0)
        dtype = x.dtype if x.dtype.is_floating_point else torch.float32
        if network is None:
            network = emb.network if isinstance(emb, TargetEmbedding) else "unknown"
        if isinstance(emb, TargetEmbedding) or torch.as_tensor(emb).dim() == 1:
            sup_x, sup_v = self._support(emb)
            w, scale = self.posterior(sup_x, sup_v, network)
            w, scale = w.to(x.device), scale.to(x.device)
            phi = self.features(x.to(torch.float64))
            out = _bounded(phi @ w, sup_v.to(x.device), scale, self.floor)
        else:
            raw = torch.as_tensor(emb).detach().to(torch.float64)
            if raw.shape != (x.shape[0], self.ref_onehot.shape[0]):
                raise PredictorError(
                    f"per-architecture embeddings must have shape (B, 10) = ({x.shape[0]}, 10), got {tuple(raw.shape)}"
                )
            uniq, inverse = torch.unique(
                raw, dim=0, return_inverse=True
            )  # a batch holds few targets
            w, scale = self.posterior(self.ref_onehot, uniq, network)  # (U, F), (U,)
            w, scale = w[inverse].to(x.device), scale[inverse].to(x.device)
            phi = self.features(x.to(torch.float64))
            out = _bounded((phi * w).sum(-1), raw.to(x.device), scale, self.floor)
        return out.to(dtype)

    def forward(
        self,
        arch_onehot: torch.Tensor,
        emb: TargetEmbedding | torch.Tensor,
        *,
        network: str | None = None,
    ) -> torch.Tensor:
        return self.predict(arch_onehot, emb, network=network)

    @torch.no_grad()
    def predict_codes(
        self, codes: np.ndarray | Sequence[Sequence[int]], emb: TargetEmbedding, batch: int = 8192
    ) -> np.ndarray:
        """Predictions (float64 numpy) for integer architecture codes ``(N, 6)``."""
        c = np.asarray(codes, dtype=np.int64).reshape(-1, 6)
        sup_x, sup_v = self._support(emb)
        w, scale = self.posterior(sup_x, sup_v, emb.network)
        w, scale = w.cpu(), scale.cpu()
        out = np.empty(len(c))
        for i in range(0, len(c), batch):
            x = torch.from_numpy(one_hot_codes(c[i : i + batch])).double()
            out[i : i + batch] = _bounded(self.features(x) @ w, sup_v, scale, self.floor).numpy()
        return out

    @torch.no_grad()
    def predict_space(self, emb: TargetEmbedding) -> np.ndarray:
        """Predictions for every architecture of the space in its canonical order."""
        return self.predict_codes(refdata.load_nb201().arch_codes, emb)


# ----------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainingTarget:
    """One target's training data: codes (N, 6) and values (N,) incl. the 10 references."""

    name: str
    metric: str
    codes: np.ndarray
    values: np.ndarray
    network: str = "unknown"


def refdata_training_targets(
    latency_devices: Sequence[str] = (), energy_devices: Sequence[str] = ()
) -> list[TrainingTarget]:
    ref = refdata.load_nb201()
    codes = ref.arch_codes.astype(np.int64)
    out = [
        TrainingTarget(d, "latency_ms", codes, np.asarray(ref.latency(d), np.float64), "unpruned")
        for d in latency_devices
    ]
    out += [
        TrainingTarget(d, "energy_mj", codes, np.asarray(ref.energy(d), np.float64), "unpruned")
        for d in energy_devices
    ]
    return out


DEFAULT_HYPER: dict[str, Any] = {
    "feature_set": "v3",
    "mode": "mixture",  # "gauss": one global Gaussian prior; "mixture": also one per training device
    "ridge": 1e-3,  # per-device weight fit (absolute, on the scale-normalised targets)
    "iso": 1e-4,  # isotropic part of every prior covariance (lets data move unseen directions)
    "kernel_scales": (0.03, 0.1, 0.3),  # covariance scales of the per-device components
    "noises": (
        1e-4,
        3e-4,
        1e-3,
        3e-3,
        1e-2,
        3e-2,
        1e-1,
    ),  # noise variances averaged over by evidence
    "floor": 0.02,
}


def _fingerprint(
    targets: Sequence[TrainingTarget], seed: int, hyper: Mapping[str, Any], metric: str
) -> dict[str, Any]:
    ref = refdata.load_nb201()
    ext = {}
    ref_names = set(ref.latency_devices) | set(ref.energy_devices)
    for t in targets:
        if t.name not in ref_names:
            h = hashlib.sha256(
                np.ascontiguousarray(t.codes).tobytes() + np.ascontiguousarray(t.values).tobytes()
            )
            ext[f"{t.name}:{t.metric}"] = h.hexdigest()
    return {
        "format_version": FORMAT_VERSION,
        "space": SPACE,
        "metric": metric,
        "refdata_sha256": ref.sha256,
        "training_targets": [f"{t.name}:{t.metric}" for t in targets],
        "store_targets_sha256": ext,
        "seed": int(seed),
        "hyper": dict(hyper),
        "hilnas_version": hilnas_version(),
    }


def train_meta_predictor(
    metric: str = "latency_ms",
    *,
    latency_devices: Sequence[str] | None = None,
    energy_devices: Sequence[str] | None = None,
    extra_targets: Sequence[TrainingTarget] = (),
    seed: int = 0,
    hyper: Mapping[str, Any] | None = None,
) -> MetaPredictor:
    """Fit the meta-predictor across devices, deterministically for a seed.

    Defaults: the 13 MODNAS training devices for latency; for energy the same latency devices plus
    the reference energy devices (eyeriss, fpga). ``extra_targets`` adds targets measured by hilnas
    or imported (e.g. from the store; see :func:`store_training_targets`).
    """
    _check_metric(metric)
    h = dict(DEFAULT_HYPER)
    h.update(hyper or {})
    unknown = set(h) - set(DEFAULT_HYPER)
    if unknown:
        raise PredictorError(
            f"unknown hyper-parameters {sorted(unknown)}; known: {sorted(DEFAULT_HYPER)}"
        )
    if latency_devices is None:
        latency_devices = refdata.MODNAS_TRAIN_DEVICES
    if energy_devices is None:
        energy_devices = refdata.load_nb201().energy_devices if metric == "energy_mj" else ()
    targets = refdata_training_targets(latency_devices, energy_devices) + list(extra_targets)
    if len(targets) < 2:
        raise PredictorError("training the meta-predictor needs at least 2 targets")
    torch.manual_seed(seed)
    np.random.seed(seed)
    blocks = FEATURE_SETS[h["feature_set"]]
    ref_codes = reference_codes()
    full = [t for t in targets if len(t.values) >= MIN_FULL_FIT]
    sparse = [t for t in targets if len(t.values) < MIN_FULL_FIT]
    if len(full) < 2:
        raise PredictorError(
            f"training the meta-predictor needs at least 2 targets with {MIN_FULL_FIT}+ measurements"
        )
    ws = []
    feats: dict[int, np.ndarray] = {}
    for t in full:
        if id(t.codes) not in feats:  # the reference targets share one code array
            feats[id(t.codes)] = features_np(t.codes, blocks)
        x = feats[id(t.codes)]
        ref_vals = _lookup(ref_codes, t.codes, t.values)
        if ref_vals is None:
            raise PredictorError(f"training target {t.name!r} lacks reference architectures")
        y = t.values / ref_vals.mean()
        p = x.shape[1]
        ws.append(np.linalg.solve(x.T @ x + h["ridge"] * np.eye(p), x.T @ y))
    if sparse:
        # targets with a few hundred measurements (the store's) would give unstable free fits:
        # their weights are the posterior means of a model trained on the fully measured ones
        base = _assemble(metric, h, np.stack(ws))
        for t in sparse:
            ref_vals = _lookup(ref_codes, t.codes, t.values)
            if ref_vals is None:
                raise PredictorError(f"training target {t.name!r} lacks reference architectures")
            keys = _codes_key(t.codes)
            rest = ~np.isin(keys, _codes_key(ref_codes))
            codes = np.concatenate([ref_codes, t.codes[rest]])
            vals = np.concatenate([ref_vals, t.values[rest]])
            w, _ = base.posterior(
                torch.from_numpy(one_hot_codes(codes)).double(), torch.from_numpy(vals), t.network
            )
            ws.append(w.numpy())
    model = _assemble(metric, h, np.stack(ws))
    model.metadata = {
        "fingerprint": _fingerprint(targets, seed, h, metric),
        "kind": "hierarchical-linear",
    }
    return model


#: Targets with fewer measurements get their weights from a posterior, not a free fit.
MIN_FULL_FIT = 2000


def _assemble(metric: str, h: Mapping[str, Any], W: np.ndarray) -> MetaPredictor:
    model = MetaPredictor(
        metric=metric,
        feature_set=h["feature_set"],
        num_devices=len(W),
        kernel_scales=h["kernel_scales"],
        noises=h["noises"],
        iso=h["iso"],
        mode=h["mode"],
        floor=h["floor"],
    )
    model.device_weights.copy_(torch.from_numpy(W))
    model.prior_cov.copy_(torch.from_numpy(np.cov(W.T, bias=False)))
    return model


def _codes_key(codes: np.ndarray) -> np.ndarray:
    return np.asarray(codes, dtype=np.int64).reshape(-1, 6) @ (5 ** np.arange(5, -1, -1))


def _lookup(want: np.ndarray, codes: np.ndarray, values: np.ndarray) -> np.ndarray | None:
    """Values of ``want`` codes in (codes, values), or None when one is missing."""

    def key(c: np.ndarray) -> np.ndarray:
        return c.astype(np.int64) @ (5 ** np.arange(5, -1, -1))

    pos = {int(k): i for i, k in enumerate(key(np.asarray(codes).reshape(-1, 6)))}
    idx = [pos.get(int(k)) for k in key(np.asarray(want).reshape(-1, 6))]
    if any(i is None for i in idx):
        return None
    return np.asarray(values)[idx]


def store_training_targets(
    store: MeasurementStore, metric: str = "latency_ms", min_count: int = 30
) -> list[TrainingTarget]:
    """Targets of the store with their reference architectures and at least ``min_count`` values."""
    sp = _space()
    out = []
    for target in store.targets():
        table = (
            store.latency_table(target) if metric == "latency_ms" else store.energy_table(target)
        )
        if len(table) < min_count:
            continue
        codes = np.array([sp.parse(a) for a in table], dtype=np.int64)
        values = np.array(list(table.values()), dtype=np.float64)
        if _lookup(reference_codes(), codes, values) is None:
            continue
        out.append(
            TrainingTarget(target, metric, codes, values, "pruned" if "/" in target else "unknown")
        )
    return out


# ----------------------------------------------------------------------------------------------
# save / load
# ----------------------------------------------------------------------------------------------
def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_meta_predictor(model: MetaPredictor, path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``<path>.safetensors`` and ``<path>.json``; returns both paths."""
    from safetensors.torch import save

    base = Path(path)
    if base.suffix in (".safetensors", ".json"):
        base = base.with_suffix("")
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    blob = save(tensors)
    meta = {
        "model": "MetaPredictor",
        "metric": model.metric,
        "feature_set": model.feature_set,
        "blocks": list(model.blocks),
        "config": model.config(),
        "tensors_sha256": _sha256_bytes(blob),
        **model.metadata,
    }
    st, js = base.with_suffix(".safetensors"), base.with_suffix(".json")
    _atomic_write(st, blob)
    _atomic_write(js, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())
    return st, js


def read_meta_predictor(
    path: str | os.PathLike[str], *, metric: str | None = None, check_refdata: bool = True
) -> MetaPredictor:
    """Load saved weights after checking their metadata; :class:`PredictorFingerprintError` else."""
    from safetensors.torch import load

    base = Path(path)
    if base.suffix in (".safetensors", ".json"):
        base = base.with_suffix("")
    st, js = base.with_suffix(".safetensors"), base.with_suffix(".json")
    if not st.is_file() or not js.is_file():
        raise FileNotFoundError(
            f"predictor weights {st} / {js} not found; recreate them with `hilnas fit --meta`"
        )
    try:
        meta = json.loads(js.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise PredictorFingerprintError(f"{js} is not readable predictor metadata ({exc})") from exc
    blob = st.read_bytes()
    fp = meta.get("fingerprint", {})
    problems = []
    if meta.get("model") != "MetaPredictor":
        problems.append(f"model is {meta.get('model')!r}, not 'MetaPredictor'")
    if meta.get("tensors_sha256") != _sha256_bytes(blob):
        problems.append("the tensor file does not match its metadata (sha256 differs)")
    if fp.get("format_version") != FORMAT_VERSION:
        problems.append(f"format version {fp.get('format_version')!r} != {FORMAT_VERSION}")
    if fp.get("space") != SPACE:
        problems.append(f"search space {fp.get('space')!r} != {SPACE!r}")
    if metric is not None and meta.get("metric") != metric:
        problems.append(f"metric {meta.get('metric')!r} != requested {metric!r}")
    if meta.get("feature_set") not in FEATURE_SETS or tuple(
        meta.get("blocks", ())
    ) != FEATURE_SETS.get(meta.get("feature_set"), None):
        problems.append(
            f"feature set {meta.get('feature_set')!r} is unknown to this hilnas version"
        )
    if check_refdata and fp.get("refdata_sha256") != refdata.load_nb201().sha256:
        problems.append("trained on different reference data (refdata sha256 differs)")
    if problems:
        raise PredictorFingerprintError(
            f"cannot use predictor weights {st}: "
            + "; ".join(problems)
            + ". Retrain them with `hilnas fit --meta`"
        )
    tensors = load(blob)
    try:
        model = MetaPredictor(**meta["config"])
        model.load_state_dict(tensors, strict=True)
    except (RuntimeError, TypeError, KeyError, PredictorError) as exc:
        raise PredictorFingerprintError(
            f"predictor weights {st} do not fit this model: {exc}"
        ) from exc
    model.metadata = {k: v for k, v in meta.items() if k in ("fingerprint", "kind")}
    model.eval()
    return model


def shipped_weights_path(metric: str = "latency_ms") -> Path:
    return DATA_DIR / f"meta_predictor_{_check_metric(metric)}"


def user_weights_path(metric: str = "latency_ms", *, create: bool = False) -> Path:
    """The retrained meta-predictor's path; ``create`` (for saving) checks the home is writable."""
    from hilnas.pipeline.home import home_dir

    return home_dir(create=create) / "models" / f"meta_predictor_{_check_metric(metric)}"


def load_meta_predictor(
    metric: str = "latency_ms", path: str | os.PathLike[str] | None = None, *, source: str = "auto"
) -> MetaPredictor:
    """The trained meta-predictor for a metric.

    ``path`` names saved weights explicitly. Otherwise ``source`` picks: ``"auto"`` the weights
    refit by ``hilnas fit --meta`` (under HILNAS_HOME/models) when present, else the shipped ones;
    ``"shipped"`` always the weights in ``pipeline/data`` (trained on the 13 MODNAS training
    devices); ``"home"`` only the refit ones.
    """
    _check_metric(metric)
    if path is not None:
        return read_meta_predictor(path, metric=metric)
    if source not in ("auto", "shipped", "home"):
        raise PredictorError(f"source must be auto, shipped or home, got {source!r}")
    if source in ("auto", "home"):
        up = user_weights_path(metric)
        if up.with_suffix(".json").is_file():
            return read_meta_predictor(up, metric=metric)
        if source == "home":
            raise FileNotFoundError(f"no refit predictor at {up}; run `hilnas fit --meta`")
    return read_meta_predictor(shipped_weights_path(metric), metric=metric)
