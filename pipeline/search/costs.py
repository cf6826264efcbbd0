"""Hardware costs during training: the training targets and their embeddings, the frozen
meta-predictors' batched costs (:class:`_HardwareCosts`), their normalisation onto [0, 1]
(:class:`_Normalizer`) and the cost vector a preference scalarises (:func:`_costs`)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from hilnas.pipeline.search.pool import _onehot

if TYPE_CHECKING:  # pragma: no cover
    from hilnas.pipeline.predictors import MetaPredictor, TargetEmbedding
    from hilnas.pipeline.store import MeasurementStore

log = logging.getLogger(__name__)


def _hardware_embeddings(
    name: str, metrics: Sequence[str], store: MeasurementStore | None
) -> dict[str, TargetEmbedding]:
    from hilnas.pipeline.predictors import embedding_for

    return {m: embedding_for(name, m, store) for m in metrics}


def _embedding_vector(embs: Mapping[str, TargetEmbedding], metrics: Sequence[str]) -> np.ndarray:
    return np.concatenate([np.asarray(embs[m].normalized, dtype=np.float32) for m in metrics])


def _predictor_fingerprint(model: MetaPredictor) -> str:
    meta = json.dumps(getattr(model, "metadata", {}), sort_keys=True, default=str)
    return hashlib.sha256(meta.encode()).hexdigest()[:16]


@dataclass
class _Target:
    name: str
    embeddings: dict[str, Any]
    h: Any  # tensor (embed_dim,)


class _HardwareCosts:
    """Raw hardware costs (ms, mJ) ``(B, H)`` of a batch whose row ``i`` is for target ``rows[i]``.

    Targets known by their reference values alone (no further measurements) go through the
    predictor's batched path, one call per network kind (``predict`` with ``(B, 10)`` raw
    embeddings conditions on each distinct target once per call); targets with a few-shot
    support set are predicted one by one. The batched path is checked against ``predict`` with
    the embedding itself on a few architectures; where they disagree, every target goes one
    by one (correct, slower).
    """

    def __init__(self, predictors, targets: Sequence[_Target], metrics: Sequence[str], space):
        import torch

        self.metrics = tuple(metrics)
        self.predictors = predictors
        self.targets = list(targets)
        self.groups: dict[str, list[tuple[str | None, list[int]]]] = {}
        probe = torch.from_numpy(
            _onehot(space, np.asarray(space.sample(8, seed=1), dtype=np.int64))
        )
        for m in metrics:
            embs = [t.embeddings[m] for t in targets]
            batched: dict[str, list[int]] = {}
            single: list[int] = []
            for i, e in enumerate(embs):
                if len(e.support_values) == 0 and getattr(e, "network", None) is not None:
                    batched.setdefault(e.network, []).append(i)
                else:
                    single.append(i)
            groups = [(net, idx) for net, idx in batched.items()] + [(None, [i]) for i in single]
            if not self._agrees(predictors[m], embs, groups, probe):
                log.info("%s costs per target through predict()", m)
                groups = [(None, [i]) for i in range(len(embs))]
            self.groups[m] = groups
        self.raw = {
            m: torch.stack(
                [torch.as_tensor(t.embeddings[m].raw, dtype=torch.float64) for t in targets]
            )
            for m in metrics
        }

    @staticmethod
    def _agrees(model, embs, groups, probe) -> bool:
        import torch

        with torch.no_grad():
            for net, idx in groups:
                if net is None:
                    continue
                for i in idx:
                    raw = torch.as_tensor(embs[i].raw, dtype=torch.float64).expand(len(probe), -1)
                    got = model.predict(probe, raw, network=net)
                    want = model.predict(probe, embs[i])
                    if not torch.allclose(got, want, rtol=1e-5, atol=1e-7):
                        return False
        return True

    def to(self, device) -> _HardwareCosts:
        self.raw = {m: r.to(device) for m, r in self.raw.items()}
        return self

    def __call__(self, arch, rows):
        import torch

        cols = []
        for m in self.metrics:
            model = self.predictors[m]
            out = torch.zeros(arch.shape[0], dtype=arch.dtype, device=arch.device)
            for net, idx in self.groups[m]:
                sel = (
                    torch.isin(rows, torch.as_tensor(idx, device=rows.device)).nonzero().squeeze(1)
                )
                if len(sel) == 0:
                    continue
                if net is None:
                    vals = model.predict(arch[sel], self.targets[idx[0]].embeddings[m])
                else:
                    vals = model.predict(arch[sel], self.raw[m][rows[sel]], network=net)
                out = out.index_put((sel,), vals.to(arch.dtype))
            cols.append(out)
        return torch.stack(cols, dim=-1)


class _Normalizer:
    """Per-target, per-objective monotone piecewise-linear maps of raw costs onto [0, 1]; as
    built by :meth:`minmax`, the line through the (predicted) min and max over the space."""

    def __init__(self, knots_x, knots_y):
        self.x, self.y = knots_x, knots_y  # (T, M, L) each, x non-decreasing along L

    @classmethod
    def minmax(cls, lo: np.ndarray, hi: np.ndarray) -> _Normalizer:
        import torch

        x = np.stack([lo, np.maximum(hi, lo + 1e-9)], axis=-1)
        y = np.broadcast_to(np.array([0.0, 1.0]), x.shape)
        return cls(
            torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y.copy(), dtype=torch.float32)
        )

    def to(self, device) -> _Normalizer:
        return _Normalizer(self.x.to(device), self.y.to(device))

    def __call__(self, raw, rows):
        """``raw`` ``(B, M)`` for targets ``rows`` ``(B,)`` -> ``(B, M)`` normalised."""
        import torch

        x, y = self.x[rows], self.y[rows]  # (B, M, L)
        v = raw.unsqueeze(-1)  # (B, M, 1)
        L = x.shape[-1]
        hi_idx = torch.searchsorted(x.detach().contiguous(), v.detach().contiguous()).clamp(
            1, L - 1
        )
        lo_idx = hi_idx - 1
        x0, x1 = x.gather(-1, lo_idx), x.gather(-1, hi_idx)
        y0, y1 = y.gather(-1, lo_idx), y.gather(-1, hi_idx)
        t = (v - x0) / (x1 - x0).clamp_min(1e-12)
        out = y0 + t * (y1 - y0)
        return out.squeeze(-1)


def _costs(cfg, hw_costs, normalizer, rows, arch, error_fn):
    """Normalised costs ``(B, M)`` in the order of ``cfg.objectives``."""
    import torch

    hw = hw_costs(arch, rows)
    cols, k = [], 0
    for o in cfg.objectives:
        if o == "error":
            cols.append(error_fn(arch))
        else:
            cols.append(hw[:, k])
            k += 1
    return normalizer(torch.stack(cols, dim=-1), rows)
