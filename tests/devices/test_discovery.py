"""Discovery, lookup and execution providers.

GPUs are *simulated* with a stand-in pynvml module (hilnas.devices.testing.FakeNvml) installed
in sys.modules where hilnas imports it; the CPU is the real one of the test machine.
"""

from __future__ import annotations

import logging
import sys

import pytest
from hilnas.devices import (
    CPU_EP,
    CUDA_EP,
    DeviceError,
    DeviceInfo,
    DeviceKind,
    DeviceLibraryError,
    DeviceNotFoundError,
    DeviceNotSupportedError,
    DevicePermissionError,
    ExecutionProviderUnavailableError,
    default_execution_provider,
    discover,
    get_device,
    probe,
)
from hilnas.devices import discovery as discovery_module
from hilnas.devices._nvml import translate
from hilnas.devices.cpu import HOST_ENV, CpuBackend
from hilnas.devices.nvidia import NvidiaBackend
from hilnas.devices.testing import FakeGpu, FakeNvml, FakeNVMLError


@pytest.fixture
def two_gpus(monkeypatch):
    """Two simulated GPUs behind a fake pynvml; the second has no energy counter."""
    fake = FakeNvml(
        [
            FakeGpu(name="NVIDIA Simulated A", uuid="GPU-aaaaaaaa-0000"),
            FakeGpu(name="NVIDIA Simulated B", uuid="GPU-bbbbbbbb-0000", energy_mj=None),
        ]
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    return fake


def test_discover_always_finds_the_cpu_first():
    devices = discover()
    assert devices and devices[0].kind is DeviceKind.CPU
    assert devices[0].aliases == ("cpu", "cpu0")


def test_missing_nvml_library_gives_fewer_devices_and_info_log(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` raises ImportError
    with caplog.at_level(logging.INFO, logger="hilnas.devices"):
        found = probe()
    assert [d.kind for d in found.devices] == [DeviceKind.CPU]
    assert any("no NVIDIA GPU discovered" in n and "nvidia-ml-py" in n for n in found.notes)
    assert any(
        r.levelno == logging.INFO and "no NVIDIA GPU" in r.getMessage() for r in caplog.records
    )


def test_nvml_init_failure_gives_fewer_devices(monkeypatch, caplog):
    monkeypatch.setitem(
        sys.modules, "pynvml", FakeNvml([FakeGpu()], init_error=9)
    )  # driver not loaded
    with caplog.at_level(logging.INFO, logger="hilnas.devices"):
        devices = discover()
    assert [d.kind for d in devices] == [DeviceKind.CPU]
    assert "driver" in caplog.text


def test_a_crashing_backend_does_not_crash_discovery(caplog):
    class Broken(CpuBackend):
        def probe(self):
            raise RuntimeError("boom")

    with caplog.at_level(logging.INFO, logger="hilnas.devices"):
        found = probe([Broken(), CpuBackend()])
    assert len(found.devices) == 1 and "boom" in found.notes[0]


def test_simulated_gpus_are_discovered_with_aliases(two_gpus):
    devices = discover()
    gpus = [d for d in devices if d.kind is DeviceKind.GPU]
    assert [g.name for g in gpus] == ["NVIDIA Simulated A", "NVIDIA Simulated B"]
    assert gpus[0].aliases == ("gpu0", "gpu") and gpus[1].aliases == ("gpu1",)
    assert gpus[0].energy_counter == "nvml" and gpus[0].energy_unavailable_reason is None
    assert gpus[1].energy_counter is None and "Volta" in gpus[1].energy_unavailable_reason
    props = gpus[0].properties
    assert props["uuid"] == "GPU-aaaaaaaa-0000" and props["power_limit_w"] == 700.0
    assert props["memory_total_bytes"] == 80 * 2**30 and props["driver_version"] == "550.54.15"
    assert props["compute_capability"] == "9.0" and props["total_energy_counter"] is True
    assert two_gpus.initialised == 0  # NVML shut down again


def test_gpu_id_depends_on_uuid_only(two_gpus, monkeypatch):
    before = {d.id for d in discover() if d.kind is DeviceKind.GPU}
    monkeypatch.setenv(HOST_ENV, "another-host")
    after = {d.id for d in discover() if d.kind is DeviceKind.GPU}
    assert before == after


def test_cpu_id_is_stable_and_follows_the_host(monkeypatch):
    a, b = CpuBackend().discover()[0], CpuBackend().discover()[0]
    assert (a.id, a.fingerprint) == (b.id, b.fingerprint)
    monkeypatch.setenv(HOST_ENV, "pinned-host-name")
    c = CpuBackend().discover()[0]
    assert c.id != a.id and c.fingerprint == a.fingerprint
    assert c.properties["hostname"] == "pinned-host-name"


def test_cpu_model_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Gold 6226 CPU @ 2.70GHz\n")
    info = CpuBackend(cpuinfo_path=cpuinfo, hostname="h").discover()[0]
    assert info.name == "Intel(R) Xeon(R) Gold 6226 CPU @ 2.70GHz"
    other = CpuBackend(cpuinfo_path=tmp_path / "missing", hostname="h").discover()[0]
    assert other.name  # falls back to platform facts


def test_a_gpu_missing_one_fact_is_still_discovered(monkeypatch):
    class NoPowerLimit(FakeNvml):
        def nvmlDeviceGetEnforcedPowerLimit(self, h):
            raise FakeNVMLError(self.NVML_ERROR_NOT_SUPPORTED)

    devices = NvidiaBackend(nvml=NoPowerLimit([FakeGpu()])).discover()
    assert len(devices) == 1 and devices[0].properties["power_limit_w"] is None


def test_get_device_by_id_and_alias(two_gpus):
    devices = discover()
    for info in devices:
        assert get_device(info.id) == info
        for alias in info.aliases:
            assert get_device(alias) == info
            assert get_device(alias.upper()) == info
    assert get_device("gpu").id == get_device("gpu0").id


def test_get_device_unknown_lists_ids_and_the_fix():
    cpu = discover()[0]
    with pytest.raises(DeviceNotFoundError) as err:
        get_device("tpu-12345678")
    message = str(err.value)
    assert "tpu-12345678" in message and cpu.id in message
    assert "hilnas devices list" in message


def test_get_device_gpu_without_gpu_says_why(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with pytest.raises(DeviceNotFoundError, match="no NVIDIA GPU discovered"):
        get_device("gpu0")


def test_get_device_in_a_given_list():
    info = DeviceInfo(
        id="cpu-0123abcd", kind=DeviceKind.CPU, name="x", fingerprint="f", aliases=("cpu",)
    )
    assert get_device("cpu", devices=[info]) is info
    with pytest.raises(DeviceNotFoundError, match="cpu-0123abcd"):
        get_device("gpu0", devices=[info])


def test_default_execution_provider(two_gpus, monkeypatch):
    cpu, gpu = discover()[:2]
    assert default_execution_provider(cpu) == CPU_EP
    monkeypatch.setattr(discovery_module, "available_execution_providers", lambda: [CPU_EP])
    with pytest.raises(ExecutionProviderUnavailableError) as err:
        default_execution_provider(gpu)
    assert "onnxruntime-gpu" in str(err.value) and CUDA_EP in str(err.value)
    monkeypatch.setattr(
        discovery_module, "available_execution_providers", lambda: [CUDA_EP, CPU_EP]
    )
    assert default_execution_provider(gpu) == CUDA_EP
    external = DeviceInfo(id="titanx_1", kind=DeviceKind.EXTERNAL, name="TITAN X", fingerprint="x")
    with pytest.raises(DeviceError, match="external"):
        default_execution_provider(external)


def test_real_onnxruntime_without_cuda_says_so_clearly(two_gpus):
    gpu = next(d for d in discover() if d.kind is DeviceKind.GPU)
    if CUDA_EP in discovery_module.available_execution_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    with pytest.raises(ExecutionProviderUnavailableError, match="CUDAExecutionProvider is missing"):
        default_execution_provider(gpu)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (FakeNvml.NVML_ERROR_LIBRARY_NOT_FOUND, DeviceLibraryError),
        (FakeNvml.NVML_ERROR_DRIVER_NOT_LOADED, DeviceLibraryError),
        (FakeNvml.NVML_ERROR_NOT_SUPPORTED, DeviceNotSupportedError),
        (FakeNvml.NVML_ERROR_NO_PERMISSION, DevicePermissionError),
        (FakeNvml.NVML_ERROR_GPU_IS_LOST, DeviceError),
    ],
)
def test_vendor_errors_are_translated(code, expected):
    error = translate(FakeNVMLError(code), "nvmlSomething()", FakeNvml())
    assert type(error) is expected
    assert "nvmlSomething()" in str(error)


def test_translation_of_os_errors_and_device_errors():
    assert isinstance(
        translate(OSError("libnvidia-ml.so.1: cannot open"), "nvmlInit()"), DeviceLibraryError
    )
    original = DeviceNotSupportedError("x")
    assert translate(original, "y") is original


@pytest.mark.gpu
def test_real_gpus_are_discovered():
    gpus = [d for d in discover() if d.kind is DeviceKind.GPU]
    if not gpus:
        pytest.skip("no NVIDIA GPU visible to NVML here")
    for gpu in gpus:
        assert gpu.properties["uuid"] and gpu.properties["memory_total_bytes"] > 0
