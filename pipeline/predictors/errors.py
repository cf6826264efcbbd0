"""Errors of the hardware cost predictors (every one names the problem and the fix)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from hilnas.devices.errors import InvalidInputError, NotFoundError

if TYPE_CHECKING:  # pragma: no cover
    pass

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------------
class PredictorError(InvalidInputError):
    """Bad input to a predictor; the message says what is wrong and how to fix it."""


class MissingReferenceError(PredictorError):
    """A target lacks some of the reference architectures; ``missing`` lists their strings."""

    def __init__(self, message: str, missing: Sequence[str]):
        super().__init__(message)
        self.missing = tuple(missing)


class NoEmbeddingError(PredictorError, NotFoundError):
    """A target that has no embedding for a metric (unknown name or no measurements)."""


class PredictorFingerprintError(PredictorError):
    """Saved weights that do not match the data, space, metric or code they are loaded for."""
