"""Search spaces. ``get_space(name)`` is the only way other modules obtain one."""

from __future__ import annotations

from hilnas.pipeline.spaces.base import Architecture, ArchitectureError, ModelConfig, SearchSpace
from hilnas.pipeline.spaces.nb201 import NB201

_SPACES: dict[str, type[SearchSpace]] = {"nb201": NB201}


def get_space(name: str) -> SearchSpace:
    """Instantiate a registered search space by name; unknown names list the known ones."""
    try:
        return _SPACES[name.lower()]()
    except KeyError:
        raise ValueError(
            f"unknown search space {name!r}; available: {', '.join(sorted(_SPACES))}"
        ) from None


def available_spaces() -> list[str]:
    return sorted(_SPACES)


__all__ = [
    "NB201",
    "Architecture",
    "ArchitectureError",
    "ModelConfig",
    "SearchSpace",
    "available_spaces",
    "get_space",
]
