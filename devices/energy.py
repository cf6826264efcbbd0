"""Energy counters: measurement windows over hardware energy counters.

A counter is read at :meth:`EnergyCounter.begin` and :meth:`EnergyCounter.end` around the work
(the caller synchronises the device before each read). :meth:`end` returns an
:class:`EnergyReading` in millijoules with the method that produced it; when no value can be
given the reading has ``energy_mj=None``, ``method=EnergyMethod.UNKNOWN`` and a reason: unknown
energy is never reported as 0.

- :class:`RaplCounter`: Linux powercap ``<root>/intel-rapl:<n>/energy_uj`` (microjoules) summed
  over the package domains (``name`` = ``package-<n>``; sub-zones such as ``core``/``dram`` and
  ``psys`` are not added, they overlap the packages). Wrap-around at ``max_energy_range_uj`` is
  handled once per zone per window (a window must be shorter than one wrap period, minutes to
  hours). The value is the whole package's energy during the window, idle share included.
- :class:`NvmlCounter`: ``nvmlDeviceGetTotalEnergyConsumption`` (millijoules since the driver
  loaded; Volta or newer). The whole GPU's energy during the window.

Counters are not thread-safe; one window at a time per counter.
"""

from __future__ import annotations

import os
import re
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from hilnas.devices.base import DeviceError, DeviceInfo, DeviceKind

if TYPE_CHECKING:  # pragma: no cover
    from types import ModuleType

DEFAULT_POWERCAP_ROOT = Path("/sys/class/powercap")
_ZONE = re.compile(r"^intel-rapl:(\d+)$")
# NVML's counter is an unsigned 64-bit millijoule count; a decrease near the top is a wrap,
# anywhere else it is a reset (driver reload) and the window is unknown.
_NVML_COUNTER_RANGE = 2**64
_NVML_WRAP_MARGIN = 2**40


class EnergyMethod(str, Enum):
    NVML_TOTAL_ENERGY = "nvml_total_energy"  # nvmlDeviceGetTotalEnergyConsumption delta
    RAPL_POWERCAP = "rapl_powercap"  # /sys/class/powercap intel-rapl energy_uj delta
    ESTIMATE_POWER_X_TIME = "estimate_power_x_time"  # labelled estimate, never mixed with measured
    UNKNOWN = "unknown"  # no counter; energy_mj is None and energy_reason says why


@dataclass(frozen=True, slots=True)
class EnergyReading:
    """Energy of one measurement window.

    Promise: either ``energy_mj > 0`` with a measuring ``method`` and ``reason=None``, or
    ``energy_mj is None`` with ``method=UNKNOWN`` and a ``reason``.
    """

    energy_mj: float | None
    method: EnergyMethod
    reason: str | None
    window_s: float | None = None

    @classmethod
    def unknown(cls, reason: str, window_s: float | None = None) -> EnergyReading:
        return cls(energy_mj=None, method=EnergyMethod.UNKNOWN, reason=reason, window_s=window_s)

    def to_dict(self) -> dict[str, Any]:
        return {
            "energy_mj": self.energy_mj,
            "method": self.method.value,
            "reason": self.reason,
            "window_s": self.window_s,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EnergyReading:
        return cls(
            energy_mj=d.get("energy_mj"),
            method=EnergyMethod(d["method"]),
            reason=d.get("reason"),
            window_s=d.get("window_s"),
        )


class EnergyCounter(ABC):
    """A cumulative hardware energy counter read around a window of work.

    ``available`` says whether it can be read at all (``unavailable_reason`` says why not);
    ``begin()``/``end()`` never raise for counter faults: a failed read gives an unknown
    reading with the reason. ``end()`` without ``begin()`` is a programming error (RuntimeError).
    """

    method: ClassVar[EnergyMethod]

    def __init__(self) -> None:
        self._start: Any = None
        self._t0 = 0.0
        self._begin_error: str | None = None

    @property
    @abstractmethod
    def available(self) -> bool: ...

    @property
    @abstractmethod
    def unavailable_reason(self) -> str | None: ...

    @abstractmethod
    def _snapshot(self) -> Any:
        """Raw counter state; raises DeviceError (or OSError) when it cannot be read."""

    @abstractmethod
    def _delta_mj(self, start: Any, end: Any) -> tuple[float | None, str | None]:
        """Energy between two snapshots, or (None, reason)."""

    @abstractmethod
    def spec(self) -> dict[str, Any]:
        """JSON description from which :func:`counter_from_spec` rebuilds this counter
        (e.g. in a profiler's worker process)."""

    def supports_energy(self) -> bool:
        return self.available

    def begin(self) -> None:
        self._begin_error = None
        self._start = None
        if not self.available:
            self._begin_error = self.unavailable_reason or "energy counter unavailable"
        else:
            try:
                self._start = self._snapshot()
            except (DeviceError, OSError, ValueError) as exc:
                self._begin_error = (
                    f"reading the {self.method.value} counter failed at window start: {exc}"
                )
        self._t0 = time.perf_counter()

    def end(self) -> EnergyReading:
        if self._start is None and self._begin_error is None:
            raise RuntimeError("EnergyCounter.end() called without begin()")
        window_s = time.perf_counter() - self._t0
        start, begin_error = self._start, self._begin_error
        self._start, self._begin_error = None, None
        if begin_error is not None:
            return EnergyReading.unknown(begin_error, window_s)
        try:
            end = self._snapshot()
        except (DeviceError, OSError, ValueError) as exc:
            return EnergyReading.unknown(
                f"reading the {self.method.value} counter failed at window end: {exc}", window_s
            )
        energy_mj, reason = self._delta_mj(start, end)
        if energy_mj is None:
            return EnergyReading.unknown(reason or "counter gave no value", window_s)
        if energy_mj <= 0:
            return EnergyReading.unknown(
                f"the {self.method.value} counter did not advance during the {window_s * 1e3:.1f} ms "
                "window (its update interval is longer than the window); use more repetitions",
                window_s,
            )
        return EnergyReading(
            energy_mj=energy_mj, method=self.method, reason=None, window_s=window_s
        )

    def close(self) -> None:  # noqa: B027 - an optional hook, a no-op by default
        """Release vendor handles (no-op by default)."""

    def __enter__(self) -> EnergyCounter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------------------- RAPL
@dataclass(frozen=True, slots=True)
class RaplZone:
    name: str  # e.g. package-0
    path: Path  # the zone directory
    max_energy_range_uj: int


class RaplCounter(EnergyCounter):
    """Linux RAPL through the powercap sysfs tree (``root`` injectable for tests)."""

    method: ClassVar[EnergyMethod] = EnergyMethod.RAPL_POWERCAP

    def __init__(self, root: str | os.PathLike[str] = DEFAULT_POWERCAP_ROOT) -> None:
        super().__init__()
        self.root = Path(root)
        self.zones: tuple[RaplZone, ...] = ()
        self._reason: str | None = None
        self._probe()

    @property
    def available(self) -> bool:
        return self._reason is None

    @property
    def unavailable_reason(self) -> str | None:
        return self._reason

    def spec(self) -> dict[str, Any]:
        return {"kind": "rapl", "root": str(self.root)}

    def _probe(self) -> None:
        no_rapl = (
            f"no readable RAPL powercap at {self.root} (needs root or a kernel with intel_rapl)"
        )
        try:
            entries = sorted(p for p in self.root.iterdir() if _ZONE.match(p.name))
        except PermissionError:
            self._reason = f"{no_rapl}: listing {self.root} was denied"
            return
        except OSError:
            self._reason = no_rapl
            return
        if not entries:
            self._reason = (
                f"{no_rapl}: there are no intel-rapl:<n> zones (no RAPL driver for this CPU, or "
                "not exposed in this VM/container)"
            )
            return
        zones: list[RaplZone] = []
        for zone in entries:
            try:
                name = (zone / "name").read_text().strip()
            except OSError:
                continue
            if not name.startswith("package"):
                continue  # psys and others overlap the packages
            energy = zone / "energy_uj"
            try:
                int(energy.read_text().strip())
            except PermissionError:
                self._reason = (
                    f"RAPL counter {energy} is not readable (permission denied): since Linux 5.10 "
                    "energy_uj is readable by root only; run the agent as root or grant read access, "
                    "e.g. `sudo chmod a+r /sys/class/powercap/intel-rapl:*/energy_uj`"
                )
                return
            except (OSError, ValueError) as exc:
                self._reason = f"RAPL counter {energy} cannot be read ({exc})"
                return
            try:
                max_range = int((zone / "max_energy_range_uj").read_text().strip())
            except (OSError, ValueError) as exc:
                self._reason = (
                    f"RAPL zone {zone} has no readable max_energy_range_uj ({exc}); wrap-around "
                    "could not be handled"
                )
                return
            zones.append(RaplZone(name=name, path=zone, max_energy_range_uj=max_range))
        if not zones:
            self._reason = (
                f"{no_rapl}: no package-<n> domain among {', '.join(p.name for p in entries)}"
            )
            return
        self.zones = tuple(zones)

    def _snapshot(self) -> tuple[int, ...]:
        return tuple(int((z.path / "energy_uj").read_text().strip()) for z in self.zones)

    def _delta_mj(
        self, start: tuple[int, ...], end: tuple[int, ...]
    ) -> tuple[float | None, str | None]:
        total_uj = 0
        for zone, a, b in zip(self.zones, start, end, strict=True):
            delta = b - a
            if delta < 0:  # the counter wrapped at max_energy_range_uj (once per window)
                delta += zone.max_energy_range_uj
            if delta < 0:
                return None, f"RAPL zone {zone.name} went backwards by more than its range"
            total_uj += delta
        return total_uj / 1000.0, None


# --------------------------------------------------------------------------------------- NVML
class NvmlCounter(EnergyCounter):
    """``nvmlDeviceGetTotalEnergyConsumption`` of one GPU (by uuid, else index)."""

    method: ClassVar[EnergyMethod] = EnergyMethod.NVML_TOTAL_ENERGY

    def __init__(
        self,
        uuid: str | None = None,
        *,
        index: int | None = None,
        nvml: ModuleType | Any | None = None,
    ) -> None:
        super().__init__()
        from hilnas.devices._nvml import Nvml  # local: keeps pynvml lazy

        if uuid is None and index is None:
            raise ValueError("NvmlCounter needs a GPU uuid or index")
        self.uuid, self.index = uuid, index
        self._nvml = Nvml(nvml)
        self._handle: Any = None
        self._reason: str | None = None
        try:
            self._nvml.init()
            if uuid is not None:
                self._handle = self._nvml.call("nvmlDeviceGetHandleByUUID", uuid)
            else:
                self._handle = self._nvml.call("nvmlDeviceGetHandleByIndex", index)
            self._nvml.call("nvmlDeviceGetTotalEnergyConsumption", self._handle)
        except DeviceError as exc:
            self._reason = (
                f"no NVML total-energy counter for GPU {uuid or index}: {exc} "
                "(needs a Volta or newer GPU and nvidia-ml-py)"
            )
            self._nvml.shutdown()

    @property
    def available(self) -> bool:
        return self._reason is None

    @property
    def unavailable_reason(self) -> str | None:
        return self._reason

    def spec(self) -> dict[str, Any]:
        return {"kind": "nvml", "uuid": self.uuid, "index": self.index}

    def _snapshot(self) -> int:
        return int(self._nvml.call("nvmlDeviceGetTotalEnergyConsumption", self._handle))

    def _delta_mj(self, start: int, end: int) -> tuple[float | None, str | None]:
        delta = end - start
        if delta < 0:
            if start >= _NVML_COUNTER_RANGE - _NVML_WRAP_MARGIN:
                delta += _NVML_COUNTER_RANGE  # 64-bit wrap
            else:
                return None, (
                    f"the NVML energy counter went backwards ({start} -> {end} mJ): the driver was "
                    "reloaded or the GPU reset during the window; measure again"
                )
        return float(delta), None

    def close(self) -> None:
        self._nvml.shutdown()


# ------------------------------------------------------------------------------------ factory
def counter_for(
    device: DeviceInfo,
    *,
    powercap_root: str | os.PathLike[str] | None = None,
    nvml: ModuleType | Any | None = None,
) -> tuple[EnergyCounter | None, str | None]:
    """The energy counter that can measure ``device`` here, or ``(None, reason)``."""
    if device.kind is DeviceKind.CPU:
        counter: EnergyCounter = RaplCounter(powercap_root or DEFAULT_POWERCAP_ROOT)
    elif device.kind is DeviceKind.GPU:
        uuid = device.properties.get("uuid")
        if not uuid:
            return (
                None,
                f"GPU {device.id} has no uuid in its properties; rediscover it (`hilnas devices list`)",
            )
        counter = NvmlCounter(uuid, nvml=nvml)
    else:
        return (
            None,
            f"{device.id} is an external device: its energy comes from its imported measurements",
        )
    if not counter.available:
        reason = counter.unavailable_reason
        counter.close()
        return None, reason
    return counter, None


def counter_from_spec(
    spec: dict[str, Any] | None, *, nvml: ModuleType | Any | None = None
) -> tuple[EnergyCounter | None, str | None]:
    """Rebuild a counter from :meth:`EnergyCounter.spec` (used inside profiler workers)."""
    if not spec:
        return None, "no energy counter"
    kind = spec.get("kind")
    if kind == "rapl":
        counter: EnergyCounter = RaplCounter(spec.get("root") or DEFAULT_POWERCAP_ROOT)
    elif kind == "nvml":
        counter = NvmlCounter(spec.get("uuid"), index=spec.get("index"), nvml=nvml)
    else:
        return None, f"unknown energy counter kind {kind!r}"
    if not counter.available:
        reason = counter.unavailable_reason
        counter.close()
        return None, reason
    return counter, None
