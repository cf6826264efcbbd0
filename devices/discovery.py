"""Device inventory of this machine: discover, look up by id or alias, pick an execution provider.

Nothing is cached in module globals: each call asks the backends again (discovery takes
milliseconds), so a GPU that appears or a driver that is loaded later is seen.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from hilnas.devices.base import (
    DeviceBackend,
    DeviceInfo,
    DeviceKind,
    DeviceNotFoundError,
    Discovery,
    ExecutionProviderUnavailableError,
    ExternalDeviceError,
)

log = logging.getLogger(__name__)

CPU_EP = "CPUExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"


def default_backends() -> list[DeviceBackend]:
    from hilnas.devices.cpu import CpuBackend
    from hilnas.devices.nvidia import NvidiaBackend

    return [CpuBackend(), NvidiaBackend()]


def probe(backends: Sequence[DeviceBackend] | None = None) -> Discovery:
    """All local devices (CPU first, then GPUs) and the notes on what is missing."""
    devices: list[DeviceInfo] = []
    notes: list[str] = []
    for backend in default_backends() if backends is None else backends:
        try:
            found = backend.probe()
        except Exception as exc:  # noqa: BLE001 - discovery must never crash
            note = f"{type(backend).__name__} failed: {exc}"
            log.info("device discovery: %s", note)
            found = Discovery(notes=(note,))
        devices.extend(found.devices)
        notes.extend(found.notes)
    return Discovery(devices=tuple(devices), notes=tuple(notes))


def discover(*, backends: Sequence[DeviceBackend] | None = None) -> list[DeviceInfo]:
    """The local devices: the CPU always, NVIDIA GPUs when NVML finds them (else INFO log)."""
    return list(probe(backends).devices)


def _describe(info: DeviceInfo) -> str:
    aliases = ", ".join(info.aliases)
    return f"{info.id} ({aliases}: {info.name})" if aliases else f"{info.id} ({info.name})"


def get_device(
    id_or_alias: str,
    *,
    devices: Sequence[DeviceInfo] | None = None,
    backends: Sequence[DeviceBackend] | None = None,
) -> DeviceInfo:
    """A local device by id (``cpu-1a2b3c4d``) or alias (``cpu``, ``cpu0``, ``gpu``, ``gpu0``...).

    ``devices`` looks up in a given list instead of discovering. Raises DeviceNotFoundError
    listing the known devices and how to see them.
    """
    notes: tuple[str, ...] = ()
    if devices is None:
        found = probe(backends)
        devices, notes = found.devices, found.notes
    wanted = id_or_alias.strip()
    for info in devices:
        if info.id == wanted:
            return info
    lowered = wanted.lower()
    for info in devices:
        if lowered in (a.lower() for a in info.aliases):
            return info
    known = "; ".join(_describe(d) for d in devices) or "none"
    hint = ""
    if lowered.startswith("gpu"):
        gpu_notes = [n for n in notes if "GPU" in n]
        if gpu_notes:
            hint = f" ({gpu_notes[0]})"
    raise DeviceNotFoundError(
        f"unknown device {wanted!r}{hint}. Known devices on this machine: {known}. "
        "Run `hilnas devices list` to see them and pass one of those ids or aliases."
    )


def available_execution_providers() -> list[str]:
    """What this onnxruntime build offers (imports onnxruntime)."""
    import onnxruntime

    return list(onnxruntime.get_available_providers())


def default_execution_provider(device: DeviceInfo) -> str:
    """``CPUExecutionProvider`` for a CPU, ``CUDAExecutionProvider`` for an NVIDIA GPU.

    Raises ExecutionProviderUnavailableError when the installed onnxruntime has no CUDA provider
    (the CPU-only ``onnxruntime`` wheel), and DeviceError for an external device.
    """
    if device.kind is DeviceKind.CPU:
        return CPU_EP
    if device.kind is DeviceKind.GPU:
        providers = available_execution_providers()
        if CUDA_EP in providers:
            return CUDA_EP
        import onnxruntime

        raise ExecutionProviderUnavailableError(
            f"device {device.id} ({device.name}) is an NVIDIA GPU, but the installed onnxruntime "
            f"{onnxruntime.__version__} offers only {', '.join(providers)}: {CUDA_EP} is missing, "
            "so it cannot be measured. Install the GPU build (`pip uninstall onnxruntime && pip "
            "install onnxruntime-gpu`, matching your CUDA version), or measure the CPU instead "
            "(`--device cpu`)."
        )
    raise ExternalDeviceError(
        f"{device.id} is an external device (measured elsewhere and imported); it has no execution "
        "provider on this machine and cannot be profiled here; measure it where it is attached and "
        "add the CSV with `hilnas devices import NAME --measurements FILE --replace`"
    )
