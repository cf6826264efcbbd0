"""Progress reports of a running search (:class:`SearchProgress`) and how they are sent."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SearchProgress:
    """One progress report: ``stage`` (queries, surrogate, warmup, train, save), ``done`` of
    ``total`` units of that stage, and a short human-readable ``message``."""

    stage: str
    done: int
    total: int
    message: str = ""


ProgressCallback = Callable[[SearchProgress], None]


def _report(
    progress: ProgressCallback | None, stage: str, done: int, total: int, message: str = ""
) -> None:
    if progress is not None:
        progress(SearchProgress(stage, done, total, message))
    log.debug("%s %d/%d %s", stage, done, total, message)
