"""Measured devices in the store (:class:`_DevicesMixin`): register, refresh, look up."""

from __future__ import annotations

import socket
from datetime import datetime

from hilnas.devices.base import DeviceInfo, DeviceKind, DeviceNotFoundError
from hilnas.pipeline.store.engine import log
from hilnas.pipeline.store.errors import StoreError
from hilnas.pipeline.store.rows import _device_from_row, _jsonable, _now, _utc
from hilnas.pipeline.store.schema import devices_table
from sqlalchemy import exc as sa_exc
from sqlalchemy import insert, select, update


class _DevicesMixin:
    """The devices table: :meth:`upsert_device`, :meth:`device`, :meth:`devices`."""

    # ----- devices ----------------------------------------------------------------------
    def upsert_device(self, info: DeviceInfo, *, host: str | None = None) -> None:
        """Register a device or refresh its facts (``first_seen`` is kept)."""
        now = _now()
        values = {
            "kind": DeviceKind(info.kind).value,
            "name": info.name,
            "fingerprint": info.fingerprint,
            "properties": _jsonable(info.properties),
            "aliases": list(info.aliases),
            "energy_counter": info.energy_counter,
            "energy_unavailable_reason": info.energy_unavailable_reason,
            "host": host if host is not None else socket.gethostname(),
            "last_seen": now,
        }
        for attempt in (0, 1):
            try:
                with self._write() as conn:
                    row = conn.execute(
                        select(devices_table.c.fingerprint, devices_table.c.kind).where(
                            devices_table.c.id == info.id
                        )
                    ).first()
                    if row is None:
                        conn.execute(
                            insert(devices_table).values(id=info.id, first_seen=now, **values)
                        )
                    else:
                        if row.kind != values["kind"]:
                            raise StoreError(
                                f"device id {info.id!r} is already stored as a {row.kind} device; "
                                "choose another name"
                            )
                        if row.fingerprint != info.fingerprint:
                            log.warning(
                                "device %s changed fingerprint (%s -> %s): its hardware or driver "
                                "changed; new measurements carry the new fingerprint",
                                info.id,
                                row.fingerprint[:12],
                                info.fingerprint[:12],
                            )
                        conn.execute(
                            update(devices_table)
                            .where(devices_table.c.id == info.id)
                            .values(**values)
                        )
                return
            except sa_exc.IntegrityError:
                if attempt:
                    raise

    def device(self, device_id: str) -> DeviceInfo:
        """A stored device; :class:`DeviceNotFoundError` lists the stored ids."""
        with self._read() as conn:
            row = conn.execute(select(devices_table).where(devices_table.c.id == device_id)).first()
        if row is None:
            known = [d.id for d in self.devices()]
            raise DeviceNotFoundError(
                f"device {device_id!r} is not in the store {self.display_url}; stored: "
                f"{', '.join(known) if known else 'none yet'} (`hilnas devices list` shows them)"
            )
        return _device_from_row(row)

    def devices(self) -> list[DeviceInfo]:
        with self._read() as conn:
            rows = conn.execute(select(devices_table).order_by(devices_table.c.id)).all()
        return [_device_from_row(r) for r in rows]

    def device_seen(self, device_id: str) -> tuple[datetime, datetime] | None:
        """``(first_seen, last_seen)`` of a stored device, or None."""
        with self._read() as conn:
            row = conn.execute(
                select(devices_table.c.first_seen, devices_table.c.last_seen).where(
                    devices_table.c.id == device_id
                )
            ).first()
        return None if row is None else (_utc(row[0]), _utc(row[1]))
