"""Architecture features for the hardware predictors (NB201), in torch and numpy.

Every feature is a polynomial in the one-hot entries, so a relaxed (softmax) or straight-through
one-hot architecture ``(B, 6, 5)`` can be fed in and gradients reach it; for a hard one-hot the
values are exact.

Feature sets (``FEATURE_SETS``), each a list of named blocks:
- ``bias``: 1.
- ``ops``: the one-hot of every edge without its ``none`` column (24): what runs on each edge in
  an unpruned cell (HELP's and HW-NAS-Bench's measured networks run every non-``none`` op).
- ``live_ops``: the same, multiplied by the probability that the edge's source node is live (24):
  what runs in a pruned network (hilnas's exported networks skip computation fed only by dead
  nodes).
- ``live_counts``: ops on live edges summed over the edges (4): per-op totals of a pruned cell.
- ``unique_pools``: for each source node 0..2, whether some live edge from it is an average
  pool (3): identical pools of the same tensor are computed once by runtimes that eliminate
  common subexpressions (ONNX Runtime does).
- ``adds``: number of additions joining a node's live inputs, summed over nodes (1).
- ``disconnected``: 1 when no path reaches the output (some runtimes then compute almost nothing).
- ``used_ops``: ops on edges that are live *and* whose destination reaches the output (24): what
  still runs after ONNX Runtime removes computation whose result is never used (dead-code
  elimination after hilnas's own pruning of edges fed by dead nodes).
- ``used_adds``: additions joining a node's used inputs, summed over nodes on a path to the
  output (1).

The ``additive`` set (``bias``, ``used_ops``, ``used_adds``) is the per-device model's
"fixed skeleton cost + one non-negative cost per op that runs" (fitted with non-negative
coefficients in :mod:`hilnas.pipeline.predictors.device`).
"""

from __future__ import annotations

import numpy as np
import torch
from hilnas.pipeline.spaces.nb201 import EDGES

NUM_EDGES = 6
NUM_OPS = 5
#: Feature sets by name; a trained model records the name and the block list it was built with.
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "v1": ("bias", "ops", "disconnected"),
    "v2": ("bias", "ops", "live_ops", "disconnected"),
    "v3": ("bias", "ops", "live_ops", "live_counts", "unique_pools", "adds", "disconnected"),
    "counts": ("bias", "live_counts", "unique_pools", "adds", "disconnected"),
    "additive": ("bias", "used_ops", "used_adds"),
}
BLOCK_SIZES = {
    "bias": 1,
    "ops": 24,
    "live_ops": 24,
    "live_counts": 4,
    "unique_pools": 3,
    "adds": 1,
    "disconnected": 1,
    "used_ops": 24,
    "used_adds": 1,
}
#: Blocks that describe a whole cell with few numbers (not penalised by the per-device ridge).
COMPACT_BLOCKS = ("bias", "live_counts", "unique_pools", "adds", "disconnected")


def feature_dim(blocks: tuple[str, ...]) -> int:
    return sum(BLOCK_SIZES[b] for b in blocks)


def _check(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 2:
        x = x.unsqueeze(0)
    if x.dim() != 3 or x.shape[-2:] != (NUM_EDGES, NUM_OPS):
        raise ValueError(
            f"an NB201 architecture encoding has shape (B, {NUM_EDGES}, {NUM_OPS}) (one-hot ops per "
            f"edge), got {tuple(x.shape)}"
        )
    return x


def live_probabilities(x: torch.Tensor) -> torch.Tensor:
    """Probability that nodes 0..3 are live (reachable from the input), ``(B, 4)``.

    Noisy-or over incoming edges; exact for hard one-hot inputs.
    """
    x = _check(x)
    on = 1.0 - x[..., 0]  # (B, 6) edge carries an op
    one = torch.ones_like(on[:, 0])
    live = [one, None, None, None]
    for dst in (1, 2, 3):
        dead = one
        for e, (d, src) in enumerate(EDGES):
            if d == dst:
                dead = dead * (1.0 - on[:, e] * live[src])
        live[dst] = 1.0 - dead
    return torch.stack(live, dim=1)


def useful_probabilities(x: torch.Tensor) -> torch.Tensor:
    """Probability that nodes 0..3 reach the output node 3 through non-``none`` edges, ``(B, 4)``.

    Noisy-or over outgoing edges; exact for hard one-hot inputs.
    """
    x = _check(x)
    on = 1.0 - x[..., 0]
    one = torch.ones_like(on[:, 0])
    reach = [None, None, None, one]
    for src in (2, 1, 0):
        miss = one
        for e, (d, s) in enumerate(EDGES):
            if s == src:
                miss = miss * (1.0 - on[:, e] * reach[d])
        reach[src] = 1.0 - miss
    return torch.stack(reach, dim=1)


def arch_features(x: torch.Tensor, blocks: tuple[str, ...]) -> torch.Tensor:
    """``(B, 6, 5)`` one-hot (hard, relaxed or straight-through) -> ``(B, F)`` features."""
    x = _check(x)
    b = x.shape[0]
    parts: list[torch.Tensor] = []
    live = live_probabilities(x) if any(b != "bias" and b != "ops" for b in blocks) else None
    on = 1.0 - x[..., 0]
    for block in blocks:
        if block == "bias":
            parts.append(torch.ones(b, 1, dtype=x.dtype, device=x.device))
        elif block == "ops":
            parts.append(x[..., 1:].reshape(b, -1))
        elif block in ("live_ops", "live_counts"):
            src_live = torch.stack([live[:, src] for _, src in EDGES], dim=1)  # (B, 6)
            lops = x[..., 1:] * src_live.unsqueeze(-1)  # (B, 6, 4)
            parts.append(lops.reshape(b, -1) if block == "live_ops" else lops.sum(1))
        elif block == "unique_pools":
            cols = []
            for s in (0, 1, 2):
                none_here = torch.ones_like(live[:, 0])
                for e, (_, src) in enumerate(EDGES):
                    if src == s:
                        none_here = none_here * (1.0 - x[:, e, 4] * live[:, s])
                cols.append(1.0 - none_here)
            parts.append(torch.stack(cols, dim=1))
        elif block == "adds":
            total = torch.zeros_like(live[:, 0])
            for dst in (1, 2, 3):
                inputs = sum(
                    on[:, e] * live[:, src] for e, (d, src) in enumerate(EDGES) if d == dst
                )
                total = total + inputs - live[:, dst]
            parts.append(total.unsqueeze(1))
        elif block in ("used_ops", "used_adds"):
            useful = useful_probabilities(x)
            src_live = torch.stack([live[:, src] for _, src in EDGES], dim=1)
            dst_use = torch.stack([useful[:, dst] for dst, _ in EDGES], dim=1)
            used = src_live * dst_use  # (B, 6) edge computed and its result used
            if block == "used_ops":
                parts.append((x[..., 1:] * used.unsqueeze(-1)).reshape(b, -1))
            else:
                total = torch.zeros_like(live[:, 0])
                for dst in (1, 2, 3):
                    inputs = sum(
                        on[:, e] * used[:, e] for e, (d, _) in enumerate(EDGES) if d == dst
                    )
                    total = total + torch.clamp(inputs - 1.0, min=0.0) * (
                        useful[:, dst] if dst < 3 else 1.0
                    )
                parts.append(total.unsqueeze(1))
        elif block == "disconnected":
            parts.append((1.0 - live[:, 3]).unsqueeze(1))
        else:  # pragma: no cover - guarded by FEATURE_SETS
            raise ValueError(f"unknown feature block {block!r}")
    return torch.cat(parts, dim=1)


def one_hot_codes(codes: np.ndarray | list) -> np.ndarray:
    """``(N, 6)`` integer codes -> ``(N, 6, 5)`` float32 one-hot."""
    c = np.asarray(codes, dtype=np.int64).reshape(-1, NUM_EDGES)
    out = np.zeros((len(c), NUM_EDGES, NUM_OPS), dtype=np.float32)
    out[np.arange(len(c))[:, None], np.arange(NUM_EDGES)[None, :], c] = 1.0
    return out


def features_np(codes: np.ndarray | list, blocks: tuple[str, ...]) -> np.ndarray:
    """Features of integer codes as float64 numpy (for the closed-form fits)."""
    with torch.no_grad():
        x = torch.from_numpy(one_hot_codes(codes)).double()
        return arch_features(x, blocks).numpy()
