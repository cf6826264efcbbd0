"""Device records: what hardware is there and under which settings it is measured.

No torch, onnx or prefect here: this layer is installed on measurement agents.
"""

from __future__ import annotations

import hashlib
import json
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

from hilnas.devices.errors import HilnasError, InvalidInputError, NotFoundError, PreconditionError


class DeviceKind(str, Enum):
    CPU = "cpu"
    GPU = "gpu"
    EXTERNAL = "external"  # registered from a CSV of measurements made elsewhere


class DeviceError(HilnasError, RuntimeError):
    """Base class of device-layer errors (vendor errors are translated into these)."""


class DeviceNotFoundError(DeviceError, NotFoundError):
    """A device id that discovery (or the store) does not know."""


class DeviceLibraryError(DeviceError, PreconditionError):
    """A vendor library (e.g. nvidia-ml-py / libnvidia-ml) is missing or failed to initialise."""


class DeviceNotSupportedError(DeviceError, PreconditionError):
    """The device lacks a feature that was asked for (e.g. a total-energy counter)."""


class DevicePermissionError(DeviceError, PreconditionError, PermissionError):
    """The device or counter exists but this process may not read it."""


class ExecutionProviderUnavailableError(DeviceError, PreconditionError):
    """ONNX Runtime in this environment cannot run on the device (e.g. no CUDAExecutionProvider)."""


class ExternalDeviceError(DeviceError, PreconditionError):
    """An imported device (measured elsewhere) was asked to run something on this machine."""


# ``cpu-1a2b3c4d`` / ``gpu-1a2b3c4d``: the ids discovery gives local devices.
LOCAL_ID_PATTERN = re.compile(r"^(cpu|gpu)-[0-9a-f]{8}$")


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


def local_device_id(kind: DeviceKind, *parts: Any) -> str:
    """``<kind>-<8 hex>``: the first 8 hex digits of sha256 over ``parts`` joined by ``|``."""
    if kind not in (DeviceKind.CPU, DeviceKind.GPU):
        raise ValueError(f"local device ids exist for cpu and gpu only, not {kind.value!r}")
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()
    return f"{kind.value}-{digest[:8]}"


@dataclass(frozen=True, slots=True)
class Discovery:
    """What one backend found: the devices, and notes saying why some are missing."""

    devices: tuple[DeviceInfo, ...] = ()
    notes: tuple[str, ...] = ()


class DeviceBackend(ABC):
    """Finds the local devices of one kind (one implementation per vendor).

    Promises every implementation keeps (checked by ``tests/devices/test_conformance.py``):

    - :meth:`probe` never raises for missing hardware, a missing vendor library or a vendor
      error: it returns fewer devices and a note saying why (also logged at INFO).
    - Every :class:`DeviceInfo` it returns has an id matching :data:`LOCAL_ID_PATTERN` whose
      prefix is its kind, the same id and fingerprint on every call on the same machine, a
      non-empty name, JSON-serialisable ``properties``, at least one alias, and either
      ``energy_counter`` (``"rapl"`` / ``"nvml"``) or ``energy_unavailable_reason`` (never both).
    - Vendor errors are translated into :class:`DeviceError` subclasses in one place per vendor.
    """

    kind: ClassVar[DeviceKind]

    @abstractmethod
    def probe(self) -> Discovery:
        """Discover the devices (see the class promises)."""

    def discover(self) -> list[DeviceInfo]:
        return list(self.probe().devices)

    @staticmethod
    def supports_energy(info: DeviceInfo) -> bool:
        """Whether discovery found a readable energy counter for ``info``."""
        return info.energy_counter is not None


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
            raise InvalidInputError(
                f"intra_op_threads must be >= 0 (0 = ORT default), got {self.intra_op_threads}; "
                "use --threads 0 or more"
            )
        if self.batch_size < 1:
            raise InvalidInputError(
                f"batch_size must be >= 1, got {self.batch_size}; use --batch-size 1 or more"
            )

    @property
    def key(self) -> str:
        """Name of this configuration, e.g. ``cpu-1a2b3c4d/cpu/t1/b1``."""
        ep = self.execution_provider.replace("ExecutionProvider", "").lower()
        return f"{self.device_id}/{ep}/t{self.intra_op_threads}/b{self.batch_size}"
