"""The local CPU as a device: psutil + /proc/cpuinfo, energy through the RAPL powercap."""

from __future__ import annotations

import logging
import os
import platform
import socket
from pathlib import Path
from typing import Any, ClassVar

import psutil
from hilnas.devices.base import (
    DeviceBackend,
    DeviceInfo,
    DeviceKind,
    Discovery,
    fingerprint_of,
    local_device_id,
)
from hilnas.devices.energy import DEFAULT_POWERCAP_ROOT, RaplCounter

log = logging.getLogger(__name__)

CPUINFO = Path("/proc/cpuinfo")
CPUFREQ_MAX = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")  # kHz
HOST_ENV = "HILNAS_DEVICE_HOST"  # overrides the hostname that device ids are derived from


def host_name() -> str:
    """The host part of local device ids: ``$HILNAS_DEVICE_HOST`` or the hostname.

    Containers often get a new random hostname per run; set ``HILNAS_DEVICE_HOST`` there to keep
    the CPU's id stable.
    """
    return os.environ.get(HOST_ENV) or socket.gethostname()


def _cpuinfo_model(path: Path) -> str | None:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    for key in ("model name", "Model", "Hardware", "cpu model", "Processor"):
        for line in text.splitlines():
            name, sep, value = line.partition(":")
            if sep and name.strip() == key and value.strip():
                return " ".join(value.split())
    return None


def _max_freq_mhz(freq_path: Path) -> float | None:
    try:
        freq = psutil.cpu_freq()
    except Exception:  # noqa: BLE001 - psutil raises odd errors in some containers
        freq = None
    if freq is not None and freq.max and freq.max > 0:
        return round(float(freq.max), 1)
    try:
        return round(int(freq_path.read_text().strip()) / 1000.0, 1)
    except (OSError, ValueError):
        return None


def _current_freq_mhz() -> float | None:
    try:
        freq = psutil.cpu_freq()
    except Exception:  # noqa: BLE001
        return None
    return round(float(freq.current), 1) if freq is not None and freq.current else None


def _usable_cpus() -> int | None:
    try:
        return len(psutil.Process().cpu_affinity())
    except (AttributeError, psutil.Error, OSError):  # not available on macOS
        return None


class CpuBackend(DeviceBackend):
    """The machine's CPU(s) as one device (all sockets together; ORT threads span them).

    id: ``cpu-`` + sha256(host | model | arch | physical cores | logical cores)[:8].
    fingerprint: model, arch, cores, max frequency, memory (GiB, 1 decimal).
    Energy: the RAPL powercap under ``powercap_root`` (injectable for tests).
    """

    kind: ClassVar[DeviceKind] = DeviceKind.CPU

    def __init__(
        self,
        *,
        powercap_root: str | os.PathLike[str] = DEFAULT_POWERCAP_ROOT,
        cpuinfo_path: str | os.PathLike[str] = CPUINFO,
        hostname: str | None = None,
    ) -> None:
        self.powercap_root = Path(powercap_root)
        self.cpuinfo_path = Path(cpuinfo_path)
        self.hostname = hostname

    def facts(self) -> dict[str, Any]:
        """The hardware facts that enter the fingerprint."""
        model = (
            _cpuinfo_model(self.cpuinfo_path)
            or platform.processor()
            or platform.machine()
            or "unknown CPU"
        )
        memory = psutil.virtual_memory().total
        return {
            "kind": "cpu",
            "model": model,
            "arch": platform.machine(),
            "physical_cores": psutil.cpu_count(logical=False) or psutil.cpu_count() or 1,
            "logical_cores": psutil.cpu_count() or 1,
            "max_freq_mhz": _max_freq_mhz(CPUFREQ_MAX),
            "memory_gib": round(memory / 2**30, 1),
        }

    def probe(self) -> Discovery:
        facts = self.facts()
        host = self.hostname or host_name()
        device_id = local_device_id(
            DeviceKind.CPU,
            host,
            facts["model"],
            facts["arch"],
            facts["physical_cores"],
            facts["logical_cores"],
        )
        rapl = RaplCounter(self.powercap_root)
        notes: list[str] = []
        if not rapl.available:
            notes.append(f"CPU energy unavailable: {rapl.unavailable_reason}")
            log.info("CPU energy counter unavailable: %s", rapl.unavailable_reason)
        properties: dict[str, Any] = {
            **{k: v for k, v in facts.items() if k != "kind"},
            "memory_total_bytes": psutil.virtual_memory().total,
            "usable_cpus": _usable_cpus(),
            "current_freq_mhz": _current_freq_mhz(),
            "hostname": host,
            "platform": platform.platform(),
            "rapl_zones": [z.name for z in rapl.zones],
        }
        info = DeviceInfo(
            id=device_id,
            kind=DeviceKind.CPU,
            name=facts["model"],
            fingerprint=fingerprint_of(facts),
            properties=properties,
            energy_counter="rapl" if rapl.available else None,
            energy_unavailable_reason=None if rapl.available else rapl.unavailable_reason,
            aliases=("cpu", "cpu0"),
        )
        return Discovery(devices=(info,), notes=tuple(notes))
