"""Objectives and targets of a search beyond NB201: what can be minimised, and on which device.

A *target* is a device known by its values on the space's reference architectures (its
hardware embedding), one vector per hardware metric:

- a **reference device** of the space's shipped table (OFA: HELP's 9 GPU configurations,
  latency only; GPT-S: HW-GPT-Bench's 10 devices, latency and energy);
- a device of the **measurement store**: a configuration profiled with ``hilnas profile --space
  S`` (its reference architectures are measured first) or a device imported with ``hilnas
  devices import NAME --space S --csv FILE``;
- explicit values (``SpaceTarget.from_values``), e.g. from another tool.

The quality objective belongs to the space (:data:`QUALITY`: ``error`` for ``ofa_mbv3``,
``perplexity`` for ``gpt_s``); hardware objectives are ``latency_ms`` and ``energy_mj``.
Every problem is a one-line :class:`~hilnas.devices.errors.UserError` naming the fix, raised
before anything is trained or written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from hilnas.devices.errors import InvalidInputError, NotFoundError
from hilnas.pipeline import objectives as _OBJ
from hilnas.pipeline.spaces import get_space

#: The quality objective of each space the space search handles (minimised; the registry:
#: :mod:`hilnas.pipeline.objectives`; NB201 has its own search).
QUALITY: dict[str, str] = {s: q for s, q in _OBJ.QUALITY.items() if s != "nb201"}
HARDWARE: tuple[str, ...] = _OBJ.HARDWARE
UNITS: dict[str, str] = dict(_OBJ.UNITS)

__all__ = [
    "COST_MODELS",
    "HARDWARE",
    "QUALITY",
    "SpaceTarget",
    "check_space",
    "cost_predictor",
    "parse_objectives",
    "reference_targets",
    "resolve_target",
    "uses_oracle_mix",
]

#: Zero-shot cost models of the space search: ``space`` (the cross-device
#: :class:`~hilnas.pipeline.predictors.space.SpacePredictor`, every space), ``oracle_mix``
#: (GPT-S: a combination of the reference devices' own oracles fitted on the target's reference
#: values, :mod:`hilnas.pipeline.predictors.oracle_mix`, for every hardware metric) and
#: ``mix-energy`` (the oracle mix for energy, the space predictor for latency).
COST_MODELS: tuple[str, ...] = ("space", "oracle_mix", "mix-energy")
#: What a search uses unless told otherwise, per space (else ``space``). Leave-one-device-out
#: of the 10 GPT-S devices (2026-12-02, ``results/search_gpt_costmodel.md``): the oracle mix
#: ranks energy WORSE than the space predictor on all 10 left-out devices (Spearman on
#: measured.csv rows 8000-9999, mean 0.891 vs 0.963), so it is not the default.
DEFAULT_COST_MODEL: dict[str, str] = {}


def check_space(space: str) -> str:
    """The space's registered name if the space search handles it, else a clear error."""
    name = get_space(space).name
    if name not in QUALITY:
        raise InvalidInputError(
            f"space {name!r} is searched by the NB201 search (`hilnas search` without --space); "
            f"the space search handles {', '.join(QUALITY)}"
        )
    return name


def parse_objectives(space: str, value: str | Sequence[str]) -> tuple[str, ...]:
    """Objectives (a sequence or ``"perplexity,latency_ms"``) for ``space``: its quality
    objective and/or ``latency_ms`` / ``energy_mj`` (aliases latency, energy, ppl, err), at
    least two, no repeats, at least one hardware objective
    (:func:`hilnas.pipeline.objectives.parse_objectives`)."""
    return _OBJ.parse_objectives(value, check_space(space))


def _table_devices(space: str, metric: str) -> tuple[str, ...]:
    from hilnas.pipeline.predictors.space import shipped_table

    try:
        return shipped_table(space, metric).devices
    except NotFoundError:
        return ()


def reference_targets(space: str, metrics: Sequence[str]) -> list[str]:
    """The reference devices of ``space`` that have every one of ``metrics``, in table order."""
    space = check_space(space)
    lists = [_table_devices(space, m) for m in metrics]
    if not lists:
        return []
    return [d for d in lists[0] if all(d in other for other in lists[1:])]


@dataclass(frozen=True)
class SpaceTarget:
    """A device by its values on the space's reference architectures, per hardware metric."""

    name: str
    source: str  # "reference", "store" or "values"
    reference: Mapping[str, tuple[float, ...]]

    @classmethod
    def from_values(
        cls, space: str, name: str, values: Mapping[str, Sequence[float]]
    ) -> SpaceTarget:
        """A target from explicit values in the order of ``space``'s reference architectures."""
        n = len(get_space(space).reference_strings())
        ref: dict[str, tuple[float, ...]] = {}
        for metric, vals in values.items():
            if metric not in HARDWARE:
                raise InvalidInputError(f"unknown hardware metric {metric!r}; use {HARDWARE}")
            arr = np.asarray(vals, dtype=np.float64).reshape(-1)
            if len(arr) != n or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
                raise InvalidInputError(
                    f"{name}: {metric} needs {n} finite values > 0, one per {space} reference "
                    f"architecture (`hilnas space show {space}` lists them), got {len(arr)}"
                )
            ref[metric] = tuple(float(v) for v in arr)
        return cls(name=name, source="values", reference=ref)

    def values(self, metric: str) -> np.ndarray:
        if metric not in self.reference:
            raise NotFoundError(
                f"target {self.name!r} has no {metric} on the reference architectures; "
                f"it has {', '.join(self.reference) or 'nothing'}"
            )
        return np.asarray(self.reference[metric], dtype=np.float64)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "reference": {m: list(v) for m, v in self.reference.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SpaceTarget:
        return cls(
            name=str(data["name"]),
            source=str(data["source"]),
            reference={str(m): tuple(float(x) for x in v) for m, v in data["reference"].items()},
        )


def _store_values(space: str, name: str, metric: str, store: Any) -> tuple[float, ...]:
    refs = get_space(space).reference_strings()
    table = (
        store.latency_table(name, space)
        if metric == "latency_ms"
        else store.energy_table(name, space)
    )
    missing = [r for r in refs if r not in table]
    if missing:
        measured = sum(r in table for r in refs)
        raise NotFoundError(
            f"target {name!r} has {metric} for {measured} of the {len(refs)} {space} reference "
            f"architectures (first missing: {missing[0]}); measure them with `hilnas profile "
            f"--space {space} --device ...` or import them (`hilnas space show {space} --json` "
            "lists all)"
        )
    values = tuple(float(table[r]) for r in refs)
    if not all(np.isfinite(v) and v > 0 for v in values):
        raise InvalidInputError(
            f"target {name!r} has non-positive {metric} reference values; remeasure them"
        )
    return values


def resolve_target(space: str, name: str, metrics: Sequence[str], store: Any = None) -> SpaceTarget:
    """The target ``name`` with its reference values for every metric of ``metrics``.

    Reference devices come from the shipped table; any other name is looked up in ``store``
    (a configuration key, a device id with one configuration, or an imported device).
    """
    space = check_space(space)
    from hilnas.pipeline.predictors.space import shipped_table

    tables = {m: _table_devices(space, m) for m in metrics}
    if store is None:
        absent = [m for m, devs in tables.items() if not devs]
        if absent:
            with_all = reference_targets(space, [m for m in HARDWARE if _table_devices(space, m)])
            raise NotFoundError(
                f"no {space} reference device has {', '.join(absent)} (the shipped table has "
                f"{', '.join(m for m in HARDWARE if m not in absent) or 'nothing'}, for "
                f"{len(with_all)} devices); for {', '.join(absent)} pass a profiled or imported "
                "device that measured it (--db), or drop that objective"
            )
    if all(name in devs for devs in tables.values()):
        ref = {
            m: tuple(float(v) for v in shipped_table(space, m).reference_values(name))
            for m in metrics
        }
        return SpaceTarget(name=name, source="reference", reference=ref)
    if any(name in devs for devs in tables.values()):
        lacking = [m for m, devs in tables.items() if name not in devs]
        have = reference_targets(space, metrics)
        raise NotFoundError(
            f"reference device {name!r} of {space} has no {', '.join(lacking)}; targets with "
            f"{', '.join(metrics)}: {', '.join(have) if have else 'none among the references'}"
        )
    if store is None:
        known = sorted({d for devs in tables.values() for d in devs})
        raise NotFoundError(
            f"{name!r} is not a {space} reference device ({', '.join(known) or 'none'}); for a "
            "profiled or imported device pass the store (--db)"
        )
    from hilnas.pipeline.store import TargetNotFoundError

    try:
        resolved = store.resolve_target(name)
    except TargetNotFoundError as exc:
        from hilnas.pipeline.predictors import resolve_local_alias

        alias = resolve_local_alias(name, store)  # cpu, gpu0: this machine's devices
        if alias is not None:
            ref = {m: _store_values(space, alias, m, store) for m in metrics}
            return SpaceTarget(name=alias, source="store", reference=ref)
        known = sorted({d for devs in tables.values() for d in devs})
        raise TargetNotFoundError(
            f"{name!r} is not a {space} reference device ({', '.join(known) or 'none'}); {exc}"
        ) from None
    ref = {m: _store_values(space, resolved, m, store) for m in metrics}
    return SpaceTarget(name=resolved, source="store", reference=ref)


def learning_predictor_for(
    space: str,
    name: str,
    metric: str,
    prior: Any,
    store: Any = None,
    *,
    level: float = 0.8,
    seed: int = 0,
):
    """The per-device learning predictor of target ``name`` for ``metric``, fitted.

    ``prior``: the space's cross-device predictor
    (:class:`~hilnas.pipeline.predictors.space.SpacePredictor`, e.g. a saved search's; a
    search's :class:`~hilnas.pipeline.predictors.oracle_mix.OracleMix` is replaced by the
    space's default predictor, which has the residual model intervals need). A
    reference device of ``prior`` gets it conditioned on its reference values (zero-shot); a
    store target (profiled or imported, resolved as :func:`resolve_target` does) also fits a
    residual model on its further measurements of the space's default workload
    (:func:`hilnas.pipeline.predictors.learning.learning_predictor`, chosen by
    cross-validation). Raises :class:`NotFoundError` as :func:`resolve_target` does.
    """
    from hilnas.pipeline.predictors.learning import learning_predictor
    from hilnas.pipeline.predictors.oracle_mix import OracleMix

    if isinstance(prior, OracleMix):
        # the oracle mix has no cross-device residual model: intervals come from the space's
        # own predictor (what `hilnas predict` uses), trained on the shipped table
        from hilnas.pipeline.home import HomeError, home_dir
        from hilnas.pipeline.predictors.space import default_predictor

        try:
            cache: Any = home_dir() / "models" / "spaces"
        except HomeError:
            cache = None
        prior = default_predictor(space, metric, cache_dir=cache)
    sp = get_space(space)
    measured: dict[str, float] = {}
    if name in prior.devices:
        reference = prior.reference_values(name)
    else:
        target = resolve_target(space, name, (metric,), store)
        reference = target.values(metric)
        table = (
            store.latency_table(target.name, space)
            if metric == "latency_ms"
            else store.energy_table(target.name, space)
        )
        refs = set(sp.reference_strings())
        measured = {a: v for a, v in table.items() if a not in refs and v > 0}
    learner = learning_predictor(
        space, reference, meta=prior, metric=metric, level=level, seed=seed
    )
    extra = sorted(measured)
    learner.fit(
        np.asarray([sp.parse(a) for a in extra], dtype=np.int64).reshape(-1, sp.num_decisions),
        np.asarray([measured[a] for a in extra], dtype=np.float64),
    )
    return learner


def uses_oracle_mix(cost_model: str, metric: str) -> bool:
    """Whether ``cost_model`` (one of :data:`COST_MODELS`) takes the oracle mix for ``metric``."""
    if cost_model not in COST_MODELS:
        raise InvalidInputError(
            f"unknown cost model {cost_model!r}; choose one of {', '.join(COST_MODELS)}"
        )
    return cost_model == "oracle_mix" or (cost_model == "mix-energy" and metric == "energy_mj")


def cost_predictor(
    space: str, metric: str, *, cost_model: str | None = None, cache_dir: Any = None
) -> Any:
    """The space search's zero-shot cost model of ``space`` for ``metric``.

    ``cost_model``: one of :data:`COST_MODELS` (None: :data:`DEFAULT_COST_MODEL` of the space,
    else ``space``). The oracle mix exists only where the reference devices have oracles
    (``gpt_s``); asking it of another space is an :class:`InvalidInputError`.
    """
    space = check_space(space)
    choice = cost_model or DEFAULT_COST_MODEL.get(space, "space")
    if uses_oracle_mix(choice, metric):
        if space != "gpt_s":
            raise InvalidInputError(
                f"cost model {choice!r} needs per-device oracles, which only gpt_s ships; "
                f"use --cost-model space for {space}"
            )
        from hilnas.pipeline.predictors.oracle_mix import oracle_mix

        return oracle_mix(metric)
    from hilnas.pipeline.predictors.space import default_predictor

    return default_predictor(space, metric, cache_dir=cache_dir)
