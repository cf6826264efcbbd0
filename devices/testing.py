"""Simulated hardware for tests (no GPU and no root needed).

- :class:`FakePowercap`: a directory tree laid out like ``/sys/class/powercap`` with RAPL zones
  whose ``energy_uj`` the test sets; point ``RaplCounter(root)`` / ``CpuBackend(powercap_root=)``
  / ``OrtProfiler(..., powercap_root=)`` at ``.root``. Writes are atomic (rename), so a reader in
  another process never sees a half-written value.
- :class:`FakeNvml`: a stand-in for the ``pynvml`` module with simulated GPUs; pass it as
  ``nvml=`` or install it with ``monkeypatch.setitem(sys.modules, "pynvml", fake)``.

These simulate the vendor interfaces only; they say nothing about real hardware behaviour.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any


class FakePowercap:
    """``<root>/intel-rapl:<n>/{name,energy_uj,max_energy_range_uj}`` plus optional sub-zones."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "intel-rapl").mkdir(exist_ok=True)  # the control-type directory

    def add_zone(
        self,
        index: int,
        name: str = "",
        energy_uj: int = 0,
        max_energy_range_uj: int = 262_143_328_850,
        sub: int | None = None,
    ) -> Path:
        zone_name = f"intel-rapl:{index}" if sub is None else f"intel-rapl:{index}:{sub}"
        zone = self.root / zone_name
        zone.mkdir(exist_ok=True)
        (zone / "name").write_text((name or f"package-{index}") + "\n")
        (zone / "max_energy_range_uj").write_text(f"{max_energy_range_uj}\n")
        self.set(zone_name, energy_uj)
        return zone

    def set(self, zone: str | int, energy_uj: int) -> None:
        zone_dir = self.root / (f"intel-rapl:{zone}" if isinstance(zone, int) else zone)
        tmp = zone_dir / ".energy_uj.tmp"
        tmp.write_text(f"{int(energy_uj)}\n")
        os.replace(tmp, zone_dir / "energy_uj")

    def energy_path(self, zone: int) -> Path:
        return self.root / f"intel-rapl:{zone}" / "energy_uj"


class FakeNVMLError(Exception):
    """Mirrors pynvml.NVMLError: ``.value`` is the NVML return code."""

    def __init__(self, value: int) -> None:
        super().__init__(f"NVML error {value}")
        self.value = value


@dataclass
class FakeGpu:
    name: str = "NVIDIA Simulated H100"
    uuid: str = "GPU-00000000-1111-2222-3333-444444444444"
    memory_total: int = 80 * 2**30
    power_limit_mw: int = 700_000
    capability: tuple[int, int] = (9, 0)
    bus_id: str = "00000000:01:00.0"
    energy_mj: int | None = 1_000_000  # None: counter not supported (pre-Volta)
    used_memory: int = 0
    processes: list[tuple[int, int]] = field(default_factory=list)  # (pid, used bytes)


class FakeNvml:
    """The subset of pynvml that hilnas calls, over a list of :class:`FakeGpu`.

    ``init_error`` makes ``nvmlInit`` fail with that NVML code (12 = library not found).
    ``calls`` records every call name, for assertions.
    """

    NVML_ERROR_UNINITIALIZED = 1
    NVML_ERROR_INVALID_ARGUMENT = 2
    NVML_ERROR_NOT_SUPPORTED = 3
    NVML_ERROR_NO_PERMISSION = 4
    NVML_ERROR_NOT_FOUND = 6
    NVML_ERROR_DRIVER_NOT_LOADED = 9
    NVML_ERROR_LIBRARY_NOT_FOUND = 12
    NVML_ERROR_FUNCTION_NOT_FOUND = 13
    NVML_ERROR_GPU_IS_LOST = 15
    NVMLError = FakeNVMLError

    def __init__(
        self,
        gpus: list[FakeGpu] | None = None,
        *,
        init_error: int | None = None,
        driver: str = "550.54.15",
    ) -> None:
        self.gpus = list(gpus or [])
        self.init_error = init_error
        self.driver = driver
        self.initialised = 0
        self.calls: list[str] = []

    # -- library
    def _check(self, name: str) -> None:
        self.calls.append(name)
        if self.initialised <= 0:
            raise FakeNVMLError(self.NVML_ERROR_UNINITIALIZED)

    def nvmlInit(self) -> None:
        self.calls.append("nvmlInit")
        if self.init_error is not None:
            raise FakeNVMLError(self.init_error)
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self.calls.append("nvmlShutdown")
        self.initialised -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        self._check("nvmlSystemGetDriverVersion")
        return self.driver

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._check("nvmlSystemGetCudaDriverVersion")
        return 12040

    # -- devices
    def nvmlDeviceGetCount(self) -> int:
        self._check("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        self._check("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.gpus):
            raise FakeNVMLError(self.NVML_ERROR_INVALID_ARGUMENT)
        return self.gpus[index]

    def nvmlDeviceGetHandleByUUID(self, uuid: str | bytes) -> FakeGpu:
        self._check("nvmlDeviceGetHandleByUUID")
        uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
        for gpu in self.gpus:
            if gpu.uuid == uuid:
                return gpu
        raise FakeNVMLError(self.NVML_ERROR_NOT_FOUND)

    def nvmlDeviceGetName(self, h: FakeGpu) -> str:
        self._check("nvmlDeviceGetName")
        return h.name

    def nvmlDeviceGetUUID(self, h: FakeGpu) -> str:
        self._check("nvmlDeviceGetUUID")
        return h.uuid

    def nvmlDeviceGetMemoryInfo(self, h: FakeGpu) -> Any:
        self._check("nvmlDeviceGetMemoryInfo")
        return SimpleNamespace(
            total=h.memory_total, used=h.used_memory, free=h.memory_total - h.used_memory
        )

    def nvmlDeviceGetEnforcedPowerLimit(self, h: FakeGpu) -> int:
        self._check("nvmlDeviceGetEnforcedPowerLimit")
        return h.power_limit_mw

    def nvmlDeviceGetCudaComputeCapability(self, h: FakeGpu) -> tuple[int, int]:
        self._check("nvmlDeviceGetCudaComputeCapability")
        return h.capability

    def nvmlDeviceGetPciInfo(self, h: FakeGpu) -> Any:
        self._check("nvmlDeviceGetPciInfo")
        return SimpleNamespace(busId=h.bus_id.encode())

    def nvmlDeviceGetTotalEnergyConsumption(self, h: FakeGpu) -> int:
        self._check("nvmlDeviceGetTotalEnergyConsumption")
        if h.energy_mj is None:
            raise FakeNVMLError(self.NVML_ERROR_NOT_SUPPORTED)
        return h.energy_mj

    def nvmlDeviceGetComputeRunningProcesses(self, h: FakeGpu) -> list[Any]:
        self._check("nvmlDeviceGetComputeRunningProcesses")
        return [SimpleNamespace(pid=p, usedGpuMemory=m) for p, m in h.processes]
