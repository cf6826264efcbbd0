"""Rank and error metrics of predictions (Spearman, Kendall, share within a tolerance)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    pass

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# metrics
# ----------------------------------------------------------------------------------------------
def spearman(pred: np.ndarray, true: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(pred, true)[0])


def kendall(pred: np.ndarray, true: np.ndarray) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(pred, true)[0])


def within(pred: np.ndarray, true: np.ndarray, tol: float = 0.10) -> float:
    """Share of predictions within +-tol (relative) of the truth."""
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    return float(np.mean(np.abs(pred - true) <= tol * np.abs(true)))


def quality(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    return {
        "spearman": spearman(pred, true),
        "kendall": kendall(pred, true),
        "within10": within(pred, true),
    }
