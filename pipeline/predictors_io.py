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
from dataclasses import dataclass
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
    text: str, *, source: str = "CSV", require_references: bool = True, space: str = "nb201"
) -> DeviceMeasurements:
    """Validate a device CSV (columns ``arch``, ``latency_ms``, optional ``energy_mj``).

    Rejects: missing columns, malformed or unknown architectures, empty/NaN/infinite/non-positive
    values, an architecture repeated with different values (identical repeats are merged), and
    (with ``require_references``) a table lacking some of the 10 reference architectures, whose
    strings the error lists. Energy, when given for any row, must be given for all 10 references.
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
            problems.append(f"{where} ({arch}): " + ", ".join(bad))
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
    refs = reference_strings() if sp.name == "nb201" else sp.reference_strings()
    if require_references:
        missing = [a for a in refs if a not in values]
        if missing:
            raise MissingReferenceError(
                f"{source} lacks {len(missing)} of the {len(refs)} {sp.name} reference "
                "architectures, so the device "
                f"would have no hardware embedding; nothing was stored. Measure these and add them: "
                + ", ".join(missing),
                missing,
            )
        if any(v[1] is not None for v in values.values()):
            missing_e = [a for a in refs if values[a][1] is None]
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
    )


def read_measurements_csv(
    path: str | os.PathLike[str], *, require_references: bool = True, space: str = "nb201"
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
        text, source=str(p), require_references=require_references, space=space
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
    """Validate a device CSV of ``space`` and store it as an external device (all or nothing)."""
    name = check_device_name(name, space)
    table = read_measurements_csv(path, space=space)
    store.import_external_device(name, table.rows(), space=space, source=path, replace=replace)
    return table


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
) -> dict[str, np.ndarray]:
    """Predictions for a target: ``{metric: values}`` over ``codes`` (default: the whole space
    in canonical order). A metric without an embedding is left out unless it is in
    ``strict_metrics`` (then :class:`NoEmbeddingError`).

    A target with a per-device model refit by ``hilnas fit`` on its current measurements uses
    that model; otherwise the meta-predictor conditioned on all its measurements.
    """
    from hilnas.pipeline import refdata
    from hilnas.pipeline.predictors import embedding_for, load_meta_predictor

    if codes is None:
        codes = refdata.load_nb201().arch_codes.astype(np.int64)
    out: dict[str, np.ndarray] = {}
    for metric in metrics:
        try:
            emb = embedding_for(name, metric, store)
        except NoEmbeddingError:
            if metric in strict_metrics:
                raise
            continue
        model = None
        if use_device_models:
            from hilnas.pipeline.predictors_device import load_device_predictor

            model = load_device_predictor(emb)
        if model is not None:
            out[metric] = model.predict_codes(codes)
        else:
            out[metric] = load_meta_predictor(metric).predict_codes(codes, emb)
    return out


def write_predictions_csv(
    path: str | os.PathLike[str] | None,
    codes: np.ndarray,
    predictions: dict[str, np.ndarray],
    space: str = "nb201",
) -> str | None:
    """Write ``arch,latency_ms[,energy_mj]``; returns the text when ``path`` is None."""
    from hilnas.pipeline.spaces import get_space

    sp = get_space(space)
    cols = [m for m in METRICS if m in predictions]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["arch", *cols])
    for i, code in enumerate(np.asarray(codes)):
        w.writerow([sp.format(code), *(f"{predictions[m][i]:.6g}" for m in cols)])
    text = buf.getvalue()
    if path is None:
        return text
    from hilnas.pipeline.predictors import _atomic_write

    _atomic_write(Path(path), text.encode())
    return None
