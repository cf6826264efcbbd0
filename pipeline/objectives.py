"""The one registry of objectives: names, aliases, units, plot labels, and which space has which.

Every objective is minimised. A space has one *quality* objective (``error`` in % for NB201 and
OFA MobileNetV3, ``perplexity`` for GPT-S) and the *hardware* objectives ``latency_ms`` and
``energy_mj`` (the project's one energy unit; 1 Wh = 3.6e6 mJ). :func:`parse_objectives` is
the one parser of a user's objective list (a sequence or ``"error,latency"``): the NB201 search,
the space search, the fronts and the run configuration all call it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hilnas.devices.errors import InvalidInputError

__all__ = [
    "HARDWARE",
    "LABELS",
    "OBJECTIVES",
    "QUALITY",
    "UNITS",
    "Objective",
    "canonical_objective",
    "parse_objectives",
    "quality_objective",
]


@dataclass(frozen=True)
class Objective:
    """One objective: its canonical ``name``, ``unit``, plot ``label``, ``kind`` (``quality``
    or ``hardware``) and the ``aliases`` a user may type for it."""

    name: str
    unit: str
    label: str
    kind: str
    aliases: tuple[str, ...] = ()


OBJECTIVES: dict[str, Objective] = {
    o.name: o
    for o in (
        Objective("error", "%", "error (%)", "quality", ("err",)),
        Objective("perplexity", "", "perplexity", "quality", ("ppl",)),
        Objective("latency_ms", "ms", "latency (ms)", "hardware", ("latency",)),
        Objective("energy_mj", "mJ", "energy (mJ)", "hardware", ("energy",)),
    )
}
#: The quality objective of each space (its hardware objectives are :data:`HARDWARE`).
QUALITY: dict[str, str] = {"nb201": "error", "ofa_mbv3": "error", "gpt_s": "perplexity"}
HARDWARE: tuple[str, ...] = tuple(n for n, o in OBJECTIVES.items() if o.kind == "hardware")
UNITS: dict[str, str] = {n: o.unit for n, o in OBJECTIVES.items()}
LABELS: dict[str, str] = {n: o.label for n, o in OBJECTIVES.items()}
_BY_ALIAS: dict[str, str] = {
    key: o.name for o in OBJECTIVES.values() for key in (o.name, *o.aliases)
}


_COUNT = {1: "one", 2: "two", 3: "three"}


def quality_objective(space: str) -> str:
    """The quality objective of a registered space (``error`` or ``perplexity``)."""
    if space not in QUALITY:
        raise InvalidInputError(
            f"space {space!r} has no quality objective here; known: {', '.join(QUALITY)}"
        )
    return QUALITY[space]


def _menu(names: Sequence[str]) -> str:
    aliases = [a for n in names for a in OBJECTIVES[n].aliases]
    return ", ".join(names) + (f" (aliases {', '.join(aliases)})" if aliases else "")


def canonical_objective(name: object, space: str = "nb201") -> str:
    """The canonical name of one objective of ``space`` (aliases resolved, case ignored)."""
    known = (quality_objective(space), *HARDWARE)
    key = str(name).strip().lower()
    resolved = _BY_ALIAS.get(key)
    if resolved not in known:
        other = [s for s, q in QUALITY.items() if q == resolved]
        hint = f" (it is the quality objective of {', '.join(other)})" if other else ""
        raise InvalidInputError(
            f"unknown objective {str(name).strip()!r} for {space}{hint}; known: {_menu(known)}"
        )
    return resolved


def parse_objectives(
    value: str | Sequence[str],
    space: str = "nb201",
    *,
    min_count: int = 2,
    error: type[Exception] = InvalidInputError,
) -> tuple[str, ...]:
    """A user's objectives for ``space`` -> canonical names in the order given.

    ``value``: a sequence or a comma-separated string. Every name must be the space's quality
    objective or a hardware objective (aliases allowed), none repeated, at least ``min_count``
    of them and at least one hardware objective (a front over quality alone has one point).
    Problems raise ``error`` (default :class:`~hilnas.devices.errors.InvalidInputError`, a
    ``ValueError``) with a one-line message naming the fix.
    """
    items = value.split(",") if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in items:
        try:
            name = canonical_objective(item, space)
        except InvalidInputError as exc:
            raise error(str(exc)) from None
        if name in out:
            raise error(f"objective {name!r} is given twice in {value!r}; name each once")
        out.append(name)
    if len(out) < min_count:
        raise error(
            f"need at least {_COUNT.get(min_count, min_count)} objectives, got {out or value!r}; e.g. "
            f"{quality_objective(space)},latency_ms"
        )
    if not any(o in HARDWARE for o in out):
        raise error(
            f"objectives {', '.join(out)} have no hardware cost; add latency_ms or energy_mj"
        )
    return tuple(out)
