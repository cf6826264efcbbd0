"""Reading measurements and architecture lists, importing external devices, predicting a target.

Everything the ``hilnas devices import`` / ``hilnas predict`` commands do, as plain functions
(the CLI and the Prefect flows are thin wrappers). Input is validated completely before
anything is stored: a rejected file leaves the store unchanged.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from hilnas.pipeline.predictors import (
    METRICS,
    MissingReferenceError,
    NoEmbeddingError,
    PredictorError,
    reference_strings,
    reference_targets,
)

if TYPE_CHECKING:  # pragma: no cover
    from hilnas.pipeline.store import MeasurementStore

#: Errors listed in one message before "... and N more".
MAX_LISTED = 10


@dataclass(frozen=True)
class DeviceMeasurements:
    """A validated measurement table: canonical arch strings, latency (ms), energy (mJ or None)."""

    archs: tuple[str, ...]
    latency_ms: np.ndarray
    energy_mj: tuple[float | None, ...]
    #: reference architectures the table lacks (imputed when the device is used, never stored)
    missing_references: tuple[str, ...] = ()

    @property
    def has_energy(self) -> bool:
        return any(e is not None for e in self.energy_mj)

    def rows(self) -> list[tuple[str, float, float | None]]:
        return [
            (a, float(lat), e)
            for a, lat, e in zip(self.archs, self.latency_ms, self.energy_mj, strict=False)
        ]


def _listed(problems: Sequence[str]) -> str:
    head = "; ".join(problems[:MAX_LISTED])
    more = len(problems) - MAX_LISTED
    return head + (f"; ... and {more} more" if more > 0 else "")


def _number(text: Any, what: str, *, required: bool) -> tuple[float | None, str | None]:
    """Parse a positive finite number; returns (value, problem)."""
    s = "" if text is None else str(text).strip()
    if s == "":
        return None, (f"{what} is empty" if required else None)
    try:
        v = float(s)
    except ValueError:
        return None, f"{what} {s!r} is not a number"
    if math.isnan(v) or math.isinf(v):
        return None, f"{what} is {s} (must be a finite number)"
    if v <= 0:
        return None, f"{what} is {s} (must be > 0)"
    return v, None


def _other_space_hint(raw: str, space: str) -> str:
    """``"; it is a <space> architecture: pass --space <space>"`` when ``raw`` parses there."""
    from hilnas.pipeline.spaces import available_spaces, get_space

    for other in available_spaces():
        if other == space:
            continue
        try:
            get_space(other).parse(raw)
        except (ValueError, LookupError):
            continue
        return f"; these are {other} architectures: pass --space {other}"
    return ""


def parse_measurements_csv(
    text: str,
    *,
    source: str = "CSV",
    require_references: bool = True,
    space: str = "nb201",
    allow_partial: bool = False,
) -> DeviceMeasurements:
    """Validate a device CSV (columns ``arch``, ``latency_ms``, optional ``energy_mj``).

    Rejects: missing columns, malformed or unknown architectures, empty/NaN/infinite/non-positive
    values (a reference architecture's is named as such), an architecture repeated with
    different values (identical repeats are merged), and (with ``require_references``) a table
    lacking some of the 10 reference architectures, whose strings the error lists. With
    ``allow_partial`` (NB201 only) a table with at least :func:`min_known_references` of them
    passes, its missing ones in ``missing_references`` (:func:`complete_references` imputes
    them). Energy, when given for any row, must be given for every reference in the table.
    """
    from hilnas.pipeline.spaces import get_space

    sp = get_space(space)
    first_bad: str | None = None
    try:
        reader = csv.DictReader(io.StringIO(text))
        header = [h.strip() for h in (reader.fieldnames or [])]
    except csv.Error as exc:
        raise PredictorError(f"{source} is not a readable CSV file ({exc})") from exc
    missing_cols = [c for c in ("arch", "latency_ms") if c not in header]
    if missing_cols:
        raise PredictorError(
            f"{source} lacks the column(s) {', '.join(missing_cols)}; a device CSV has the columns "
            f"arch, latency_ms and optionally energy_mj (found: {', '.join(h for h in header if h) or 'none'})"
        )
    reader.fieldnames = header
    with_energy = "energy_mj" in header
    refs = reference_strings() if sp.name == "nb201" else sp.reference_strings()
    ref_set = set(refs)
    problems: list[str] = []
    values: dict[str, tuple[float, float | None, int]] = {}
    n_rows = 0
    for lineno, row in enumerate(reader, start=2):
        if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            continue  # blank line
        n_rows += 1
        where = f"row {n_rows} (line {lineno})"
        raw_arch = (row.get("arch") or "").strip()
        try:
            arch = sp.format(sp.parse(raw_arch))
        except ValueError as exc:
            problems.append(f"{where}: {exc}" if raw_arch else f"{where}: arch is empty")
            if raw_arch and first_bad is None:
                first_bad = raw_arch
            continue
        lat, p1 = _number(row.get("latency_ms"), "latency_ms", required=True)
        en, p2 = (
            _number(row.get("energy_mj"), "energy_mj", required=False)
            if with_energy
            else (None, None)
        )
        bad = [p for p in (p1, p2) if p]
        if bad:
            what = "reference architecture " if arch in ref_set else ""
            problems.append(f"{where} ({what}{arch}): " + ", ".join(bad))
            continue
        assert lat is not None
        if arch in values:
            old_lat, old_en, old_line = values[arch]
            if not (math.isclose(old_lat, lat, rel_tol=1e-9) and old_en == en):
                problems.append(
                    f"{where}: {arch} repeats line {old_line} with different values "
                    f"({lat} vs {old_lat} ms"
                    + (f", {en} vs {old_en} mJ" if with_energy else "")
                    + ")"
                )
            continue
        values[arch] = (lat, en, lineno)
    if problems:
        hint = _other_space_hint(first_bad, sp.name) if first_bad else ""
        raise PredictorError(
            f"{source} was rejected, nothing was stored: " + _listed(problems) + hint
        )
    if n_rows == 0:
        raise PredictorError(f"{source} has a header but no measurements")
    missing: list[str] = []
    if require_references:
        missing = [a for a in refs if a not in values]
        partial_ok = (
            allow_partial
            and sp.name == "nb201"
            and len(refs) - len(missing) >= min_known_references()
        )
        if missing and not partial_ok:
            if allow_partial and sp.name == "nb201":
                need = min_known_references() - (len(refs) - len(missing))
                raise MissingReferenceError(
                    f"{source} has {len(refs) - len(missing)} of the {len(refs)} {sp.name} "
                    f"reference architectures; at least {min_known_references()} are needed to "
                    f"impute the rest, nothing was stored. Measure at least {need} more of: "
                    + ", ".join(missing),
                    missing,
                )
            raise MissingReferenceError(
                f"{source} lacks {len(missing)} of the {len(refs)} {sp.name} reference "
                "architectures, so the device "
                f"would have no hardware embedding; nothing was stored. Measure these and add them: "
                + ", ".join(missing),
                missing,
            )
        if any(v[1] is not None for v in values.values()):
            missing_e = [a for a in refs if a in values and values[a][1] is None]
            if missing_e:
                raise MissingReferenceError(
                    f"{source} gives energy_mj for some architectures but not for {len(missing_e)} "
                    "reference architecture(s); nothing was stored. Add energy_mj for: "
                    + ", ".join(missing_e),
                    missing_e,
                )
    archs = tuple(values)
    return DeviceMeasurements(
        archs=archs,
        latency_ms=np.array([values[a][0] for a in archs], dtype=np.float64),
        energy_mj=tuple(values[a][1] for a in archs),
        missing_references=tuple(missing),
    )


def read_measurements_csv(
    path: str | os.PathLike[str],
    *,
    require_references: bool = True,
    space: str = "nb201",
    allow_partial: bool = False,
) -> DeviceMeasurements:
    p = Path(path)
    if not p.is_file():
        raise PredictorError(f"{p} does not exist or is not a file")
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise PredictorError(f"cannot read {p} ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise PredictorError(f"{p} is not a UTF-8 CSV file ({exc})") from exc
    return parse_measurements_csv(
        text,
        source=str(p),
        require_references=require_references,
        space=space,
        allow_partial=allow_partial,
    )


def check_device_name(name: str, space: str = "nb201") -> str:
    if not isinstance(name, str) or not name.strip():
        raise PredictorError("an external device needs a name, e.g. jetson_nano")
    name = name.strip()
    if space == "nb201":
        clash = any(name in reference_targets(m) for m in METRICS)
    else:
        from hilnas.pipeline.spacesearch.targets import reference_targets as space_refs

        clash = any(name in space_refs(space, (m,)) for m in ("latency_ms", "energy_mj"))
    if clash:
        raise PredictorError(
            f"{name!r} is a reference device of the shipped {space} data; choose another name "
            "for an imported device (e.g. add a suffix)"
        )
    return name


def import_device(
    name: str,
    path: str | os.PathLike[str],
    store: MeasurementStore,
    *,
    replace: bool = False,
    space: str = "nb201",
) -> DeviceMeasurements:
    """Validate a device CSV of ``space`` and store it as an external device (all or nothing).

    An NB201 table may lack some reference architectures when at least
    :func:`min_known_references` are present (``missing_references`` of the result): only the
    measured rows are stored; the missing references are imputed whenever the device is used
    (:func:`complete_references`), never stored.
    """
    name = check_device_name(name, space)
    table = read_measurements_csv(path, space=space, allow_partial=True)
    store.import_external_device(name, table.rows(), space=space, source=path, replace=replace)
    return table


# ----------------------------------------------------------------------------------------------
# partial reference sets (NB201)
# ----------------------------------------------------------------------------------------------
def min_known_references() -> int:
    """Fewest of NB201's 10 reference architectures a device must have measured to join
    (``ceil(MIN_KNOWN_SHARE * 10)`` = 6); the rest are imputed."""
    from hilnas.pipeline.predictors.learning import MIN_KNOWN_SHARE

    return math.ceil(MIN_KNOWN_SHARE * len(reference_strings()) - 1e-9)


def shipped_reference_table(metric: str = "latency_ms") -> np.ndarray:
    """``(devices, 10)`` values of the shipped NB201 reference devices on the 10 reference
    architectures (ms or mJ): the training devices of the imputation."""
    from hilnas.pipeline import refdata

    ref = refdata.load_nb201()
    idx = list(ref.reference_indices)
    names = reference_targets(metric)
    get = ref.latency if metric == "latency_ms" else ref.energy
    return np.stack([np.asarray(get(n), dtype=np.float64)[idx] for n in names])


def complete_references(name: str, metric: str, table: dict[str, float]) -> tuple[Any, Any]:
    """``(embedding, imputed)`` of an NB201 target from its measurements ``table`` (arch
    string -> value) when it lacks some reference architectures: the missing values imputed by
    :func:`~hilnas.pipeline.predictors.learning.impute_references` from the shipped reference
    devices, the other measurements its support set. ``imputed`` is the
    :class:`~hilnas.pipeline.predictors.learning.ImputedReferences` (its ``widening`` widens
    the prediction intervals). Raises :class:`MissingReferenceError` naming the references to
    measure when fewer than :func:`min_known_references` are known, :class:`NoEmbeddingError`
    when the shipped data cannot impute this metric (energy: too few devices).
    """
    from hilnas.devices.errors import InvalidInputError
    from hilnas.pipeline.predictors import TargetEmbedding, _space, canonical_values
    from hilnas.pipeline.predictors.learning import impute_references

    sp = _space()
    refs = reference_strings()
    canon = canonical_values(table)
    known = {i: canon[a] for i, a in enumerate(refs) if a in canon}
    missing = [a for a in refs if a not in canon]
    if len(known) < min_known_references():
        raise MissingReferenceError(
            f"{name!r} has {metric} measurements of only {len(known)} of the {len(refs)} "
            f"reference architectures, at least {min_known_references()} are needed; measure "
            f"at least {min_known_references() - len(known)} more of: " + ", ".join(missing),
            missing,
        )
    try:
        train = shipped_reference_table(metric)
    except Exception:  # pragma: no cover - a metric without shipped devices
        train = np.zeros((0, len(refs)))
    if len(train) < 3:
        raise NoEmbeddingError(
            f"no {metric} embedding for {name!r}: it lacks {len(missing)} reference "
            f"architecture(s) and the shipped data has too few {metric} devices to impute them; "
            "measure: " + ", ".join(missing)
        )
    try:
        imp = impute_references(known, train, names=refs)
    except InvalidInputError as exc:
        raise MissingReferenceError(str(exc), missing) from None
    ref_set = set(refs)
    extra = [(a, v) for a, v in canon.items() if a not in ref_set]
    codes = np.array([sp.parse(a) for a, _ in extra], dtype=np.int64).reshape(-1, 6)
    values = np.array([v for _, v in extra], dtype=np.float64)
    network = "pruned" if "/" in name else "unknown"
    emb = TargetEmbedding.from_raw(
        name,
        metric,
        imp.values,
        support_codes=codes,
        support_values=values,
        source="store",
        network=network,
    )
    return emb, imp


@dataclass(frozen=True)
class FitData:
    """A store target's table as predictors fit on it, and what the quality filter left out.

    ``table``: arch string -> value (ms or mJ); ``excluded``: rows flagged ``noisy`` or
    ``interfered`` that were left out; ``kept_references``: flagged rows of reference
    architectures that were kept (the embedding needs them); ``by_quality``: ``excluded`` per
    flag; ``include_flagged``: whether flagged rows were asked for (then nothing is excluded).
    """

    target: str
    metric: str
    table: dict[str, float]
    excluded: int = 0
    kept_references: int = 0
    by_quality: tuple[tuple[str, int], ...] = ()
    include_flagged: bool = False
    kept_flagged: int = 0

    def note(self) -> str | None:
        """One line for a report, or None when nothing flagged was involved."""
        if self.include_flagged or not (self.excluded or self.kept_references or self.kept_flagged):
            return None
        parts = []
        if self.kept_flagged:
            parts.append(
                f"{self.kept_flagged} of the {self.metric} measurements of {self.target} are "
                "flagged (most of them: all kept); re-measure them with `hilnas profile "
                "--retry-flagged` when the machine is quiet"
            )
        if self.excluded:
            kinds = ", ".join(f"{k} {n}" for k, n in self.by_quality)
            parts.append(
                f"{self.excluded} flagged {self.metric} measurement(s) of {self.target} left out "
                f"({kinds}); include_flagged=True uses them"
            )
        if self.kept_references:
            parts.append(
                f"{self.kept_references} flagged reference measurement(s) kept (the embedding "
                "needs them; re-measure them with `hilnas profile --retry-flagged` when the machine is quiet)"
            )
        return "; ".join(parts)


def store_fit_data(
    store: MeasurementStore,
    target: str,
    metric: str = "latency_ms",
    *,
    space: str = "nb201",
    include_flagged: bool = False,
    model_config_key: str | None = None,
) -> FitData:
    """The values a predictor fits for a store target (a configuration key, a device id with
    one configuration, or an external device): ok measurements, flagged ones left out unless
    ``include_flagged`` (reference architectures always kept), with the counts of what was
    left out. Raises the store's :class:`~hilnas.pipeline.store.TargetNotFoundError`."""
    if metric not in METRICS:
        raise PredictorError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
    resolved = store.resolve_target(target)
    get = store.latency_table if metric == "latency_ms" else store.energy_table
    table = get(resolved, space, model_config_key=model_config_key, include_flagged=include_flagged)
    if include_flagged:
        return FitData(resolved, metric, table, include_flagged=True)
    ex = store.quality_exclusions(resolved, space, metric, model_config_key=model_config_key)
    return FitData(
        resolved,
        metric,
        table,
        excluded=ex.excluded,
        kept_references=ex.kept_references,
        by_quality=ex.by_quality,
        kept_flagged=ex.kept_flagged,
    )


def target_embedding(
    name: str,
    metric: str,
    store: MeasurementStore | None = None,
    *,
    include_flagged: bool = False,
):
    """``(embedding, imputed)`` of a target: :func:`~hilnas.pipeline.predictors.embedding_for`,
    or, for a store target lacking some reference architectures, :func:`complete_references`
    (``imputed`` is None when nothing was imputed). Store measurements flagged ``noisy`` or
    ``interfered`` are left out unless ``include_flagged`` (:func:`store_fit_data` counts
    them)."""
    from hilnas.pipeline.predictors import embedding_for, embedding_from_table, reference_targets

    if include_flagged and name not in reference_targets(metric):
        own = store is None
        if own:
            from hilnas.pipeline.store import MeasurementStore

            store = MeasurementStore(read_only=True)
        try:
            data = store_fit_data(store, name, metric, include_flagged=True)
        except LookupError:
            data = None  # not a store target: the usual lookup says why
        finally:
            if own:
                store.close()
        if data is not None and data.table:
            network = "pruned" if "/" in data.target else "unknown"
            try:
                emb = embedding_from_table(
                    data.target, metric, data.table, source="store", network=network
                )
                return emb, None
            except MissingReferenceError:
                return complete_references(data.target, metric, data.table)
    try:
        emb = embedding_for(name, metric, store)
    except MissingReferenceError:
        emb = None
    if emb is not None and emb.source != "store":
        return emb, None
    own = store is None
    if own:
        from hilnas.pipeline.store import MeasurementStore

        store = MeasurementStore(read_only=True)
    try:
        target = emb.name if emb is not None else store.resolve_target(name)
        table = (
            store.latency_table(target) if metric == "latency_ms" else store.energy_table(target)
        )
    finally:
        if own:
            store.close()
    if emb is not None:
        from hilnas.pipeline.predictors import _space

        sp = _space()
        have = set()
        for arch in table:
            try:
                have.add(sp.format(sp.parse(arch)))
            except ValueError:
                continue
        if all(a in have for a in reference_strings()):
            return emb, None
    return complete_references(target, metric, table)


def read_arch_list(path: str | os.PathLike[str], space: str = "nb201") -> list[tuple[int, ...]]:
    """Architectures from a file: a CSV with an ``arch`` column, or one architecture per line
    (the space's strings, or indices in an enumerable space). Every bad line is reported at
    once."""
    from hilnas.pipeline.spaces import get_space

    sp = get_space(space)
    p = Path(path)
    if not p.is_file():
        raise PredictorError(f"{p} does not exist or is not a file")
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise PredictorError(f"cannot read {p} as UTF-8 text ({exc})") from exc
    lines = text.splitlines()
    first = lines[0].strip() if lines else ""
    items: list[tuple[int, str]] = []
    if first and not first.startswith("|") and "arch" in [h.strip() for h in first.split(",")]:
        reader = csv.DictReader(io.StringIO(text))
        reader.fieldnames = [h.strip() for h in reader.fieldnames or []]
        items = [(i, (row.get("arch") or "").strip()) for i, row in enumerate(reader, start=2)]
    else:
        items = [(i, line.strip()) for i, line in enumerate(lines, start=1)]
    items = [(i, s) for i, s in items if s and not s.startswith("#")]
    if not items:
        raise PredictorError(f"{p} lists no architectures")
    out, problems = [], []
    for lineno, s in items:
        try:
            out.append(sp.coerce(int(s)) if s.isdigit() and sp.enumerable else sp.parse(s))
        except (ValueError, IndexError) as exc:
            problems.append(f"line {lineno}: {exc}")
    if problems:
        raise PredictorError(f"{p}: " + _listed(problems))
    return out


def predict_target(
    name: str,
    codes: np.ndarray | None = None,
    *,
    metrics: Sequence[str] = METRICS,
    store: MeasurementStore | None = None,
    strict_metrics: Sequence[str] = ("latency_ms",),
    use_device_models: bool = True,
    include_flagged: bool = False,
) -> dict[str, np.ndarray]:
    """Predictions for a target: ``{metric: values}`` over ``codes`` (default: the whole space
    in canonical order). A metric without an embedding is left out unless it is in
    ``strict_metrics`` (then :class:`NoEmbeddingError`).

    A target with a per-device model refit by ``hilnas fit`` on its current measurements uses
    that model; otherwise the meta-predictor conditioned on all its measurements. A store
    target lacking some reference architectures is completed by :func:`complete_references`.
    Flagged store measurements are left out unless ``include_flagged``.
    """
    from hilnas.pipeline import refdata
    from hilnas.pipeline.predictors import load_meta_predictor

    if codes is None:
        codes = refdata.load_nb201().arch_codes.astype(np.int64)
    out: dict[str, np.ndarray] = {}
    for metric in metrics:
        try:
            emb, _ = target_embedding(name, metric, store, include_flagged=include_flagged)
        except NoEmbeddingError:
            if metric in strict_metrics:
                raise
            continue
        model = None
        if use_device_models:
            from hilnas.pipeline.predictors.device import load_device_predictor

            model = load_device_predictor(emb)
        if model is not None:
            out[metric] = model.predict_codes(codes)
        else:
            out[metric] = load_meta_predictor(metric).predict_codes(codes, emb)
    return out


@dataclass(frozen=True)
class PredictionIntervals:
    """Intervals of one metric: ``low``/``high`` (device units) per architecture, at
    ``level``, from a learning predictor whose residual model is ``kind``, fit on
    ``n_extra`` measurements beyond the references (``imputed`` of them missing and imputed)."""

    low: np.ndarray
    high: np.ndarray
    level: float
    kind: str
    n_extra: int
    imputed: int = 0

    @classmethod
    def from_learner(
        cls, learner: Any, codes: np.ndarray, level: float
    ) -> tuple[np.ndarray, PredictionIntervals]:
        """``(point, intervals)`` of a fitted learning predictor over ``codes`` at ``level``;
        each interval contains its point."""
        point, low, high = learner.predict_interval(codes, level)
        band = cls(
            low=np.minimum(low, point),
            high=np.maximum(high, point),
            level=float(level),
            kind=str(learner.kind),
            n_extra=int(learner.n_extra),
        )
        return point, band

    def widened(self, factor: float) -> PredictionIntervals:
        """The same intervals with their log half-width times ``factor`` (>= 1), around each
        interval's geometric centre: how a front's intervals account for selection
        (:data:`hilnas.pipeline.fronts.FRONT_WIDENING`)."""
        f = float(factor)
        if not math.isfinite(f) or f < 1.0:
            raise PredictorError(f"an interval widening factor must be >= 1, got {factor!r}")
        lo, hi = np.asarray(self.low, np.float64), np.asarray(self.high, np.float64)
        centre = np.sqrt(lo * hi)
        half = np.log(hi / lo) / 2.0
        return replace(self, low=centre * np.exp(-f * half), high=centre * np.exp(f * half))


def predict_intervals(
    name: str,
    codes: np.ndarray,
    points: dict[str, np.ndarray],
    *,
    level: float = 0.8,
    store: MeasurementStore | None = None,
    include_flagged: bool = False,
    ensemble: bool = False,
) -> dict[str, PredictionIntervals]:
    """NB201 prediction intervals at ``level`` for every metric of ``points`` (the predictions
    written beside them, ``{metric: values}`` over ``codes``). ``ensemble``: the normalised
    intervals of :func:`~hilnas.pipeline.predictors.learning.learning_predictor` (an option).

    Each comes from a :class:`~hilnas.pipeline.predictors.learning.LearningPredictor` (the
    shipped meta-predictor as its prior) conditioned on the target's reference values (imputed
    ones widen it) and fit on its further measurements (the store's, as ``hilnas predict``
    promises; ``n_extra`` counts them): its split-conformal interval, extended
    where needed to contain the written prediction (so ``low <= point <= high`` always; the
    calibration is the learning predictor's, see :mod:`hilnas.pipeline.predictors.learning`).
    A metric without an embedding is left out.
    """
    from hilnas.pipeline.predictors import load_meta_predictor
    from hilnas.pipeline.predictors.learning import learning_predictor

    out: dict[str, PredictionIntervals] = {}
    c = np.asarray(codes, dtype=np.int64)
    for metric, point in points.items():
        try:
            emb, imp = target_embedding(name, metric, store, include_flagged=include_flagged)
        except NoEmbeddingError:
            continue
        model = learning_predictor(
            "nb201",
            emb.raw,
            meta=load_meta_predictor(metric),
            metric=metric,
            network=emb.network,
            level=level,
            widening=1.0 if imp is None else float(imp.widening),
            ensemble=ensemble,
        ).fit(emb.support_codes, emb.support_values)
        _, lo, hi = model.predict_interval(c, level)
        p = np.asarray(point, dtype=np.float64)
        out[metric] = PredictionIntervals(
            low=np.minimum(lo, p),
            high=np.maximum(hi, p),
            level=float(level),
            kind=str(model.kind),
            n_extra=int(model.n_extra),
            imputed=0 if imp is None else len(imp.imputed),
        )
    return out


def write_predictions_csv(
    path: str | os.PathLike[str] | None,
    codes: np.ndarray,
    predictions: dict[str, np.ndarray],
    space: str = "nb201",
    intervals: dict[str, Any] | None = None,
) -> str | None:
    """Write ``arch,latency_ms[,energy_mj]``, then ``METRIC_lo,METRIC_hi`` for each metric of
    ``intervals`` (objects with ``low``/``high`` arrays, e.g. :class:`PredictionIntervals`);
    returns the text when ``path`` is None."""
    from hilnas.pipeline.spaces import get_space

    sp = get_space(space)
    cols = [m for m in METRICS if m in predictions]
    bands = [m for m in cols if intervals and m in intervals]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["arch", *cols, *(f"{m}_{s}" for m in bands for s in ("lo", "hi"))])
    for i, code in enumerate(np.asarray(codes)):
        band = []
        for m in bands:
            band += [f"{intervals[m].low[i]:.6g}", f"{intervals[m].high[i]:.6g}"]
        w.writerow([sp.format(code), *(f"{predictions[m][i]:.6g}" for m in cols), *band])
    text = buf.getvalue()
    if path is None:
        return text
    from hilnas.pipeline.predictors import _atomic_write

    _atomic_write(Path(path), text.encode())
    return None
