"""Imported (external) devices: their measurements in the store
(:class:`_ExternalDevicesMixin`), the names they may take (:func:`check_external_name`)
and reading their CSV files (:func:`read_external_csv`)."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from hilnas.devices.base import DeviceKind
from hilnas.devices.errors import InvalidInputError
from hilnas.pipeline.store.engine import log
from hilnas.pipeline.store.errors import ExternalNameError, StoreError
from hilnas.pipeline.store.records import ExternalDevice
from hilnas.pipeline.store.rows import _arch_parses, _blank_none, _finite, _now, _space, _utc
from hilnas.pipeline.store.schema import devices_table, external_table
from sqlalchemy import delete, func, insert, select, update

_EXTERNAL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")


class _ExternalDevicesMixin:
    """The external_measurements table: importing a device, listing and reading them."""

    # ----- external devices ---------------------------------------------------------------
    def import_external_device(
        self,
        name: str,
        rows: Iterable[Sequence[Any]],
        space: str = "nb201",
        source: str | os.PathLike[str] | None = None,
        *,
        source_sha256: str | None = None,
        replace: bool = False,
    ) -> int:
        """Register an external device from rows of ``(arch, latency_ms, energy_mj | None)``.

        Every row is validated before anything is written (canonical or parseable architecture,
        finite positive latency, finite non-negative energy or None, no repeated architecture);
        the rows are stored in one transaction (all or nothing). Re-importing the same content is
        a no-op; different content under an existing name needs ``replace=True``. Returns the
        number of rows stored for the device.
        """
        check_external_name(name)
        sp = _space(space)
        clean: list[tuple[str, int | None, float, float | None]] = []
        seen: dict[str, int] = {}
        for i, row in enumerate(rows, start=1):
            row = tuple(row)
            if len(row) not in (2, 3):
                raise InvalidInputError(
                    f"row {i}: expected (arch, latency_ms[, energy_mj]), got {row!r}"
                )
            arch_raw, lat_raw = row[0], row[1]
            energy_raw = row[2] if len(row) == 3 else None
            try:
                code = sp.coerce(arch_raw.strip() if isinstance(arch_raw, str) else arch_raw)
            except (ValueError, IndexError, TypeError) as exc:
                raise InvalidInputError(f"row {i}: {exc}") from None
            arch = sp.format(code)
            if arch in seen:
                raise InvalidInputError(f"row {i}: architecture {arch} repeats row {seen[arch]}")
            seen[arch] = i
            try:
                latency = _finite(_blank_none(lat_raw), "latency_ms", positive=True)
                energy = _finite(_blank_none(energy_raw), "energy_mj", allow_none=True)
            except ValueError as exc:
                raise InvalidInputError(f"row {i} ({arch}): {exc}") from None
            clean.append((arch, sp.index_or_none(code), latency, energy))
        if not clean:
            raise InvalidInputError(f"no measurements to import for {name!r}")
        source_name: str | None = None
        if source is not None:
            p = Path(source)
            source_name = p.name
            if source_sha256 is None and p.is_file():
                source_sha256 = hashlib.sha256(p.read_bytes()).hexdigest()
        if source_sha256 is None:
            blob = "\n".join(f"{a},{lat!r},{en!r}" for a, _, lat, en in sorted(clean))
            source_sha256 = hashlib.sha256(blob.encode()).hexdigest()
        now = _now()
        e = external_table.c
        with self._write() as conn:
            dev = conn.execute(
                select(devices_table.c.kind).where(devices_table.c.id == name)
            ).first()
            if dev is not None and dev.kind != DeviceKind.EXTERNAL.value:
                raise StoreError(
                    f"{name!r} is the id of a measured {dev.kind} device; choose another name"
                )
            old = conn.execute(
                select(e.arch, e.latency_ms, e.energy_mj).where(
                    e.device_name == name, e.space == space
                )
            ).all()
            if old:
                same = {
                    (a, float(lat), None if en is None else float(en)) for a, lat, en in old
                } == {(a, lat, en) for a, _, lat, en in clean}
                if same:
                    return len(old)
                if not replace:
                    raise StoreError(
                        f"external device {name!r} already has {len(old)} {space} measurements "
                        "that differ from these; pass replace=True (--replace) to replace them, "
                        "or choose another name"
                    )
                conn.execute(delete(external_table).where(e.device_name == name, e.space == space))
            conn.execute(
                insert(external_table),
                [
                    {
                        "device_name": name,
                        "space": space,
                        "arch": arch,
                        "arch_index": index,
                        "latency_ms": lat,
                        "energy_mj": en,
                        "source_name": source_name,
                        "source_sha256": source_sha256,
                        "imported_at": now,
                    }
                    for arch, index, lat, en in clean
                ],
            )
            dev_values = {
                "kind": DeviceKind.EXTERNAL.value,
                "name": name,
                "fingerprint": source_sha256,
                "properties": {"source": source_name, "space": space, "rows": len(clean)},
                "aliases": [],
                "energy_counter": None,
                "energy_unavailable_reason": "external device: energy as imported",
                "host": None,
                "last_seen": now,
            }
            if dev is None:
                conn.execute(insert(devices_table).values(id=name, first_seen=now, **dev_values))
            else:
                conn.execute(
                    update(devices_table).where(devices_table.c.id == name).values(**dev_values)
                )
        return len(clean)

    def external_devices(self) -> list[ExternalDevice]:
        e = external_table.c
        with self._read() as conn:
            rows = conn.execute(
                select(
                    e.device_name,
                    e.space,
                    func.count(),
                    func.count(e.energy_mj),
                    func.max(e.source_name),
                    func.max(e.source_sha256),
                    func.max(e.imported_at),
                )
                .group_by(e.device_name, e.space)
                .order_by(e.device_name, e.space)
            ).all()
        return [
            ExternalDevice(
                name=r[0],
                space=r[1],
                count=int(r[2]),
                with_energy=int(r[3]),
                source_name=r[4],
                source_sha256=r[5],
                imported_at=_utc(r[6]),
            )
            for r in rows
        ]

    def external_measurements(
        self, name: str, space: str = "nb201"
    ) -> list[tuple[str, float, float | None]]:
        e = external_table.c
        with self._read() as conn:
            rows = conn.execute(
                select(e.arch, e.latency_ms, e.energy_mj)
                .where(e.device_name == name, e.space == space)
                .order_by(e.id)
            ).all()
        good = [
            (a, float(lat), None if en is None else float(en))
            for a, lat, en in rows
            if _arch_parses(space, a)
        ]
        if len(good) < len(rows):
            self._warn_damaged(len(rows) - len(good), "imported measurements")
        return good


# ----------------------------------------------------------------------------------------------
# names of imported devices
# ----------------------------------------------------------------------------------------------
#: ``cpu``, ``cpu0``, ``gpu``, ``gpu3`` and local ids ``cpu-1a2b3c4d`` / ``gpu-...``: these mean
#: a device of *this* machine to ``hilnas profile``; an imported device may not shadow them.
_LOCAL_ALIAS_RE = re.compile(r"^(cpu|gpu)(\d+|-[0-9a-f]{8})?$", re.IGNORECASE)


def _reference_device_names() -> tuple[str, ...]:
    """Devices of the shipped NB201 reference data (latency and energy), e.g. ``gold_6226``."""
    try:
        from hilnas.pipeline.refdata import load_nb201

        ref = load_nb201()
    except Exception as exc:  # noqa: BLE001 - a missing data file only narrows the check
        log.debug("reference data unavailable for the name check: %s", exc)
        return ()
    return tuple(ref.latency_devices) + tuple(ref.energy_devices)


def _local_device_names() -> set[str]:
    """Ids and aliases of the devices discovered on this machine (discovery never raises)."""
    try:
        from hilnas.devices import discover

        names: set[str] = set()
        for d in discover():
            names.add(d.id.lower())
            names.update(a.lower() for a in d.aliases)
        return names
    except Exception as exc:  # noqa: BLE001 - discovery problems only narrow the check
        log.debug("device discovery failed during the name check: %s", exc)
        return set()


def _free_name(name: str, taken: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.\-]", "_", name)[:80].strip("_.-") or "device"
    for suffix in ("_ext", "_imported", "_csv"):
        candidate = f"{stem}{suffix}"
        if candidate.lower() not in taken:
            return candidate
    return f"{stem}_ext2"  # pragma: no cover - every suffix taken


def check_external_name(name: object) -> str:
    """Return ``name`` if it can name an imported device, else raise :class:`ExternalNameError`.

    Refused: malformed names, aliases and ids of local devices (``cpu``, ``gpu0``,
    ``cpu-1a2b3c4d``...), the reference devices of the shipped data (``gold_6226``...) and
    configuration keys (``cpu-1a2b3c4d/cpu/t1/b1``): each of those already means another
    device to ``profile``, ``predict`` or ``measurements export``. The message names a free
    alternative.
    """
    if not isinstance(name, str) or not name.strip():
        raise ExternalNameError("an imported device needs a name, e.g. jetson_nano")
    refs = _reference_device_names()
    taken = {r.lower() for r in refs} | _local_device_names()
    if "/" in name:
        alt = _free_name(name.replace("/", "_"), taken)
        raise ExternalNameError(
            f"{name!r} looks like a device configuration key (it contains '/'); choose another "
            f"name, a plain one, for the imported device, e.g. {alt!r}"
        )
    if not _EXTERNAL_NAME_RE.match(name):
        raise ExternalNameError(
            f"external device name {name!r} must be 1-100 letters, digits, '_', '.', '-' "
            "(starting with a letter or digit), e.g. 'jetson_nano'"
        )
    low = name.lower()
    if _LOCAL_ALIAS_RE.match(name) or low in _local_device_names():
        raise ExternalNameError(
            f"{name!r} names a local device of this machine (`hilnas profile --device {name}` "
            f"measures it); choose another name for the imported device, e.g. "
            f"{_free_name(name, taken)!r}"
        )
    if low in {r.lower() for r in refs}:
        raise ExternalNameError(
            f"{name!r} is a reference device of the shipped NB201 data; choose another name for "
            f"the imported device, e.g. {_free_name(name, taken)!r}"
        )
    return name


def read_external_csv(path: str | os.PathLike[str]) -> list[tuple[str, str, str | None]]:
    """Rows ``(arch, latency_ms, energy_mj | None)`` of a CSV with columns ``arch``,
    ``latency_ms`` and optionally ``energy_mj`` (values are validated on import)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"cannot read {p} ({exc.strerror or exc})") from exc
    try:
        reader = csv.DictReader(io.StringIO(raw.decode("utf-8-sig")))
        header = [h.strip() for h in (reader.fieldnames or [])]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InvalidInputError(f"{p} is not a UTF-8 CSV file ({exc})") from exc
    missing = [c for c in ("arch", "latency_ms") if c not in header]
    if missing:
        raise InvalidInputError(
            f"{p} lacks the column(s) {', '.join(missing)}; a device CSV has the columns arch, "
            f"latency_ms and optionally energy_mj (found: {', '.join(header) or 'none'})"
        )
    reader.fieldnames = header
    out = []
    try:
        for row in reader:
            energy = row.get("energy_mj")
            arch, latency = row["arch"], row["latency_ms"]
            if arch is None or latency is None:
                raise InvalidInputError(
                    f"{p} line {reader.line_num}: too few fields; each line needs arch,latency_ms"
                    "[,energy_mj]"
                )
            out.append((arch, latency, energy if energy not in ("", None) else None))
    except csv.Error as exc:  # raised while reading the line after the last one counted
        raise InvalidInputError(
            f"{p} line {reader.line_num + 1}: not a valid device CSV line ({exc}; an architecture "
            "string and numbers are far shorter, or a quote is unbalanced); fix that line"
        ) from exc
    return out
