"""NVIDIA GPUs as devices, discovered through NVML (nvidia-ml-py, imported lazily)."""

from __future__ import annotations

import logging
from types import ModuleType
from typing import Any, ClassVar

from hilnas.devices._nvml import Nvml
from hilnas.devices.base import (
    DeviceBackend,
    DeviceError,
    DeviceInfo,
    DeviceKind,
    Discovery,
    fingerprint_of,
    local_device_id,
)

log = logging.getLogger(__name__)


def _optional(nv: Nvml, name: str, *args: Any) -> Any:
    """A per-GPU fact that some GPUs or drivers do not report: None instead of an error."""
    try:
        return nv.call(name, *args)
    except DeviceError:
        return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class NvidiaBackend(DeviceBackend):
    """Every GPU NVML lists (in NVML / PCI bus order).

    id: ``gpu-`` + sha256(GPU uuid)[:8] (the uuid is globally unique, so the id survives
    hostname changes); aliases ``gpu<i>`` (NVML index) and ``gpu`` for the first GPU.
    fingerprint: name, memory, enforced power limit, driver version, compute capability.
    Energy: ``nvmlDeviceGetTotalEnergyConsumption`` where it works (Volta and newer).
    ``nvml`` injects a stand-in for the pynvml module (tests); None imports pynvml lazily.
    """

    kind: ClassVar[DeviceKind] = DeviceKind.GPU

    def __init__(self, *, nvml: ModuleType | Any | None = None) -> None:
        self._module = nvml

    def probe(self) -> Discovery:
        try:
            with Nvml(self._module) as nv:
                count = int(nv.call("nvmlDeviceGetCount"))
                driver = _text(_optional(nv, "nvmlSystemGetDriverVersion"))
                cuda_driver = _optional(nv, "nvmlSystemGetCudaDriverVersion")
                devices = []
                for index in range(count):
                    try:
                        devices.append(self._describe(nv, index, driver, cuda_driver))
                    except DeviceError as exc:  # one broken GPU does not hide the others
                        log.info("skipping NVIDIA GPU %d: %s", index, exc)
        except DeviceError as exc:
            note = f"no NVIDIA GPU discovered: {exc}"
            log.info(note)
            return Discovery(devices=(), notes=(note,))
        if not devices:
            note = "no NVIDIA GPU discovered: NVML lists no GPUs"
            log.info(note)
            return Discovery(devices=(), notes=(note,))
        return Discovery(devices=tuple(devices))

    @staticmethod
    def _describe(nv: Nvml, index: int, driver: str | None, cuda_driver: Any) -> DeviceInfo:
        handle = nv.call("nvmlDeviceGetHandleByIndex", index)
        name = nv.text("nvmlDeviceGetName", handle)
        uuid = nv.text("nvmlDeviceGetUUID", handle)
        memory = _optional(nv, "nvmlDeviceGetMemoryInfo", handle)
        memory_total = int(memory.total) if memory is not None else None
        power_mw = _optional(nv, "nvmlDeviceGetEnforcedPowerLimit", handle)
        capability = _optional(nv, "nvmlDeviceGetCudaComputeCapability", handle)
        pci = _optional(nv, "nvmlDeviceGetPciInfo", handle)
        energy_reason: str | None = None
        try:
            nv.call("nvmlDeviceGetTotalEnergyConsumption", handle)
        except DeviceError as exc:
            energy_reason = f"NVML total-energy counter unavailable on {name} ({exc}); it needs a Volta or newer GPU"
        facts = {
            "kind": "gpu",
            "name": name,
            "memory_total_bytes": memory_total,
            "power_limit_w": round(power_mw / 1000.0, 1) if power_mw is not None else None,
            "driver_version": driver,
            "compute_capability": ".".join(str(x) for x in capability) if capability else None,
        }
        properties = {
            **{k: v for k, v in facts.items() if k != "kind"},
            "index": index,
            "uuid": uuid,
            "pci_bus_id": _text(getattr(pci, "busId", None)) if pci is not None else None,
            "cuda_driver_version": cuda_driver,
            "total_energy_counter": energy_reason is None,
        }
        aliases = (f"gpu{index}", "gpu") if index == 0 else (f"gpu{index}",)
        return DeviceInfo(
            id=local_device_id(DeviceKind.GPU, uuid),
            kind=DeviceKind.GPU,
            name=name,
            fingerprint=fingerprint_of(facts),
            properties=properties,
            energy_counter="nvml" if energy_reason is None else None,
            energy_unavailable_reason=energy_reason,
            aliases=aliases,
        )
