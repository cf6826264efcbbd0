"""The store's records: measurement keys and rows, imported devices, per-configuration
counts, what the quality filter left out, and what an add did."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from enum import Enum
from typing import Any

from hilnas.devices.base import DeviceConfig
from hilnas.pipeline.store.schema import QUALITY_COLUMNS
from hilnas.profilers.base import Measurement, MeasurementStatus


class AddResult(str, Enum):
    """What :meth:`MeasurementStore.add_measurement` did."""

    INSERTED = "inserted"
    REPLACED = "replaced"  # force=True over an existing row
    EXISTS = "exists"  # the key was already stored; nothing changed
    KEPT = "kept"  # force=True with a failed re-measurement: the good row stays, attempt logged


# ----------------------------------------------------------------------------------------------
# records
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class MeasurementKey:
    """What makes two measurements "the same": measured once unless forced.

    ``arch`` is the space's canonical string (``space.format(code)``).
    """

    space: str
    arch: str
    model_config_key: str
    opset: int
    device_id: str
    execution_provider: str
    threads: int
    batch_size: int
    warmup: int
    repetitions: int

    @property
    def config_key(self) -> str:
        """The device configuration this key belongs to, e.g. ``cpu-1a2b3c4d/cpu/t1/b1``."""
        return DeviceConfig(
            self.device_id, self.execution_provider, self.threads, self.batch_size
        ).key

    def settings(self) -> tuple:
        """The key without the architecture (one profiling run shares it)."""
        return (
            self.space,
            self.model_config_key,
            self.opset,
            self.device_id,
            self.execution_provider,
            self.threads,
            self.batch_size,
            self.warmup,
            self.repetitions,
        )


@dataclass(frozen=True, slots=True)
class MeasurementRecord:
    """One stored measurement with its provenance."""

    id: int
    key: MeasurementKey
    measurement: Measurement
    arch_index: int | None
    config_key: str
    device_fingerprint: str
    onnx_sha256: str | None
    exporter: str | None
    export_s: float | None
    host: str | None
    hilnas_version: str | None
    created_at: datetime
    # measurement quality (schema 3); None: not assessed (older rows)
    quality: str | None = None
    quality_reason: str | None = None
    load_1m: float | None = None
    other_cpu_cores: float | None = None
    sentinel_drift: float | None = None

    @property
    def status(self) -> MeasurementStatus:
        return self.measurement.status

    @property
    def flagged(self) -> bool:
        """True when the row was assessed and found ``noisy`` or ``interfered``."""
        return self.quality is not None and self.quality != "ok"

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self.key, f.name) for f in fields(MeasurementKey)}
        d.update(self.measurement.to_dict())
        d.update(
            id=self.id,
            arch_index=self.arch_index,
            config_key=self.config_key,
            device_fingerprint=self.device_fingerprint,
            onnx_sha256=self.onnx_sha256,
            exporter=self.exporter,
            export_s=self.export_s,
            host=self.host,
            hilnas_version=self.hilnas_version,
            created_at=self.created_at.isoformat(),
            **{name: getattr(self, name) for name in QUALITY_COLUMNS},
        )
        return d


@dataclass(frozen=True, slots=True)
class ExternalDevice:
    """A device known only from imported measurements (a CSV from another tool or benchmark)."""

    name: str
    space: str
    count: int
    with_energy: int
    source_name: str | None
    source_sha256: str | None
    imported_at: datetime | None


@dataclass(frozen=True, slots=True)
class ConfigSummary:
    """Counts for one device configuration (used by ``hilnas measurements list``)."""

    config_key: str
    device_id: str
    space: str
    model_config_key: str
    opset: int
    warmup: int
    repetitions: int
    ok: int
    failed: int
    with_energy: int
    energy_methods: tuple[str, ...]
    last_created_at: datetime | None
    flagged: int = 0  # ok rows whose quality is noisy or interfered


@dataclass(frozen=True, slots=True)
class QualityExclusions:
    """What the quality filter did to one fit table (see :meth:`MeasurementStore.latency_table`).

    ``excluded``: flagged rows left out; ``kept_references``: flagged rows of reference
    architectures kept (the embedding needs them); ``by_quality``: excluded rows per flag.
    """

    excluded: int = 0
    kept_references: int = 0
    by_quality: tuple[tuple[str, int], ...] = ()
    kept_flagged: int = 0  # flagged rows kept because they were the majority (see FLAGGED_KEEP)


#: The quality filter of a fit table leaves flagged rows out only while they are at most this
#: share of the target's non-reference rows: on a machine that was busy for a whole run every row
#: is flagged, and dropping them all would leave nothing to fit (they are then kept, counted in
#: :attr:`QualityExclusions.kept_flagged`, and the report says to re-measure on a quiet machine).
FLAGGED_KEEP = 0.5
