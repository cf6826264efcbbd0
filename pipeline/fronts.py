"""Pareto fronts: the exact NB201 fronts to score a search against, and front files (JSON, PNG).

Scoring follows ``docs/method.md``: on NB201, for one device and a tuple of objectives
(``error`` = 100 - CIFAR-10 test accuracy in %, ``latency_ms``, ``energy_mj``), every objective
is normalised to [0, 1] with its min and max over the whole space after dropping the
architectures with error >= 90 % (no path from input to output), all are minimised, and the
reference point is (1, ..., 1). :func:`hv_ratio` is the hypervolume of what a method found
divided by that of the exact Pareto front; :func:`igd_of` the inverted generational distance to
the exact front in the same normalised space.

Writers: :func:`write_front_json` and :func:`plot_front_png` take the points a search returns
(``FrontPoint`` objects, dataclasses or mappings with an architecture, objective values and
optionally a preference) and are shared by ``hilnas front``, ``hilnas run`` and the benchmarks.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from hilnas.devices.errors import InvalidInputError
from hilnas.pipeline import mo
from hilnas.pipeline.objectives import HARDWARE, LABELS, UNITS, parse_objectives, quality_objective
from hilnas.pipeline.objectives import OBJECTIVES as REGISTRY

__all__ = [
    "ERROR_CUTOFF",
    "FRONT_SCHEMA",
    "OBJECTIVES",
    "OBJECTIVE_LABELS",
    "OBJECTIVE_UNITS",
    "NB201Problem",
    "check_objectives",
    "exact_front",
    "hv_ratio",
    "igd_of",
    "linear_scalarisation_front",
    "nb201_problem",
    "plot_front_png",
    "point_records",
    "read_front_json",
    "write_front_json",
]

#: NB201's objectives, all minimised (the registry: :mod:`hilnas.pipeline.objectives`).
OBJECTIVES: tuple[str, ...] = (quality_objective("nb201"), *HARDWARE)
OBJECTIVE_UNITS: dict[str, str] = dict(UNITS)
OBJECTIVE_LABELS: dict[str, str] = dict(LABELS)
#: Quality objectives (drawn on the y axis of a front plot).
_QUALITY = tuple(n for n, o in REGISTRY.items() if o.kind == "quality")
#: Architectures at or above this error (%) are dropped before normalising and scoring.
ERROR_CUTOFF = 90.0
FRONT_SCHEMA = "hilnas.front/1"


def check_objectives(objectives: Sequence[str]) -> tuple[str, ...]:
    """Validate NB201 objectives (a sequence or "error,latency"): known names (aliases latency,
    energy, err), no repeats, at least two; returns the canonical tuple
    (:func:`hilnas.pipeline.objectives.parse_objectives`)."""
    return parse_objectives(objectives, "nb201")


# ----------------------------------------------------------------------------- NB201 exact fronts
@dataclasses.dataclass(frozen=True)
class NB201Problem:
    """One device's NB201 objectives, normalised over the whole space, and its exact front.

    ``values`` holds the raw objectives (rows in the official NB201 order, units as named);
    ``normalized`` the same in [0, 1] (rows with error >= 90 % fall outside the box). ``valid``
    marks the rows that are scored. ``front`` holds the indices of the exact Pareto front.
    """

    device: str
    objectives: tuple[str, ...]
    values: np.ndarray
    normalized: np.ndarray
    valid: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    front: np.ndarray
    exact_hv: float

    @property
    def ref_point(self) -> np.ndarray:
        return np.ones(len(self.objectives))

    def _found(self, indices: Any) -> np.ndarray:
        idx = np.unique(np.asarray(indices, dtype=np.int64).reshape(-1))
        if idx.size and (idx.min() < 0 or idx.max() >= len(self.values)):
            raise IndexError(f"NB201 indices must lie in 0..{len(self.values) - 1}")
        return idx[self.valid[idx]]

    def front_of(self, indices: Any) -> np.ndarray:
        """The non-dominated indices among ``indices`` (valid ones only), sorted."""
        idx = self._found(indices)
        if idx.size == 0:
            return idx
        return np.sort(idx[mo.pareto_mask(self.normalized[idx])])

    def hv(self, indices: Any) -> float:
        idx = self._found(indices)
        return mo.hypervolume(self.normalized[idx], self.ref_point)

    def hv_ratio(self, indices: Any) -> float:
        """HV(found) / HV(exact front); 1.0 means the front was found."""
        return self.hv(indices) / self.exact_hv

    def igd(self, indices: Any) -> float:
        """IGD of the found points to the exact front (normalised space); inf if none valid."""
        idx = self._found(indices)
        return mo.igd(self.normalized[idx], self.normalized[self.front])

    def evaluate(self, indices: Any) -> np.ndarray:
        """Normalised objective rows of ``indices`` (what one true evaluation returns)."""
        return self.normalized[np.asarray(indices, dtype=np.int64)]


def _objective_column(ref: Any, device: str, objective: str) -> np.ndarray:
    if objective == "error":
        return 100.0 - ref.accuracy_of("cifar10_test").astype(np.float64)
    if objective == "latency_ms":
        try:
            return ref.latency(device).astype(np.float64)
        except KeyError as exc:
            raise InvalidInputError(str(exc.args[0])) from None
    try:
        return ref.energy(device).astype(np.float64)
    except KeyError:
        raise InvalidInputError(
            f"no reference energy for {device!r}; energy_mj is known for: "
            f"{', '.join(ref.energy_devices)}"
        ) from None


def nb201_problem(device: str, objectives: Sequence[str] = ("error", "latency_ms")) -> NB201Problem:
    """The normalised objectives and exact Pareto front of one NB201 reference device (cached)."""
    return _nb201_problem(str(device), check_objectives(objectives))


@functools.lru_cache(maxsize=128)
def _nb201_problem(device: str, objs: tuple[str, ...]) -> NB201Problem:
    from hilnas.pipeline.refdata import load_nb201

    ref = load_nb201()
    values = np.stack([_objective_column(ref, device, o) for o in objs], axis=1)
    error = 100.0 - ref.accuracy_of("cifar10_test").astype(np.float64)
    valid = error < ERROR_CUTOFF
    lo, hi = values[valid].min(axis=0), values[valid].max(axis=0)
    normalized = mo.normalize(values, lo, hi)
    vidx = np.flatnonzero(valid)
    front = np.sort(vidx[mo.pareto_mask(normalized[vidx])])
    exact = mo.hypervolume(normalized[front], np.ones(len(objs)))
    for a in (values, normalized, valid, lo, hi, front):
        a.setflags(write=False)
    return NB201Problem(device, objs, values, normalized, valid, lo, hi, front, exact)


def exact_front(device: str, objectives: Sequence[str] = ("error", "latency_ms")) -> np.ndarray:
    """NB201 indices of the exact Pareto front of ``device`` for ``objectives``."""
    return nb201_problem(device, tuple(objectives)).front


def hv_ratio(
    found_indices: Any, device: str, objectives: Sequence[str] = ("error", "latency_ms")
) -> float:
    """HV of the architectures ``found_indices`` / HV of the exact front (see module doc)."""
    return nb201_problem(device, tuple(objectives)).hv_ratio(found_indices)


def igd_of(
    found_indices: Any, device: str, objectives: Sequence[str] = ("error", "latency_ms")
) -> float:
    """IGD of ``found_indices`` to the exact front, in the normalised objective space."""
    return nb201_problem(device, tuple(objectives)).igd(found_indices)


def linear_scalarisation_front(
    device: str, objectives: Sequence[str] = ("error", "latency_ms"), *, weights: int = 2001
) -> np.ndarray:
    """Indices a linear scalarisation can reach (argmin of r . f over a dense preference grid).

    The best any method that optimises weighted sums can do; its HV ratio is below 1 where the
    front is not convex.
    """
    p = nb201_problem(device, tuple(objectives))
    F = p.normalized[p.front]
    W = mo.uniform_preferences(len(p.objectives), weights)
    return np.unique(p.front[np.argmin(W @ F.T, axis=1)])


# ----------------------------------------------------------------------------- records
def _plain(value: Any) -> Any:
    """JSON-ready copy: numpy scalars/arrays, tensors, tuples, non-finite floats (-> None)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


_VALUE_KEYS = ("objectives", "values", "predicted", "objective_values")


def _record(point: Any, objectives: tuple[str, ...]) -> dict[str, Any]:
    if isinstance(point, Mapping) or (
        dataclasses.is_dataclass(point) and not isinstance(point, type)
    ):
        rec = _plain(point)
    elif hasattr(point, "__dict__"):
        rec = _plain({k: v for k, v in vars(point).items() if not k.startswith("_")})
    elif hasattr(point, "__slots__"):
        rec = _plain({k: getattr(point, k) for k in point.__slots__ if hasattr(point, k)})
    else:
        raise TypeError(f"cannot read a front point from {type(point).__name__}")
    values: dict[str, Any] | None = None
    for key in _VALUE_KEYS:
        if key in rec:
            raw = rec.pop(key)
            if isinstance(raw, Mapping):
                values = dict(raw)
            elif isinstance(raw, list):
                if len(raw) != len(objectives):
                    raise InvalidInputError(
                        f"front point has {len(raw)} objective values for {len(objectives)} "
                        f"objectives {objectives}"
                    )
                values = dict(zip(objectives, raw, strict=False))
            break
    if values is None:
        values = {o: rec.pop(o) for o in objectives if o in rec}
    missing = [o for o in objectives if o not in values]
    if missing:
        raise InvalidInputError(f"front point lacks values for {', '.join(missing)}: {rec}")
    rec["objectives"] = {o: values[o] for o in objectives}
    return rec


def point_records(points: Sequence[Any], objectives: Sequence[str]) -> list[dict[str, Any]]:
    """Normalise front points to dicts with ``objectives`` as ``{name: value}`` (JSON-ready)."""
    objs = tuple(objectives)
    return [_record(p, objs) for p in points]


def attach_intervals(
    points: Sequence[Any], objectives: Sequence[str], intervals: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Front records (:func:`point_records`) with each point's prediction interval.

    ``intervals``: ``{objective: band}``, a band having ``low`` and ``high`` arrays in point
    order and a ``level`` (e.g. :class:`~hilnas.pipeline.predictors.io.PredictionIntervals`).
    Each record gains ``"intervals": {objective: [low, high]}`` and ``"interval_level"``; an
    interval always contains the point's own value (it is widened to it if needed). An
    objective not among ``objectives`` or a band of the wrong length is an error.
    """
    objs = tuple(objectives)
    records = point_records(points, objs)
    for metric, band in intervals.items():
        if metric not in objs:
            raise InvalidInputError(
                f"an interval for {metric!r}, which is not an objective of the front {objs}"
            )
        low = np.asarray(band.low, dtype=np.float64).reshape(-1)
        high = np.asarray(band.high, dtype=np.float64).reshape(-1)
        if len(low) != len(records) or len(high) != len(records):
            raise InvalidInputError(
                f"{metric} intervals for {len(low)} points, the front has {len(records)}"
            )
        for rec, lo, hi in zip(records, low, high, strict=True):
            v = rec["objectives"][metric]
            if v is not None:
                lo, hi = min(lo, v), max(hi, v)
            rec.setdefault("intervals", {})[metric] = _plain([lo, hi])
            rec["interval_level"] = float(band.level)
    return records


def _bands(records: list[dict[str, Any]], objective: str, values: np.ndarray) -> np.ndarray | None:
    """``(2, n)`` distances below/above each value of ``objective`` (for error bars), or None
    when no record carries an interval for it."""
    if not any(objective in (r.get("intervals") or {}) for r in records):
        return None
    out = np.zeros((2, len(records)))
    for i, r in enumerate(records):
        band = (r.get("intervals") or {}).get(objective)
        if band and None not in band and np.isfinite(values[i]):
            out[0, i] = max(values[i] - float(band[0]), 0.0)
            out[1, i] = max(float(band[1]) - values[i], 0.0)
    return out


def _values(records: list[dict[str, Any]], objectives: tuple[str, ...]) -> np.ndarray:
    return np.array(
        [
            [np.nan if r["objectives"][o] is None else r["objectives"][o] for o in objectives]
            for r in records
        ],
        dtype=np.float64,
    ).reshape(len(records), len(objectives))


def _atomic_write(path: Path, write: Any, suffix: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; fronts are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_front_json(
    path: str | Path,
    device: str,
    objectives: Sequence[str],
    points: Sequence[Any],
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write a front as JSON (atomically) and return the path.

    Layout: ``{"schema", "device", "objectives", "units", "created", "metadata", "points"}``;
    each point keeps its own fields (architecture, preference, ...) and carries
    ``"objectives": {name: value}`` in the units of ``"units"``. Points are also flagged
    ``"pareto": true|false`` (non-dominated among the points written).
    """
    path = Path(path)
    objs = tuple(objectives)
    records = point_records(points, objs)
    V = _values(records, objs)
    ok = np.all(np.isfinite(V), axis=1)
    pareto = np.zeros(len(records), dtype=bool)
    if ok.any():
        pareto[np.flatnonzero(ok)[mo.pareto_mask(V[ok])]] = True
    for rec, flag in zip(records, pareto, strict=False):
        rec["pareto"] = bool(flag)
    doc = {
        "schema": FRONT_SCHEMA,
        "device": device,
        "objectives": list(objs),
        "units": {o: OBJECTIVE_UNITS.get(o, "") for o in objs},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "metadata": _plain(dict(metadata or {})),
        "points": records,
    }
    text = json.dumps(doc, indent=2, allow_nan=False) + "\n"
    _atomic_write(path, lambda fh: fh.write(text.encode()), ".json")
    return path


def read_front_json(path: str | Path) -> dict[str, Any]:
    """Read a file written by :func:`write_front_json` (checks the schema tag)."""
    doc = json.loads(Path(path).read_text())
    if not isinstance(doc, dict) or doc.get("schema") != FRONT_SCHEMA:
        raise InvalidInputError(
            f"{path} is not a hilnas front file (schema {FRONT_SCHEMA!r} expected)"
        )
    return doc


def _label(objective: str) -> str:
    return OBJECTIVE_LABELS.get(objective, objective)


def plot_front_png(
    path: str | Path,
    device: str,
    objectives: Sequence[str],
    points: Sequence[Any],
    *,
    reference: Any = None,
    reference_label: str = "exact Pareto front",
    points_label: str = "found",
    title: str | None = None,
    dpi: int = 120,
) -> Path:
    """Plot a front to a PNG (matplotlib, Agg backend) and return the path.

    Two objectives: one panel, hardware cost on x and error on y when error is one of them.
    Three or more: one panel per pair of objectives. Points are coloured by their preference's
    first component when they carry one; the non-dominated ones are joined by a staircase in the
    2-objective plot. ``reference`` (an (n, M) array of raw objective values, same order as
    ``objectives``) is drawn underneath, e.g. the exact NB201 front; ``points_label`` names the
    points in the legend (e.g. "predicted" for a search's own estimates). Points carrying
    ``intervals`` (:func:`attach_intervals`) get error bars on those objectives.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    path = Path(path)
    objs = tuple(objectives)
    records = point_records(points, objs)
    V = _values(records, objs)
    pref = []
    for r in records:
        p = r.get("preference")
        pref.append(p[0] if isinstance(p, list) and p and p[0] is not None else np.nan)
    pref_arr = np.asarray(pref, dtype=np.float64)
    coloured = bool(np.isfinite(pref_arr).any())
    R = (
        None
        if reference is None
        else np.asarray(reference, dtype=np.float64).reshape(-1, len(objs))
    )

    if len(objs) == 2:
        pairs = [(1, 0) if objs[0] in _QUALITY else (0, 1)]
    else:
        pairs = [(j, i) for i in range(len(objs)) for j in range(i + 1, len(objs))]
        pairs = [
            (a, b) if objs[b] in _QUALITY or objs[a] not in _QUALITY else (b, a) for a, b in pairs
        ]
    ncols = len(pairs)
    fig, axes = plt.subplots(1, ncols, figsize=(5.2 * ncols, 4.2), squeeze=False)
    sc = None
    for ax, (xi, yi) in zip(axes[0], pairs, strict=False):
        show_legend = False
        if R is not None and len(R):
            ax.scatter(R[:, xi], R[:, yi], s=8, c="0.75", label=reference_label, zorder=1)
        ok = np.all(np.isfinite(V[:, [xi, yi]]), axis=1)
        xerr, yerr = _bands(records, objs[xi], V[:, xi]), _bands(records, objs[yi], V[:, yi])
        if (xerr is not None or yerr is not None) and ok.any():
            level = next((r["interval_level"] for r in records if "interval_level" in r), None)
            ax.errorbar(
                V[ok, xi],
                V[ok, yi],
                xerr=None if xerr is None else xerr[:, ok],
                yerr=None if yerr is None else yerr[:, ok],
                fmt="none",
                ecolor="0.45",
                elinewidth=0.8,
                capsize=2,
                alpha=0.8,
                label=f"{100 * level:g} % prediction interval" if level else "interval",
                zorder=2,
            )
            show_legend = True
        if len(objs) == 2 and ok.any():
            P = V[ok][mo.pareto_mask(V[ok])]
            P = P[np.argsort(P[:, xi])]
            ax.step(P[:, xi], P[:, yi], where="post", c="C0", lw=1, alpha=0.7, zorder=2)
        if coloured:
            # points no preference chose (found by the refinement) have no colour: grey
            plain = ok & ~np.isfinite(pref_arr)
            if plain.any():
                ax.scatter(
                    V[plain, xi],
                    V[plain, yi],
                    s=28,
                    c="0.6",
                    edgecolors="k",
                    linewidths=0.4,
                    label="refined (no preference)",
                    zorder=3,
                )
                show_legend = True
            ok = ok & np.isfinite(pref_arr)
            sc = ax.scatter(
                V[ok, xi],
                V[ok, yi],
                c=pref_arr[ok],
                cmap="viridis",
                vmin=0,
                vmax=1,
                s=28,
                edgecolors="k",
                linewidths=0.4,
                label=points_label,
                zorder=3,
            )
        else:
            ax.scatter(
                V[ok, xi],
                V[ok, yi],
                s=28,
                c="C0",
                edgecolors="k",
                linewidths=0.4,
                label=points_label,
                zorder=3,
            )
        ax.ticklabel_format(axis="both", style="sci", scilimits=(-3, 4), useMathText=True)
        ax.set_xlabel(_label(objs[xi]))
        ax.set_ylabel(_label(objs[yi]))
        ax.grid(True, alpha=0.3)
        if R is not None or show_legend:
            ax.legend(loc="upper right", fontsize=8)
    if coloured and sc is not None:
        fig.colorbar(sc, ax=axes[0].tolist(), label=f"preference weight on {objs[0]}")
    fig.suptitle(title or f"Pareto front on {device} ({len(records)} points)")
    _atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=dpi), ".png")
    plt.close(fig)
    return path


#: Level of the prediction intervals a front carries (as ``hilnas predict --interval``).
FRONT_INTERVAL_LEVEL = 0.8

#: Factor on the log half-width of a front's intervals, per space. A front is made of
#: architectures chosen for being predicted cheap at their quality, so their prediction errors
#: are larger than those of the random architectures the learning predictor's intervals are
#: calibrated on: without it, 80 % intervals covered 70 % of a front proxy's points on the
#: training devices, and 66 % of the real fronts on NB201's six test devices. Each factor is the
#: 80 % quantile of the normalised residuals of front points, measured on TRAINING devices only
#: (``python -m hilnas.pipeline.benchmarks.front_intervals``: NB201 leave-one-device-out 1.335
#: and leave-one-family-out 1.328 over its 21 training configurations; OFA MobileNetV3 1.215
#: leave-one-device-out over HELP's 9 configurations; GPT-S 0.963 over its 10 devices, i.e. no
#: selection effect there, so 1.0). A space without its own uses :data:`DEFAULT_FRONT_WIDENING`,
#: the largest one measured.
FRONT_WIDENING: dict[str, float] = {"nb201": 1.33, "ofa_mbv3": 1.21, "gpt_s": 1.0}
DEFAULT_FRONT_WIDENING = 1.33


def front_with_intervals(
    target: str,
    points: list[Any],
    objectives: tuple[str, ...],
    *,
    space: Any,
    store: Any = None,
    level: float = FRONT_INTERVAL_LEVEL,
    priors: dict[str, Any] | None = None,
    ensemble: bool = False,
    widening: float | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``(records, note)``: a front's points with the ``level`` prediction interval of each
    hardware objective, and a note for the front's metadata (level, residual model,
    measurements it was fit on). The interval is the target's learning predictor's
    (split-conformal; :mod:`hilnas.pipeline.predictors.learning`): for NB201 through
    :func:`hilnas.pipeline.predictors.io.predict_intervals`, for another space from ``priors``
    (``{metric: SpacePredictor}``, a saved space search's predictors) and
    :func:`hilnas.pipeline.spacesearch.targets.learning_predictor_for`. Their log half-width is
    then multiplied by ``widening`` (default: the space's :data:`FRONT_WIDENING`; 1.0 gives the
    intervals of random architectures, as ``hilnas predict`` writes them), because a front's
    points are selected for being predicted cheap, and each interval is extended to contain its
    point's own value. A target without the needed reference values gets the plain records and
    an empty note. ``ensemble`` (NB201): normalised intervals, an option of
    :func:`hilnas.pipeline.predictors.learning.learning_predictor`."""
    factor = (
        FRONT_WIDENING.get(space.name, DEFAULT_FRONT_WIDENING) if widening is None else widening
    )
    if not math.isfinite(float(factor)) or float(factor) < 1.0:
        raise InvalidInputError(
            f"widening must be a number >= 1 (1.0: no selection widening), got {widening!r}"
        )
    hardware = [o for o in objectives if o in ("latency_ms", "energy_mj")]
    records = point_records(points, objectives)
    if not hardware or not points:
        return records, {}
    from hilnas.devices.errors import NotFoundError
    from hilnas.pipeline.predictors import io as pio

    codes = np.array([space.parse(r["arch"]) for r in records], dtype=np.int64)
    values = {
        o: np.array([r["objectives"][o] for r in records], dtype=np.float64) for o in hardware
    }
    if space.name == "nb201":
        bands = pio.predict_intervals(
            target, codes, values, level=level, store=store, ensemble=ensemble
        )
    else:
        from hilnas.pipeline.spacesearch.targets import learning_predictor_for

        bands = {}
        for m in hardware:
            if priors is None or m not in priors:
                continue
            try:
                learner = learning_predictor_for(
                    space.name, target, m, priors[m], store, level=level
                )
            except NotFoundError:
                continue  # e.g. no reference values of this metric in the store
            bands[m] = pio.PredictionIntervals.from_learner(learner, codes, level)[1]
    if not bands:
        return records, {}
    bands = {m: b.widened(factor) for m, b in bands.items()}
    note = {
        m: {
            "level": b.level,
            "model": b.kind,
            "measured": b.n_extra,
            "imputed": b.imputed,
            "selection_widening": float(factor),
        }
        for m, b in bands.items()
    }
    return attach_intervals(points, objectives, bands), note
