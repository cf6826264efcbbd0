"""Hardware embeddings of targets: a target's values on the space's reference architectures.

A *target* is a device configuration (``cpu-1a2b3c4d/cpu/t1/b1``), an external device imported
from a CSV, or one of the 27 NB201 reference device configurations shipped in
:mod:`hilnas.pipeline.refdata`. Its *embedding* for a metric (``latency_ms`` or ``energy_mj``) is
its values on the 10 reference architectures of the space (``space.reference_architectures()``),
min-max normalised among themselves; the raw values are kept so predictions come out in ms / mJ.
Also the floor (:func:`cost_floor`) and flat targets (:func:`is_flat`), see
:mod:`hilnas.pipeline.predictors`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from hilnas.pipeline import refdata
from hilnas.pipeline.predictors.errors import (
    MissingReferenceError,
    NoEmbeddingError,
    PredictorError,
)

if TYPE_CHECKING:  # pragma: no cover
    from hilnas.pipeline.store import MeasurementStore

log = logging.getLogger(__name__)

METRICS: tuple[str, ...] = ("latency_ms", "energy_mj")
NETWORKS: tuple[str, ...] = ("unknown", "pruned", "unpruned")
SPACE = "nb201"


# ----------------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------------
def hilnas_version() -> str:
    try:
        from importlib.metadata import version

        return version("hilnas")
    except Exception:  # pragma: no cover - running from a bare source tree
        return "0+unknown"


def _check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise PredictorError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    return metric


def _space():
    from hilnas.pipeline.spaces import get_space

    return get_space(SPACE)


def reference_codes() -> np.ndarray:
    """``(10, 6)`` codes of the reference architectures, in embedding order."""
    return np.asarray(_space().reference_architectures(), dtype=np.int64)


def reference_strings() -> list[str]:
    sp = _space()
    return [sp.format(a) for a in sp.reference_architectures()]


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ----------------------------------------------------------------------------------------------
# the floor and flat targets
# ----------------------------------------------------------------------------------------------
#: No prediction falls below this share of the smallest value measured on the target. The
#: cheapest network measured there already pays for the whole skeleton, so only the cells can be
#: cheaper elsewhere; on the 27 reference devices the cheapest connected architecture of the
#: space costs 0.53-1.0x the cheapest reference one (hilnas's pruned CPU networks: 0.95x), and
#: 0.8 is what a user may rely on (issue 12). Devices with architectures truly cheaper than that
#: (eyeriss: 0.53x) lose accuracy on those only until one of them is measured.
FLOOR_SHARE = 0.8
#: Measured values whose spread (max - min) is within this share of their minimum are "all
#: equal": the 10 reference architectures of every reference device differ by 2.7x or more, so
#: such values say nothing about which architecture is cheaper (the profiler's repeatability
#: on a quiet machine is ~0.5 %).
FLAT_SPREAD = 0.01


def cost_floor(values: Sequence[float] | np.ndarray) -> float:
    """The lowest cost predicted for any architecture on a target, from the values measured
    there (reference values and any further measurements, in the target's units)."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if not len(v):
        raise PredictorError("a cost floor needs at least one measured value")
    return FLOOR_SHARE * float(v.min())


def is_flat(values: Sequence[float] | np.ndarray) -> bool:
    """Whether measured values are all equal within ``FLAT_SPREAD`` (no ranking information)."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    return bool(len(v)) and float(v.max() - v.min()) <= FLAT_SPREAD * float(v.min())


def flat_warning(emb: TargetEmbedding) -> str | None:
    """A one-line warning when a target's reference values carry no ranking information (all
    equal within ``FLAT_SPREAD``), saying what the predictions then are and what to measure;
    None otherwise."""
    if not is_flat(emb.raw):
        return None
    unit = emb.metric.rsplit("_", 1)[-1]
    head = (
        f"the {len(emb.raw)} reference {emb.metric} values of {emb.name!r} are all equal "
        f"({float(np.median(emb.raw)):.4g} {unit}), so its embedding carries no ranking information"
    )
    if emb.flat:
        return (
            f"{head}: every architecture is predicted at that value (a flat, degenerate front); "
            "re-measure the reference architectures (more repetitions, a finer timer, the "
            "device's own runtime rather than its launch overhead) or import measurements that differ"
        )
    return (
        f"{head}: predictions rely on its {len(emb.support_values)} further measurements, and a "
        "search conditioned on the embedding cannot tell this device apart; re-measure the "
        "reference architectures"
    )


# ----------------------------------------------------------------------------------------------
# embeddings
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TargetEmbedding:
    """A target's hardware embedding for one metric.

    ``raw``: its values (ms or mJ) on the 10 reference architectures, in reference order;
    ``normalized``: the same min-max normalised to [0, 1] among themselves (the search's input).
    ``support_codes``/``support_values``: further measurements of the target (few-shot), may be
    empty; the meta-predictor conditions on them too.
    ``network``: how the measured networks were built, when known: ``"pruned"`` (hilnas's
    exporter skips computation fed only by dead nodes: every target profiled by hilnas),
    ``"unpruned"`` (every non-``none`` op runs: the HELP / HW-NAS-Bench reference tables), or
    ``"unknown"`` (imported CSVs): the meta-predictor's prior then covers both.
    """

    name: str
    metric: str
    raw: np.ndarray
    normalized: np.ndarray
    support_codes: np.ndarray = field(default_factory=lambda: np.zeros((0, 6), dtype=np.int64))
    support_values: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float64))
    source: str = "refdata"
    network: str = "unknown"

    @classmethod
    def from_raw(
        cls,
        name: str,
        metric: str,
        raw: Sequence[float] | np.ndarray,
        *,
        support_codes: np.ndarray | None = None,
        support_values: np.ndarray | None = None,
        source: str = "given",
        network: str = "unknown",
    ) -> TargetEmbedding:
        _check_metric(metric)
        if network not in NETWORKS:
            raise PredictorError(f"network must be one of {', '.join(NETWORKS)}, got {network!r}")
        r = np.asarray(raw, dtype=np.float64).reshape(-1)
        if r.shape != (len(refdata.load_nb201().reference_indices),):
            raise PredictorError(
                f"an embedding has one value per reference architecture (10), got {r.shape}"
            )
        if not np.all(np.isfinite(r)) or np.any(r <= 0):
            raise PredictorError(
                f"reference values of {name!r} must be finite and positive, got {r.tolist()}"
            )
        sc = (
            np.zeros((0, 6), dtype=np.int64)
            if support_codes is None
            else np.asarray(support_codes, np.int64).reshape(-1, 6)
        )
        sv = (
            np.zeros(0)
            if support_values is None
            else np.asarray(support_values, np.float64).reshape(-1)
        )
        if len(sc) != len(sv):
            raise PredictorError("support_codes and support_values differ in length")
        if len(sv) and (not np.all(np.isfinite(sv)) or np.any(sv <= 0)):
            raise PredictorError(f"measurements of {name!r} must be finite and positive")
        return cls(name, metric, r, normalize_embedding(r), sc, sv, source, network)

    def with_support(self, codes: np.ndarray, values: np.ndarray) -> TargetEmbedding:
        """The same embedding with (other) few-shot measurements."""
        return TargetEmbedding.from_raw(
            self.name,
            self.metric,
            self.raw,
            support_codes=codes,
            support_values=values,
            source=self.source,
            network=self.network,
        )

    def tensor(self) -> torch.Tensor:
        """The normalised embedding as a float32 tensor ``(10,)`` (the hypernetwork's input)."""
        return torch.as_tensor(self.normalized, dtype=torch.float32)

    @property
    def measured(self) -> np.ndarray:
        """Every value measured on the target that a prediction is given: references, then support."""
        return np.concatenate([self.raw, self.support_values])

    @property
    def floor(self) -> float:
        """The lowest cost any architecture is predicted at on this target (:func:`cost_floor`)."""
        return cost_floor(self.measured)

    @property
    def flat(self) -> bool:
        """Whether all its measured values are equal (then every prediction is their median)."""
        return is_flat(self.measured)


def normalize_embedding(raw: np.ndarray) -> np.ndarray:
    r = np.asarray(raw, dtype=np.float64)
    lo, hi = r.min(-1, keepdims=True), r.max(-1, keepdims=True)
    return (r - lo) / np.maximum(hi - lo, 1e-12)


def reference_targets(metric: str = "latency_ms") -> tuple[str, ...]:
    """Names of the reference-data targets for a metric."""
    ref = refdata.load_nb201()
    return ref.latency_devices if _check_metric(metric) == "latency_ms" else ref.energy_devices


def _refdata_column(name: str, metric: str) -> np.ndarray:
    ref = refdata.load_nb201()
    return ref.latency(name) if metric == "latency_ms" else ref.energy(name)


def canonical_values(table: Mapping[str, float], name: str | None = None) -> dict[str, float]:
    """``table`` (NB201 arch string -> value) keyed by canonical strings; unparseable
    architectures are left out (with a warning naming ``name`` when given)."""
    sp = _space()
    canon: dict[str, float] = {}
    for arch, v in table.items():
        try:
            canon[sp.format(sp.parse(arch))] = float(v)
        except ValueError:
            if name is not None:
                log.warning("ignoring unparseable architecture %r of %s", arch, name)
    return canon


def embedding_from_table(
    name: str,
    metric: str,
    table: Mapping[str, float],
    *,
    source: str = "store",
    network: str = "unknown",
) -> TargetEmbedding:
    """Embedding of a target from its measurements (arch string -> value).

    Raises :class:`MissingReferenceError` naming the reference architectures to measure.
    """
    sp = _space()
    refs = reference_strings()
    canon = canonical_values(table, name)
    missing = [a for a in refs if a not in canon]
    if missing:
        raise MissingReferenceError(
            f"{name!r} has no {metric} measurement for {len(missing)} of the {len(refs)} reference "
            f"architectures; measure these and import/profile them again: " + ", ".join(missing),
            missing,
        )
    raw = np.array([canon[a] for a in refs])
    ref_set = set(refs)
    extra = [(a, v) for a, v in canon.items() if a not in ref_set]
    codes = np.array([sp.parse(a) for a, _ in extra], dtype=np.int64).reshape(-1, 6)
    values = np.array([v for _, v in extra], dtype=np.float64)
    return TargetEmbedding.from_raw(
        name,
        metric,
        raw,
        support_codes=codes,
        support_values=values,
        source=source,
        network=network,
    )


def resolve_local_alias(name: str, store: MeasurementStore) -> str | None:
    """A local device alias (``cpu``, ``gpu0``) -> its target in the store, if it has one."""
    try:
        from hilnas.devices import get_device

        device_id = get_device(name).id
    except Exception:  # noqa: BLE001 - not a local alias (or no device layer): not found
        return None
    if device_id == name:
        return None
    try:
        return store.resolve_target(device_id)
    except LookupError:
        return None


def embedding_for(
    name: str,
    metric: str = "latency_ms",
    store: MeasurementStore | None = None,
    *,
    with_support: bool = True,
) -> TargetEmbedding:
    """The embedding of a target for a metric.

    The NB201 reference devices come from the shipped reference data (their support set is
    empty: only the 10 reference values, as a new device would have); any other name is
    resolved in the store (``store`` or the default one), whose further measurements of the
    target become the few-shot support set (``with_support``).
    """
    _check_metric(metric)
    if name in reference_targets(metric):
        raw = _refdata_column(name, metric)[list(refdata.load_nb201().reference_indices)]
        return TargetEmbedding.from_raw(name, metric, raw, source="refdata", network="unpruned")
    other = "energy_mj" if metric == "latency_ms" else "latency_ms"
    if name in reference_targets(other):
        raise NoEmbeddingError(
            f"no {metric} embedding for {name!r}: the reference data has only {other} for it"
        )
    if store is None:
        try:
            from hilnas.pipeline.store import MeasurementStore
        except ModuleNotFoundError as exc:  # pragma: no cover - store not installed
            raise NoEmbeddingError(
                f"unknown target {name!r} and no measurement store ({exc})"
            ) from exc
        store = MeasurementStore()
    try:
        target = store.resolve_target(name)
    except LookupError as exc:
        target = resolve_local_alias(name, store)
        if target is None:
            raise NoEmbeddingError(f"no {metric} embedding for {name!r}: {exc}") from None
    table = store.latency_table(target) if metric == "latency_ms" else store.energy_table(target)
    if not table:
        raise NoEmbeddingError(
            f"target {target!r} has no {metric} measurements, so it has no {metric} embedding"
            + (
                "; energy needs a measured energy counter or an energy_mj column on import"
                if metric == "energy_mj"
                else ""
            )
        )
    # a configuration key (device/ep/threads/batch) was measured by hilnas on its own (pruned)
    # networks; an external device's networks are unknown
    network = "pruned" if "/" in target else "unknown"
    try:
        emb = embedding_from_table(target, metric, table, source="store", network=network)
    except MissingReferenceError:
        # a device on which some references could not run joins with those that did (at
        # least 6 of 10); the rest are imputed from the shipped devices (predictors.io)
        from hilnas.pipeline.predictors.io import complete_references

        emb, _ = complete_references(target, metric, table)
    if not with_support:
        emb = TargetEmbedding.from_raw(target, metric, emb.raw, source="store", network=network)
    warning = flat_warning(emb)
    if warning:
        log.warning("%s", warning)
    return emb
