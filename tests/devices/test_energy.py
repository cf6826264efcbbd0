"""Energy counters.

RAPL is tested on a *simulated* powercap tree: a temp directory laid out like
/sys/class/powercap (hilnas.devices.testing.FakePowercap) whose energy_uj the test sets.
NVML is tested with a *simulated* GPU: a stand-in pynvml module (hilnas.devices.testing.FakeNvml)
passed in or installed in sys.modules. Tests against real counters are marked ``rapl`` / ``gpu``
and skipped where the hardware is absent.
"""

from __future__ import annotations

import pathlib
import sys

import pytest
from hilnas.devices import (
    DeviceInfo,
    DeviceKind,
    EnergyMethod,
    EnergyReading,
    NvmlCounter,
    RaplCounter,
    counter_for,
    counter_from_spec,
    discover,
)
from hilnas.devices.energy import DEFAULT_POWERCAP_ROOT
from hilnas.devices.testing import FakeGpu, FakeNvml, FakePowercap

MAX = 262_143_328_850


@pytest.fixture
def powercap(tmp_path):
    """A simulated RAPL powercap tree with one package zone (and a dram sub-zone)."""
    pc = FakePowercap(tmp_path / "powercap")
    pc.add_zone(0, "package-0", energy_uj=1_000_000, max_energy_range_uj=MAX)
    pc.add_zone(0, "dram", energy_uj=5, sub=0)
    return pc


# ------------------------------------------------------------------------------- RAPL (simulated)
def test_rapl_measures_delta_in_millijoules(powercap):
    counter = RaplCounter(powercap.root)
    assert counter.available and counter.unavailable_reason is None
    assert [z.name for z in counter.zones] == ["package-0"]  # the dram sub-zone is not added
    counter.begin()
    powercap.set(0, 1_000_000 + 2_500_000)  # 2.5 J later
    reading = counter.end()
    assert reading == EnergyReading(2500.0, EnergyMethod.RAPL_POWERCAP, None, reading.window_s)
    assert reading.window_s is not None and reading.window_s >= 0


def test_rapl_wraps_around_at_max_energy_range(powercap):
    counter = RaplCounter(powercap.root)
    powercap.set(0, MAX - 400_000)
    counter.begin()
    powercap.set(0, 600_000)  # wrapped: 400_000 up to the top, then 600_000 more
    reading = counter.end()
    assert reading.method is EnergyMethod.RAPL_POWERCAP
    assert reading.energy_mj == pytest.approx(1000.0)


def test_rapl_sums_package_domains_and_skips_psys(tmp_path):
    pc = FakePowercap(tmp_path / "pc")
    pc.add_zone(0, "package-0", energy_uj=0)
    pc.add_zone(1, "package-1", energy_uj=0, max_energy_range_uj=1_000_000)
    pc.add_zone(2, "psys", energy_uj=0)  # platform domain overlaps the packages
    counter = RaplCounter(pc.root)
    assert [z.name for z in counter.zones] == ["package-0", "package-1"]
    counter.begin()
    pc.set(0, 1_000)
    pc.set(1, 2_000)
    pc.set(2, 999_999)
    assert counter.end().energy_mj == pytest.approx(3.0)
    # the second package wraps on its own range, the first does not
    pc.set(1, 999_000)
    counter.begin()
    pc.set(0, 2_000)
    pc.set(1, 500)
    assert counter.end().energy_mj == pytest.approx(1.0 + 1.5)


def test_rapl_missing_root_gives_reason(tmp_path):
    counter = RaplCounter(tmp_path / "does-not-exist")
    assert not counter.available
    assert counter.unavailable_reason == (
        f"no readable RAPL powercap at {tmp_path / 'does-not-exist'} (needs root or a kernel with intel_rapl)"
    )
    counter.begin()
    reading = counter.end()
    assert reading.energy_mj is None and reading.method is EnergyMethod.UNKNOWN
    assert "no readable RAPL powercap" in reading.reason


def test_rapl_root_without_zones_gives_reason(tmp_path):
    FakePowercap(tmp_path / "empty")
    counter = RaplCounter(tmp_path / "empty")
    assert not counter.available
    assert "no intel-rapl:<n> zones" in counter.unavailable_reason


def test_rapl_permission_denied_gives_reason(powercap, monkeypatch):
    # Simulated: the tests may run as root, where chmod cannot deny a read, so the read of
    # energy_uj is made to raise PermissionError like a non-root read on Linux >= 5.10.
    real = pathlib.Path.read_text

    def denied(self, *args, **kwargs):
        if self.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "read_text", denied)
    counter = RaplCounter(powercap.root)
    assert not counter.available
    assert "permission denied" in counter.unavailable_reason
    assert "root" in counter.unavailable_reason


def test_rapl_counter_that_does_not_advance_is_unknown_not_zero(powercap):
    counter = RaplCounter(powercap.root)
    counter.begin()
    reading = counter.end()
    assert reading.energy_mj is None and reading.method is EnergyMethod.UNKNOWN
    assert "did not advance" in reading.reason


def test_rapl_read_failure_at_end_is_unknown(powercap):
    counter = RaplCounter(powercap.root)
    counter.begin()
    powercap.energy_path(0).unlink()
    reading = counter.end()
    assert reading.energy_mj is None and "window end" in reading.reason


def test_end_without_begin_is_a_programming_error(powercap):
    with pytest.raises(RuntimeError, match="without begin"):
        RaplCounter(powercap.root).end()


def test_reading_round_trips_through_dict():
    reading = EnergyReading(12.5, EnergyMethod.NVML_TOTAL_ENERGY, None, 0.1)
    assert EnergyReading.from_dict(reading.to_dict()) == reading
    unknown = EnergyReading.unknown("no counter")
    assert EnergyReading.from_dict(unknown.to_dict()) == unknown


# ------------------------------------------------------------------------------- NVML (simulated)
def test_nvml_counter_measures_delta_on_simulated_gpu():
    gpu = FakeGpu(energy_mj=5_000)
    nvml = FakeNvml([gpu])
    counter = NvmlCounter(gpu.uuid, nvml=nvml)
    assert counter.available
    counter.begin()
    gpu.energy_mj += 1234
    reading = counter.end()
    assert reading.method is EnergyMethod.NVML_TOTAL_ENERGY
    assert reading.energy_mj == pytest.approx(1234.0)
    counter.close()
    assert nvml.initialised == 0


def test_nvml_counter_handles_64bit_wrap():
    gpu = FakeGpu(energy_mj=2**64 - 100)
    counter = NvmlCounter(gpu.uuid, nvml=FakeNvml([gpu]))
    counter.begin()
    gpu.energy_mj = 50
    assert counter.end().energy_mj == pytest.approx(150.0)


def test_nvml_counter_reset_is_unknown_with_reason():
    gpu = FakeGpu(energy_mj=10_000_000)
    counter = NvmlCounter(gpu.uuid, nvml=FakeNvml([gpu]))
    counter.begin()
    gpu.energy_mj = 20  # the driver was reloaded
    reading = counter.end()
    assert reading.energy_mj is None and reading.method is EnergyMethod.UNKNOWN
    assert "went backwards" in reading.reason


def test_nvml_counter_unsupported_gpu_gives_reason():
    gpu = FakeGpu(energy_mj=None)  # pre-Volta: NVML_ERROR_NOT_SUPPORTED
    counter = NvmlCounter(gpu.uuid, nvml=FakeNvml([gpu]))
    assert not counter.available
    assert "Volta" in counter.unavailable_reason


def test_nvml_counter_absent_library_gives_reason(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` raises ImportError
    counter = NvmlCounter("GPU-x")
    assert not counter.available
    assert "nvidia-ml-py" in counter.unavailable_reason


def test_nvml_counter_absent_driver_gives_reason():
    counter = NvmlCounter(
        "GPU-x", nvml=FakeNvml([], init_error=FakeNvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    )
    assert not counter.available
    assert "driver" in counter.unavailable_reason


def test_nvml_counter_read_error_mid_window_is_unknown():
    gpu = FakeGpu(energy_mj=1)
    counter = NvmlCounter(gpu.uuid, nvml=FakeNvml([gpu]))
    counter.begin()
    gpu.energy_mj = None  # the counter stops answering (GPU lost, say)
    reading = counter.end()
    assert reading.energy_mj is None and "window end" in reading.reason


# ------------------------------------------------------------------------------------- factory
def _device(kind: DeviceKind, **properties) -> DeviceInfo:
    prefix = {"cpu": "cpu-", "gpu": "gpu-"}.get(kind.value, "")
    return DeviceInfo(
        id=f"{prefix}0123abcd" if prefix else "titanx",
        kind=kind,
        name="x",
        fingerprint="0" * 64,
        properties=properties,
    )


def test_counter_for_each_kind(powercap):
    counter, reason = counter_for(_device(DeviceKind.CPU), powercap_root=powercap.root)
    assert isinstance(counter, RaplCounter) and reason is None
    gpu = FakeGpu()
    counter, reason = counter_for(_device(DeviceKind.GPU, uuid=gpu.uuid), nvml=FakeNvml([gpu]))
    assert isinstance(counter, NvmlCounter) and reason is None
    counter, reason = counter_for(_device(DeviceKind.GPU), nvml=FakeNvml([gpu]))
    assert counter is None and "uuid" in reason
    counter, reason = counter_for(_device(DeviceKind.EXTERNAL))
    assert counter is None and "external" in reason


def test_counter_for_without_counter_gives_reason(tmp_path):
    counter, reason = counter_for(_device(DeviceKind.CPU), powercap_root=tmp_path / "none")
    assert counter is None and "no readable RAPL powercap" in reason


def test_counter_from_spec_rebuilds_the_counter(powercap):
    original = RaplCounter(powercap.root)
    rebuilt, reason = counter_from_spec(original.spec())
    assert isinstance(rebuilt, RaplCounter) and rebuilt.root == powercap.root and reason is None
    gpu = FakeGpu()
    nv, _ = counter_from_spec({"kind": "nvml", "uuid": gpu.uuid}, nvml=FakeNvml([gpu]))
    assert isinstance(nv, NvmlCounter)
    assert counter_from_spec(None) == (None, "no energy counter")
    assert counter_from_spec({"kind": "bogus"})[0] is None


# ----------------------------------------------------------------------------- real hardware
@pytest.mark.rapl
def test_real_rapl_counter_measures_energy():
    counter = RaplCounter(DEFAULT_POWERCAP_ROOT)
    if not counter.available:
        pytest.skip(f"no readable RAPL here: {counter.unavailable_reason}")
    import time

    counter.begin()
    end = time.perf_counter() + 0.3
    while time.perf_counter() < end:
        pass
    reading = counter.end()
    assert reading.method is EnergyMethod.RAPL_POWERCAP and reading.energy_mj > 0


@pytest.mark.gpu
def test_real_nvml_counter_measures_energy():
    gpus = [d for d in discover() if d.kind is DeviceKind.GPU and d.energy_counter == "nvml"]
    if not gpus:
        pytest.skip("no NVIDIA GPU with an NVML total-energy counter here")
    import time

    counter, reason = counter_for(gpus[0])
    assert counter is not None, reason
    counter.begin()
    time.sleep(1.0)  # the counter updates every ~100 ms or faster
    reading = counter.end()
    counter.close()
    assert reading.method is EnergyMethod.NVML_TOTAL_ENERGY and reading.energy_mj > 0
