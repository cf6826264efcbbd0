"""The candidate pool of architectures (normalisation, query selection) and their one-hot
encoding."""

from __future__ import annotations

import numpy as np

#: Candidate pool for normalisation and query selection: the whole space up to this size.
POOL_LIMIT = 50_000


def _pool(space, seed: int) -> np.ndarray:
    """Integer codes of the candidate pool: the whole space when small enough."""
    if space.size() <= POOL_LIMIT:
        return np.asarray(space.all_architectures(), dtype=np.int64)
    return np.asarray(space.sample(POOL_LIMIT, seed=seed), dtype=np.int64)


def _onehot(space, codes: np.ndarray) -> np.ndarray:
    out = np.zeros((len(codes), space.num_decisions, space.max_options), dtype=np.float32)
    out[np.arange(len(codes))[:, None], np.arange(space.num_decisions)[None, :], codes] = 1.0
    return out
