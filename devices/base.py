"""Device records: what hardware is there and under which settings it is measured.

No torch, onnx or prefect here: this layer is installed on measurement agents.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class DeviceKind(str, Enum):
    CPU = "cpu"
    GPU = "gpu"
    EXTERNAL = "external"  # registered from a CSV of measurements made elsewhere


class DeviceError(RuntimeError):
    """Base class of device-layer errors (vendor errors are translated into these)."""


class DeviceNotFoundError(DeviceError, LookupError):
    """A device id that discovery (or the store) does not know."""


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """One physical device.

    ``id`` is stable across runs on the same host (``cpu-<8 hex>``, ``gpu-<8 hex>``, or the name
    given to an external device); ``fingerprint`` is a sha256 over the hardware facts that
    affect speed (model, cores, memory, driver), so a changed machine is noticed.
    ``energy_counter`` names the counter that can measure energy (``"rapl"``, ``"nvml"``) or is
    ``None`` with ``energy_unavailable_reason`` saying why.
    """

    id: str
    kind: DeviceKind
    name: str
    fingerprint: str
    properties: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    energy_counter: str | None = None
    energy_unavailable_reason: str | None = None
    aliases: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind.value,
            "name": self.name,
            "fingerprint": self.fingerprint,
            "properties": self.properties,
            "energy_counter": self.energy_counter,
            "energy_unavailable_reason": self.energy_unavailable_reason,
            "aliases": list(self.aliases),
        }


def fingerprint_of(facts: dict[str, Any]) -> str:
    """Stable sha256 hex digest of a JSON-serialisable dict of hardware facts."""
    blob = json.dumps(facts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """A device under fixed measurement settings (HELP's titanx_1 vs titanx_32).

    Measurements of different configurations are different "devices" for the predictors.
    """

    device_id: str
    execution_provider: str = "CPUExecutionProvider"
    intra_op_threads: int = 1
    batch_size: int = 1

    def __post_init__(self) -> None:
        if self.intra_op_threads < 0:
            raise ValueError(f"intra_op_threads must be >= 0 (0 = ORT default), got {self.intra_op_threads}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    @property
    def key(self) -> str:
        """Name of this configuration, e.g. ``cpu-1a2b3c4d/cpu/t1/b1``."""
        ep = self.execution_provider.replace("ExecutionProvider", "").lower()
        return f"{self.device_id}/{ep}/t{self.intra_op_threads}/b{self.batch_size}"
