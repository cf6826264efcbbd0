"""Close the loop on a front: measure its architectures on the local device it was read for.

``hilnas front --device cpu --measure`` and the benchmark
:mod:`hilnas.pipeline.benchmarks.search_local` both end here. A front is what a trained search
*predicts* for a target; when the target is a device configuration of this machine (the key a
``hilnas profile --device cpu`` run stored, or its alias ``cpu``), :func:`measure_front`
profiles the front's architectures on it through the normal profiler path
(:func:`hilnas.pipeline.profiling.profile_device` with ``include=<archs>``, ``archs=0``,
``references=False``): each result is stored at once with its provenance and quality flag, like
any other measurement, so the device's learning predictor is fitted on them next time. An
architecture already stored under the same settings (space, workload, opset, device
configuration, warm-up, repetitions) is not measured again: its stored row is reported.

It returns a :class:`FrontCheck`: per point the measured median latency (ms), its coefficient
of variation, the quality flag, the predicted latency and whether the measurement lies in the
point's prediction interval (``record["intervals"]["latency_ms"]``, when the front carries
one); and a summary (:func:`summarize`): Spearman(predicted, measured), Spearman(preference
weight on the quality objective, measured) (positive when more weight on quality picks slower
networks), the shares within +-10 % and +-25 % of the prediction, interval coverage, and how
many measurements were flagged noisy or interfered (kept in the figures and marked: a short run
of a fast network on a busy machine is often flagged).

Everything that can be refused is refused before anything is profiled or written
(:func:`check_measurable`): a reference device of a shipped table (``pixel3``, ``a100``...) or an
imported device has no hardware here, a device configuration measured on another machine is
not on this one, and the repetitions / warm-up are bounded as for ``hilnas profile``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from hilnas.devices.errors import InvalidInputError, NotFoundError, PreconditionError

#: Tolerances of the "within" shares of the summary (relative to the measured latency).
WITHIN = (0.10, 0.25)
#: Fewest measured points a rank correlation is computed on (None below it).
MIN_RANK_POINTS = 3


class NotMeasurableError(PreconditionError):
    """The front's device cannot be measured on this machine (a reference device of a table,
    an imported device, or a configuration measured on another machine)."""


@dataclass(frozen=True, slots=True)
class LocalTarget:
    """A device configuration of this machine that a front can be measured on."""

    name: str  # as the user gave it (``cpu``, a device id, a configuration key)
    config_key: str  # e.g. ``cpu-1a2b3c4d/cpu/t1/b1``
    device_id: str
    execution_provider: str
    threads: int
    batch_size: int


@dataclass(frozen=True, slots=True)
class PointCheck:
    """One front point, predicted and measured.

    ``outcome``: ``measured`` (now), ``stored`` (an earlier measurement under the same
    settings, reused), ``kept`` (a forced re-measurement failed; the earlier row is shown) or
    ``failed`` (the model failed on the device: ``error`` says why, no latency).
    """

    arch: str
    preference: tuple[float, ...] | None
    predicted_ms: float | None
    measured_ms: float | None
    cv: float | None
    quality: str | None
    flagged: bool
    interval: tuple[float, float] | None
    in_interval: bool | None
    outcome: str
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "latency_ms": self.measured_ms,
            "latency_ms_cv": self.cv,
            "quality": self.quality,
            "flagged": self.flagged,
            "predicted_ms": self.predicted_ms,
            "interval": list(self.interval) if self.interval is not None else None,
            "in_interval": self.in_interval,
            "outcome": self.outcome,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class FrontCheck:
    """What :func:`measure_front` measured: one :class:`PointCheck` per front point (in the
    front's order) and the :func:`summarize` figures, with the settings they were taken at."""

    device: str
    config_key: str
    space: str
    model_config_key: str
    reps: int
    warmup: int
    points: list[PointCheck]
    summary: dict[str, Any]
    wall_s: float = 0.0
    quality_summary: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The summary with its settings (JSON-ready; the per-point values are in
        :meth:`point_dicts`, or on the records by :meth:`attach`)."""
        return {
            "device": self.device,
            "config_key": self.config_key,
            "space": self.space,
            "model_config_key": self.model_config_key,
            "reps": self.reps,
            "warmup": self.warmup,
            **self.summary,
            "quality_summary": self.quality_summary,
            "wall_s": round(self.wall_s, 2),
        }

    def point_dicts(self) -> list[dict[str, Any]]:
        return [p.to_dict() for p in self.points]

    def attach(self, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Copies of the front's records, each with ``"measured"``: its :class:`PointCheck`."""
        if len(records) != len(self.points):
            raise InvalidInputError(
                f"{len(records)} front records for a check of {len(self.points)} points"
            )
        return [{**r, "measured": p.to_dict()} for r, p in zip(records, self.points, strict=True)]

    def summary_line(self) -> str:
        """One line of the summary (what ``hilnas front --measure`` prints under its table)."""
        s = self.summary

        def fmt(v: Any, pct: bool = False) -> str:
            if v is None:
                return "-"
            return f"{100 * v:.0f} %" if pct else f"{v:.2f}"

        parts = [
            f"measured {s['n_measured']} of {s['n_points']} on {self.config_key} "
            f"({self.reps} reps, {self.warmup} warm-up; {s['measured_now']} now, "
            f"{s['already_stored']} already stored"
            + (f", {s['n_failed']} failed" if s["n_failed"] else "")
            + ")",
            f"Spearman(predicted, measured) {fmt(s['spearman_predicted_vs_measured'])}",
            "Spearman(weight on quality, measured) "
            f"{fmt(s['spearman_quality_weight_vs_measured'])}",
            f"within 10 % {fmt(s['within10'], True)}, within 25 % {fmt(s['within25'], True)}",
        ]
        if s["n_with_interval"]:
            parts.append(
                f"in interval {s['in_interval']} of {s['n_with_interval']} "
                f"({fmt(s['interval_coverage'], True)})"
            )
        parts.append(f"{s['n_flagged']} flagged")
        return "; ".join(parts)


# ----------------------------------------------------------------------------------------------
# the summary maths (pure)
# ----------------------------------------------------------------------------------------------
def _rank_corr(a: np.ndarray, b: np.ndarray) -> float | None:
    from hilnas.pipeline.predictors import spearman

    if len(a) < MIN_RANK_POINTS or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None  # too few points, or a constant input: undefined
    r = float(spearman(a, b))
    return round(r, 3) if math.isfinite(r) else None  # constant input: undefined


def summarize(
    predicted: Sequence[float | None],
    measured: Sequence[float | None],
    *,
    weights: Sequence[float | None] | None = None,
    intervals: Sequence[tuple[float, float] | None] | None = None,
    flagged: Sequence[bool] | None = None,
) -> dict[str, Any]:
    """The figures of a measured front, from per-point values (None: unknown).

    ``predicted`` / ``measured``: latencies (ms); ``weights``: each point's preference weight on
    the quality objective (None for a point found by refinement, without a preference);
    ``intervals``: ``(low, high)`` prediction intervals; ``flagged``: quality flags of the
    measurements. Rank correlations need :data:`MIN_RANK_POINTS` points with both values (else
    None, as for a constant input); ``within10`` / ``within25``: share of the points with both
    values whose prediction lies within 10 % / 25 % of the measurement (relative to it, as
    :func:`hilnas.pipeline.predictors.within`); ``interval_coverage``: share of the measured
    points with an interval whose interval holds the measurement.
    """
    from hilnas.pipeline.predictors import within

    n = len(measured)
    if len(predicted) != n:
        raise InvalidInputError(f"{len(predicted)} predictions for {n} measurements")

    def arr(values: Sequence[float | None] | None) -> np.ndarray:
        if values is None:
            return np.full(n, np.nan)
        if len(values) != n:
            raise InvalidInputError(f"{len(values)} values for {n} points")
        return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)

    meas, pred, w = arr(measured), arr(predicted), arr(weights)
    ok = np.isfinite(meas) & (meas > 0)
    both = ok & np.isfinite(pred)
    has_w = ok & np.isfinite(w)
    rel = np.abs(pred[both] / meas[both] - 1.0)
    bands = list(intervals) if intervals is not None else [None] * n
    if len(bands) != n:
        raise InvalidInputError(f"{len(bands)} intervals for {n} points")
    inside = [bool(b[0] <= meas[i] <= b[1]) for i, b in enumerate(bands) if ok[i] and b is not None]
    flags = list(flagged) if flagged is not None else [False] * n
    return {
        "n_points": n,
        "n_measured": int(ok.sum()),
        "n_flagged": int(sum(bool(f) for f, o in zip(flags, ok, strict=True) if o)),
        "spearman_predicted_vs_measured": _rank_corr(pred[both], meas[both]),
        "spearman_quality_weight_vs_measured": _rank_corr(w[has_w], meas[has_w]),
        "n_with_preference": int(has_w.sum()),
        "within10": round(within(pred[both], meas[both], WITHIN[0]), 3) if both.any() else None,
        "within25": round(within(pred[both], meas[both], WITHIN[1]), 3) if both.any() else None,
        "median_rel_error": round(float(np.median(rel)), 3) if both.any() else None,
        "n_with_interval": len(inside),
        "in_interval": int(sum(inside)),
        "interval_coverage": round(sum(inside) / len(inside), 3) if inside else None,
    }


# ----------------------------------------------------------------------------------------------
# preconditions
# ----------------------------------------------------------------------------------------------
def _profile_hint(space: str) -> str:
    flag = "" if space == "nb201" else f" --space {space}"
    return (
        f"measure a device of this machine instead: `hilnas profile{flag} --device cpu`, then "
        f"`hilnas front{flag} --device cpu --measure`"
    )


def reference_devices(space: str) -> set[str]:
    """The reference devices of a space's shipped tables (no hardware here)."""
    if space == "nb201":
        from hilnas.pipeline.refdata import load_nb201

        ref = load_nb201()
        return set(ref.latency_devices) | set(ref.energy_devices)
    from hilnas.pipeline.spacesearch.targets import reference_targets

    return {d for m in ("latency_ms", "energy_mj") for d in reference_targets(space, (m,))}


def check_measurable(
    device: str,
    *,
    space: str,
    store: Any = None,
    reps: int | None = None,
    warmup: int | None = None,
) -> LocalTarget:
    """The local device configuration ``device`` names, or a clear error; writes nothing.

    ``device`` is what ``hilnas front --device`` takes: a configuration key, a device id with
    one measured configuration, or a local alias (``cpu``, ``gpu0``) of one. Refused
    (:class:`NotMeasurableError`, naming ``hilnas profile --device cpu``): a reference device of
    the space's shipped table, an imported device, a configuration whose device is not on this
    machine. ``store``: a :class:`~hilnas.pipeline.store.MeasurementStore`, a database URL or
    None (the default store; opened read-only here). ``reps`` / ``warmup`` are checked as
    ``hilnas profile`` checks them (None: the space's defaults).
    """
    from hilnas.pipeline.profiling import ProfileRequest
    from hilnas.pipeline.spaces import get_space

    space = get_space(space).name
    if device in reference_devices(space):
        raise NotMeasurableError(
            f"{device!r} is a reference device of the {space} table: its values come from the "
            "shipped data and there is no such device on this machine, so its front cannot be "
            f"measured here; {_profile_hint(space)}"
        )
    # reps / warm-up: the profiler's own bounds, before anything is opened
    ProfileRequest(device=device, space=space, archs=0, reps=reps, warmup=warmup)
    from hilnas.pipeline.store import MeasurementStore

    own = not isinstance(store, MeasurementStore)
    st = MeasurementStore(store, read_only=True) if own else store
    try:
        return _local_target(device, space, st)
    finally:
        if own:
            st.close()


def _local_target(device: str, space: str, st: Any) -> LocalTarget:
    from hilnas.pipeline.predictors import resolve_local_alias
    from hilnas.pipeline.store import TargetNotFoundError

    try:
        key = st.resolve_target(device)
    except TargetNotFoundError:
        key = resolve_local_alias(device, st)
        if key is None:
            raise
    if "/" not in key:
        raise NotMeasurableError(
            f"{device!r} is an imported device (its values were read from a file, "
            "`hilnas devices import`); it has no hardware on this machine, so its front cannot "
            f"be measured here; {_profile_hint(space)}"
        )
    rows = st.measurements(config_key=key, status="ok")
    if not rows:  # pragma: no cover - resolve_target returns keys with ok rows only
        raise NotFoundError(f"no ok measurements of {key!r} in the store {st.display_url}")
    k = rows[-1].key
    from hilnas.devices import get_device
    from hilnas.devices.base import DeviceNotFoundError

    try:
        get_device(k.device_id)
    except DeviceNotFoundError:
        raise NotMeasurableError(
            f"{key!r} was measured on another machine (device {k.device_id} is not on this "
            "one; `hilnas devices list` shows this machine's devices), so its front cannot be "
            f"measured here; {_profile_hint(space)}"
        ) from None
    return LocalTarget(
        name=device,
        config_key=key,
        device_id=k.device_id,
        execution_provider=k.execution_provider,
        threads=k.threads,
        batch_size=k.batch_size,
    )


# ----------------------------------------------------------------------------------------------
# the measurement
# ----------------------------------------------------------------------------------------------
def _field(point: Any, name: str) -> Any:
    return point.get(name) if isinstance(point, Mapping) else getattr(point, name, None)


def _predicted(point: Any, metric: str) -> float | None:
    values = _field(point, "objectives")
    if isinstance(values, Mapping) and values.get(metric) is not None:
        return float(values[metric])
    return None


def _interval(point: Any, metric: str) -> tuple[float, float] | None:
    bands = _field(point, "intervals")
    if isinstance(bands, Mapping) and bands.get(metric) is not None:
        lo, hi = bands[metric]
        return float(lo), float(hi)
    return None


def measure_front(
    points: Sequence[Any],
    *,
    space: str,
    device: str,
    store: Any = None,
    reps: int | None = None,
    warmup: int | None = None,
    model_config: Any = None,
    progress: Callable[[Any], None] | None = None,
    metric: str = "latency_ms",
) -> FrontCheck:
    """Measure a front's architectures on the local device ``device`` and compare.

    ``points``: the front, as records (:func:`hilnas.pipeline.fronts.front_with_intervals`,
    dicts with ``arch``, ``preference``, ``objectives`` and optionally ``intervals``) or as the
    search's point objects. ``device``: as for :func:`check_measurable` (checked first, with
    the architectures, before anything is profiled). ``store``: a store or a database URL (None:
    the default store), written like any profiling run. ``reps`` / ``warmup``: the profiling
    run's (None: the space's :func:`~hilnas.pipeline.profiling.profile_defaults`).
    ``model_config``: the workload (None: the space's default, the one a device's predicted
    latencies are for). ``progress`` receives the profiler's
    :class:`~hilnas.pipeline.profiling.ProgressEvent`. ``metric``: the predicted objective
    compared with the measured median latency.
    """
    from hilnas.pipeline.profiling import profile_defaults, profile_device
    from hilnas.pipeline.spaces import get_space

    t0 = time.perf_counter()
    sp = get_space(space)
    if not points:
        raise InvalidInputError("the front has no points to measure")
    codes = []
    for p in points:
        arch = _field(p, "arch")
        try:
            codes.append(sp.parse(arch) if isinstance(arch, str) else sp.coerce(arch))
        except (ValueError, IndexError, TypeError) as exc:
            raise InvalidInputError(
                f"front point {arch!r} is not a {sp.name} architecture ({exc})"
            ) from None
    target = check_measurable(device, space=sp.name, store=store, reps=reps, warmup=warmup)
    defaults = profile_defaults(sp.name)
    reps = defaults.reps if reps is None else reps
    warmup = defaults.warmup if warmup is None else warmup
    config = sp.default_model_config() if model_config is None else model_config
    report = profile_device(
        target.device_id,
        space=sp.name,
        archs=0,
        reps=reps,
        warmup=warmup,
        threads=target.threads,
        batch_size=target.batch_size,
        execution_provider=target.execution_provider,
        include=[sp.format(c) for c in codes],
        model_config=config,
        references=False,
        store=store,
        progress=progress,
    )
    rows = {r.arch: r for r in report.rows}
    checks: list[PointCheck] = []
    for p, code in zip(points, codes, strict=True):
        row = rows[sp.format(code)]
        ok = row.status == "ok" and row.latency_ms_median is not None
        measured = float(row.latency_ms_median) if ok else None
        band = _interval(p, metric)
        pref = _field(p, "preference")
        checks.append(
            PointCheck(
                arch=sp.format(code),
                preference=tuple(float(v) for v in pref) if pref else None,
                predicted_ms=_predicted(p, metric),
                measured_ms=measured,
                cv=row.latency_ms_cv if ok else None,
                quality=row.quality if ok else None,
                flagged=bool(ok and row.flagged),
                interval=band,
                in_interval=(band[0] <= measured <= band[1])
                if band is not None and measured is not None
                else None,
                outcome=row.outcome,
                error=row.error,
            )
        )
    summary = summarize(
        [c.predicted_ms for c in checks],
        [c.measured_ms for c in checks],
        weights=[c.preference[0] if c.preference else None for c in checks],
        intervals=[c.interval for c in checks],
        flagged=[c.flagged for c in checks],
    )
    summary["measured_now"] = sum(c.outcome == "measured" for c in checks)
    summary["already_stored"] = sum(c.outcome in ("stored", "kept") for c in checks)
    summary["n_failed"] = sum(c.measured_ms is None for c in checks)
    return FrontCheck(
        device=device,
        config_key=report.config_key,
        space=sp.name,
        model_config_key=report.model_config_key,
        reps=reps,
        warmup=warmup,
        points=checks,
        summary=summary,
        wall_s=time.perf_counter() - t0,
        quality_summary=report.quality_summary(),
    )
