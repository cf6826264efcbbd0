"""Search spaces, registered by name. ``get_space(name)`` is how other modules obtain one.

A space is a :class:`~hilnas.pipeline.spaces.base.SearchSpace` subclass (the contract and its
promises are in :mod:`hilnas.pipeline.spaces.base`); :func:`register_space` adds one under its
``name``. Registered here: ``nb201`` (NAS-Bench-201) and ``ofa_mbv3`` (Once-for-All
MobileNetV3) and ``gpt_s`` (HW-GPT-Bench's GPT-S decoder-only transformer).
"""

from __future__ import annotations

from collections.abc import Callable

from hilnas.devices.errors import InvalidInputError
from hilnas.pipeline.spaces.base import (
    Architecture,
    ArchitectureError,
    CapabilityError,
    ModelConfig,
    SearchSpace,
    SpaceConfig,
    TensorSpec,
    Workload,
)
from hilnas.pipeline.spaces.gpt_s import GPTSpace
from hilnas.pipeline.spaces.nb201 import NB201
from hilnas.pipeline.spaces.ofa_mbv3 import OFAConfig, OFAMobileNetV3

_SPACES: dict[str, Callable[[], SearchSpace]] = {}


class UnknownSpaceError(InvalidInputError):
    """A search-space name that is not registered (a ``ValueError``, as before)."""


def register_space(name: str, factory: Callable[[], SearchSpace]) -> None:
    """Make ``get_space(name)`` return ``factory()``; a name registers once."""
    key = name.lower()
    if not key.isidentifier():
        raise InvalidInputError(f"a space name must be an identifier, got {name!r}")
    if key in _SPACES and _SPACES[key] is not factory:
        raise InvalidInputError(f"search space {name!r} is already registered; pick another name")
    _SPACES[key] = factory


def get_space(name: str) -> SearchSpace:
    """Instantiate a registered search space by name; unknown names list the known ones."""
    try:
        return _SPACES[str(name).lower()]()
    except KeyError:
        raise UnknownSpaceError(
            f"unknown search space {name!r}; use one of: {', '.join(sorted(_SPACES))}"
        ) from None


def available_spaces() -> list[str]:
    return sorted(_SPACES)


register_space(NB201.name, NB201)
register_space(OFAMobileNetV3.name, OFAMobileNetV3)
register_space(GPTSpace.name, GPTSpace)

__all__ = [
    "NB201",
    "Architecture",
    "ArchitectureError",
    "CapabilityError",
    "ModelConfig",
    "OFAConfig",
    "OFAMobileNetV3",
    "GPTSpace",
    "SearchSpace",
    "SpaceConfig",
    "TensorSpec",
    "UnknownSpaceError",
    "Workload",
    "available_spaces",
    "get_space",
    "register_space",
]
