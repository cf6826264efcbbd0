"""Measurements in the store (:class:`_MeasurementsMixin`): adding one (idempotent, a
failure never replaces an ok row), quality flags, deleting, reading and counting them, the
failed attempts kept beside ok rows, and per-configuration summaries."""

from __future__ import annotations

import socket
from collections.abc import Iterable
from typing import Any

from hilnas.devices.errors import InvalidInputError
from hilnas.pipeline.store.engine import log
from hilnas.pipeline.store.errors import StoreError
from hilnas.pipeline.store.records import (
    AddResult,
    ConfigSummary,
    MeasurementKey,
    MeasurementRecord,
)
from hilnas.pipeline.store.rows import (
    _INSERT_MEASUREMENT,
    _SELECT_ID_BY_KEY,
    _attempt_values,
    _case_count,
    _checked_record,
    _finite,
    _key_clause,
    _key_params,
    _measurement_filters,
    _now,
    _quality_values,
    _record_from_row,
    _space,
    _utc,
    hilnas_version,
)
from hilnas.pipeline.store.schema import (
    QUALITY_COLUMNS,
    QUALITY_VALUES,
    attempts_table,
    devices_table,
    measurements_table,
)
from hilnas.profilers.base import EnergyMethod, Measurement, MeasurementStatus
from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy import exc as sa_exc


class _MeasurementsMixin:
    """The measurements and measurement_attempts tables: writing, reading, counting."""

    _has_attempts: bool
    _has_quality: bool

    # ----- measurements: writing --------------------------------------------------------
    def add_measurement(
        self,
        key: MeasurementKey,
        measurement: Measurement,
        *,
        arch_index: int | None = None,
        onnx_sha256: str | None = None,
        exporter: str | None = None,
        export_s: float | None = None,
        device_fingerprint: str | None = None,
        host: str | None = None,
        force: bool = False,
        quality: Any | None = None,
    ) -> AddResult:
        """Store one measurement under ``key`` in its own transaction (idempotent; see :mod:`hilnas.pipeline.store`).

        With ``force=True`` an existing row is replaced, except that a *failed* measurement
        never replaces an ok one: the ok row is kept, the failed attempt is recorded in the
        attempts table (:meth:`attempts`) and :attr:`AddResult.KEPT` is returned. A full disk
        raises :class:`StoreFullError` (a :class:`~hilnas.devices.errors.ResourceError`).

        The device must have been registered with :meth:`upsert_device`. ``key`` and the
        measurement's own provenance (provider, threads, batch size, warm-up, repetitions) must
        agree, and an ok measurement needs a positive finite median latency; ``ValueError``
        otherwise, and nothing is written.

        ``quality`` (a :class:`~hilnas.profilers.quality.MeasurementQuality`, or None: not
        assessed) is stored with the row: the flag, its reason and the evidence.
        """
        values = self._row_values(key, measurement, arch_index=arch_index)
        values.update(_quality_values(quality))
        values.update(
            onnx_sha256=onnx_sha256,
            exporter=exporter,
            export_s=_finite(export_s, "export_s", allow_none=True),
            host=host if host is not None else socket.gethostname(),
            hilnas_version=hilnas_version(),
        )
        for attempt in (0, 1):
            try:
                with self._write() as conn:
                    dev = conn.execute(
                        select(devices_table.c.fingerprint, devices_table.c.kind).where(
                            devices_table.c.id == key.device_id
                        )
                    ).first()
                    if dev is None:
                        raise StoreError(
                            f"device {key.device_id!r} is not registered in {self.display_url}; "
                            "call upsert_device(info) before adding its measurements"
                        )
                    values["device_fingerprint"] = device_fingerprint or dev.fingerprint
                    values["created_at"] = _now()
                    existing = conn.execute(_SELECT_ID_BY_KEY, _key_params(key)).first()
                    if existing is not None and not force:
                        return AddResult.EXISTS
                    if (
                        existing is not None
                        and existing.status == MeasurementStatus.OK.value
                        and values["status"] != MeasurementStatus.OK.value
                    ):
                        # never trade a good measurement for a failure: keep it, log the try
                        conn.execute(
                            insert(attempts_table),
                            _attempt_values(values, existing.id, self._has_attempts),
                        )
                        return AddResult.KEPT
                    if existing is not None:
                        conn.execute(
                            delete(measurements_table).where(measurements_table.c.id == existing.id)
                        )
                    conn.execute(_INSERT_MEASUREMENT, values)
                    return AddResult.REPLACED if existing is not None else AddResult.INSERTED
            except sa_exc.IntegrityError:
                # Another writer stored the same key between our check and our insert.
                if not force:
                    return AddResult.EXISTS
                if attempt:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _row_values(
        self, key: MeasurementKey, m: Measurement, *, arch_index: int | None
    ) -> dict[str, Any]:
        space = _space(key.space)
        code = space.parse(key.arch)
        if space.format(code) != key.arch:
            raise ValueError(
                f"key.arch must be the canonical string {space.format(code)!r}, got {key.arch!r}"
            )
        if arch_index is None:
            arch_index = space.index_or_none(code)
        mismatched = [
            f"{name}: key {kv!r} != measurement {mv!r}"
            for name, kv, mv in (
                ("execution_provider", key.execution_provider, m.execution_provider),
                ("threads", key.threads, m.intra_op_threads),
                ("batch_size", key.batch_size, m.batch_size),
                ("warmup", key.warmup, m.warmup),
                ("repetitions", key.repetitions, m.repetitions),
            )
            if kv != mv
        ]
        if mismatched:
            raise ValueError("measurement does not match its key: " + "; ".join(mismatched))
        status = MeasurementStatus(m.status)
        method = EnergyMethod(m.energy_method)
        if status is MeasurementStatus.OK:
            _finite(m.latency_ms_median, "latency_ms_median", positive=True)
            if method is EnergyMethod.UNKNOWN and m.energy_mj is not None:
                raise ValueError("energy_mj must be None when energy_method is unknown")
            if m.energy_mj is not None:
                _finite(m.energy_mj, "energy_mj")
            elif method is not EnergyMethod.UNKNOWN:
                raise ValueError(f"energy_mj is None but energy_method is {method.value}")
        elif not (m.error or "").strip():
            raise InvalidInputError(
                "a failed measurement needs a non-blank error message saying what went wrong"
            )
        return {
            "space": key.space,
            "arch": key.arch,
            "arch_index": arch_index,
            "model_config_key": key.model_config_key,
            "opset": int(key.opset),
            "device_id": key.device_id,
            "config_key": key.config_key,
            "execution_provider": key.execution_provider,
            "intra_op_threads": int(key.threads),
            "batch_size": int(key.batch_size),
            "warmup": int(key.warmup),
            "repetitions": int(key.repetitions),
            "status": status.value,
            "error": m.error,
            "latency_ms_median": m.latency_ms_median,
            "latency_ms_mean": m.latency_ms_mean,
            "latency_ms_p90": m.latency_ms_p90,
            "latency_ms_iqr": m.latency_ms_iqr,
            "latency_ms_cv": m.latency_ms_cv,
            "latency_ms_min": m.latency_ms_min,
            "energy_mj": m.energy_mj,
            "energy_method": method.value,
            "energy_reason": m.energy_reason,
            "peak_memory_mb": m.peak_memory_mb,
            "memory_method": m.memory_method,
            "onnxruntime_version": m.onnxruntime_version,
            "session_create_s": m.session_create_s,
            "timed_s": m.timed_s,
            "wall_s": float(m.wall_s),
            "started_at": m.started_at,
            "finished_at": m.finished_at,
        }

    def set_quality(self, key: MeasurementKey, quality: Any) -> bool:
        """Replace the quality flag and evidence of the stored row of ``key`` (e.g. when a
        later sentinel check shows that conditions changed); returns whether a row was there.
        The measured values are never touched."""
        values = _quality_values(quality)
        with self._write() as conn:
            done = conn.execute(
                update(measurements_table).where(_key_clause(key)).values(**values)
            ).rowcount
        return bool(done)

    def delete_measurements(self, *, device_id: str, config_key: str | None = None) -> int:
        """Remove a device's measurements (all, or one configuration's); returns the count."""
        cond = measurements_table.c.device_id == device_id
        if config_key is not None:
            cond = and_(cond, measurements_table.c.config_key == config_key)
        with self._write() as conn:
            return conn.execute(delete(measurements_table).where(cond)).rowcount or 0

    # ----- measurements: reading --------------------------------------------------------
    def has_measurement(self, key: MeasurementKey, *, ok_only: bool = False) -> bool:
        """Whether ``key`` is stored (any status, or only ``ok`` with ``ok_only``)."""
        status = self.measurement_status(key)
        if status is None:
            return False
        return status is MeasurementStatus.OK or not ok_only

    def measurement_status(self, key: MeasurementKey) -> MeasurementStatus | None:
        with self._read() as conn:
            row = conn.execute(select(measurements_table.c.status).where(_key_clause(key))).first()
        return None if row is None else MeasurementStatus(row[0])

    def statuses(self, keys: Iterable[MeasurementKey]) -> dict[MeasurementKey, MeasurementStatus]:
        """Status of each stored key among ``keys`` (absent keys are left out); batched."""
        groups: dict[tuple, dict[str, MeasurementKey]] = {}
        for k in keys:
            groups.setdefault(k.settings(), {})[k.arch] = k
        out: dict[MeasurementKey, MeasurementStatus] = {}
        t = measurements_table.c
        with self._read() as conn:
            for by_arch in groups.values():
                sample = next(iter(by_arch.values()))
                base = _key_clause(sample, with_arch=False)
                archs = list(by_arch)
                for i in range(0, len(archs), 500):
                    chunk = archs[i : i + 500]
                    for arch, status in conn.execute(
                        select(t.arch, t.status).where(base, t.arch.in_(chunk))
                    ):
                        out[by_arch[arch]] = MeasurementStatus(status)
        return out

    def _select_measurements(self) -> Any:
        """``SELECT`` of the measurement columns this store has (a read-only open of a store
        before schema 3 lacks the quality columns; its records read them as None)."""
        if self._has_quality:
            return select(measurements_table)
        return select(*(c for c in measurements_table.c if c.name not in QUALITY_COLUMNS))

    def get_measurement(self, key: MeasurementKey) -> MeasurementRecord | None:
        with self._read() as conn:
            row = conn.execute(self._select_measurements().where(_key_clause(key))).first()
        return None if row is None else _record_from_row(row)

    def measurements(
        self,
        *,
        device_id: str | None = None,
        config_key: str | None = None,
        space: str | None = None,
        status: MeasurementStatus | str | None = None,
        model_config_key: str | None = None,
    ) -> list[MeasurementRecord]:
        """Stored measurements matching the filters, oldest first."""
        t = measurements_table.c
        conds = _measurement_filters(
            device_id=device_id,
            config_key=config_key,
            space=space,
            status=status,
            model_config_key=model_config_key,
        )
        with self._read() as conn:
            rows = conn.execute(
                self._select_measurements().where(*conds).order_by(t.created_at, t.id)
            ).all()
        out: list[MeasurementRecord] = []
        damaged = 0
        for r in rows:
            rec = _checked_record(r)
            if rec is None:
                damaged += 1
            else:
                out.append(rec)
        if damaged:
            self._warn_damaged(damaged, "measurements")
        return out

    def _warn_damaged(self, count: int, what: str) -> None:
        log.warning(
            "skipped %d stored %s whose architecture or values do not parse for their space: "
            "the store %s is damaged; restore it from a backup, or recover it with "
            "`sqlite3 FILE .recover | sqlite3 recovered.db`",
            count,
            what,
            self.path or self.display_url,
        )

    # ----- failed attempts beside kept rows -------------------------------------------------
    def attempts(
        self, *, config_key: str | None = None, device_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Failed re-measurements whose key kept its earlier ok row, oldest first (plain dicts
        with the key columns, ``status``, ``error``, ``measurement_id`` and timestamps)."""
        if not self._has_attempts:
            return []
        a = attempts_table.c
        conds = []
        if config_key is not None:
            conds.append(a.config_key == config_key)
        if device_id is not None:
            conds.append(a.device_id == device_id)
        with self._read() as conn:
            rows = conn.execute(select(attempts_table).where(*conds).order_by(a.id)).all()
        out = []
        for r in rows:
            d = dict(r._mapping)
            d["created_at"] = _utc(d["created_at"])
            out.append(d)
        return out

    def count_measurements(
        self,
        *,
        device_id: str | None = None,
        config_key: str | None = None,
        status: MeasurementStatus | str | None = None,
    ) -> int:
        conds = _measurement_filters(device_id=device_id, config_key=config_key, status=status)
        with self._read() as conn:
            return int(
                conn.execute(
                    select(func.count()).select_from(measurements_table).where(*conds)
                ).scalar_one()
            )

    def config_keys(self, device_id: str | None = None, *, ok_only: bool = True) -> list[str]:
        """Device configuration keys that have measurements (ok ones by default)."""
        t = measurements_table.c
        conds = []
        if device_id is not None:
            conds.append(t.device_id == device_id)
        if ok_only:
            conds.append(t.status == MeasurementStatus.OK.value)
        with self._read() as conn:
            return sorted(conn.execute(select(t.config_key).where(*conds).distinct()).scalars())

    def config_summaries(self) -> list[ConfigSummary]:
        """Counts per (configuration, space, model config, opset, warm-up, repetitions)."""
        t = measurements_table.c
        group = (
            t.config_key,
            t.device_id,
            t.space,
            t.model_config_key,
            t.opset,
            t.warmup,
            t.repetitions,
        )
        ok = func.sum(_case_count(t.status == MeasurementStatus.OK.value))
        failed = func.sum(_case_count(t.status == MeasurementStatus.FAILED.value))
        energy = func.sum(_case_count(t.energy_mj.is_not(None)))
        if self._has_quality:
            bad = func.sum(
                _case_count(
                    and_(t.status == MeasurementStatus.OK.value, t.quality.in_(QUALITY_VALUES[1:]))
                )
            )
        else:
            bad = func.sum(_case_count(t.id < 0))  # an old store: nothing was assessed
        with self._read() as conn:
            rows = conn.execute(
                select(*group, ok, failed, energy, func.max(t.created_at), bad)
                .group_by(*group)
                .order_by(*group)
            ).all()
            methods: dict[tuple, set[str]] = {}
            for r in conn.execute(
                select(*group, t.energy_method).where(t.status == "ok").distinct()
            ):
                methods.setdefault(tuple(r[:7]), set()).add(r[7])
        return [
            ConfigSummary(
                config_key=r[0],
                device_id=r[1],
                space=r[2],
                model_config_key=r[3],
                opset=int(r[4]),
                warmup=int(r[5]),
                repetitions=int(r[6]),
                ok=int(r[7] or 0),
                failed=int(r[8] or 0),
                with_energy=int(r[9] or 0),
                energy_methods=tuple(sorted(methods.get(tuple(r[:7]), ()))),
                last_created_at=_utc(r[10]),
                flagged=int(r[11] or 0),
            )
            for r in rows
        ]
