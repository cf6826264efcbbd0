"""The DeviceBackend / DeviceInfo promises, checked for every implementation.

Implementations: the real CPU of the test machine (with its real powercap, and with a
*simulated* RAPL tree), and NVIDIA GPUs *simulated* through a stand-in pynvml module (one with
and one without an energy counter). A real-GPU case is marked ``gpu`` and skipped without one.
"""

from __future__ import annotations

import json
import re
from dataclasses import FrozenInstanceError

import pytest
from hilnas.devices import (
    LOCAL_ID_PATTERN,
    DeviceBackend,
    DeviceInfo,
    DeviceKind,
    EnergyCounter,
    ExecutionProviderUnavailableError,
    counter_for,
    default_execution_provider,
    get_device,
)
from hilnas.devices.cpu import CpuBackend
from hilnas.devices.nvidia import NvidiaBackend
from hilnas.devices.testing import FakeGpu, FakeNvml, FakePowercap

REQUIRED_PROPERTIES = {
    DeviceKind.CPU: {
        "model",
        "arch",
        "physical_cores",
        "logical_cores",
        "max_freq_mhz",
        "memory_total_bytes",
    },
    DeviceKind.GPU: {
        "uuid",
        "memory_total_bytes",
        "power_limit_w",
        "driver_version",
        "total_energy_counter",
    },
}


def _simulated_gpus() -> FakeNvml:
    return FakeNvml(
        [
            FakeGpu(uuid="GPU-1111"),
            FakeGpu(name="NVIDIA Simulated P100", uuid="GPU-2222", energy_mj=None),
        ]
    )


@pytest.fixture(
    params=[
        "cpu-real",
        "cpu-simulated-rapl",
        "gpu-simulated",
        pytest.param("gpu-real", marks=pytest.mark.gpu),
    ]
)
def implementation(request, tmp_path):
    """(backend factory, counter_for kwargs, expected count) for each implementation."""
    if request.param == "cpu-real":
        return (lambda: CpuBackend()), {}, 1
    if request.param == "cpu-simulated-rapl":
        pc = FakePowercap(tmp_path / "powercap")
        pc.add_zone(0, "package-0", energy_uj=10)
        return (lambda: CpuBackend(powercap_root=pc.root)), {"powercap_root": pc.root}, 1
    if request.param == "gpu-simulated":
        fake = _simulated_gpus()
        return (lambda: NvidiaBackend(nvml=fake)), {"nvml": fake}, 2
    found = NvidiaBackend().discover()
    if not found:
        pytest.skip("no NVIDIA GPU visible to NVML here")
    return (lambda: NvidiaBackend()), {}, len(found)


def test_backend_is_a_device_backend(implementation):
    make, _, _ = implementation
    assert isinstance(make(), DeviceBackend)


def test_devices_keep_the_deviceinfo_promises(implementation):
    make, _, count = implementation
    backend = make()
    devices = backend.discover()
    assert len(devices) == count
    for info in devices:
        assert isinstance(info, DeviceInfo)
        assert LOCAL_ID_PATTERN.match(info.id), info.id
        assert info.id.startswith(f"{backend.kind.value}-") and info.kind is backend.kind
        assert re.fullmatch(r"[0-9a-f]{64}", info.fingerprint)
        assert info.name.strip()
        assert info.aliases and all(a == a.strip() and a for a in info.aliases)
        assert REQUIRED_PROPERTIES[info.kind] <= set(info.properties)
        # exactly one of: a counter name, or the reason there is none
        assert (info.energy_counter is None) != (info.energy_unavailable_reason is None)
        assert info.energy_counter in (None, "rapl", "nvml")
        assert DeviceBackend.supports_energy(info) == (info.energy_counter is not None)
        # serialisable, and immutable
        assert json.loads(json.dumps(info.to_dict()))["id"] == info.id
        with pytest.raises(FrozenInstanceError):
            info.id = "x"  # type: ignore[misc]
    assert len({d.id for d in devices}) == len(devices)
    aliases = [a for d in devices for a in d.aliases]
    assert len(aliases) == len(set(aliases))


def test_ids_and_fingerprints_are_stable(implementation):
    make, _, _ = implementation
    first = [(d.id, d.fingerprint) for d in make().discover()]
    second = [(d.id, d.fingerprint) for d in make().discover()]
    assert first == second


def test_lookup_by_id_and_alias(implementation):
    make, _, _ = implementation
    devices = make().discover()
    for info in devices:
        assert get_device(info.id, devices=devices) is info
        for alias in info.aliases:
            assert get_device(alias, devices=devices) is info


def test_energy_counter_matches_discovery(implementation):
    make, counter_kwargs, _ = implementation
    for info in make().discover():
        counter, reason = counter_for(info, **counter_kwargs)
        if info.energy_counter is None:
            assert counter is None and reason
        else:
            assert isinstance(counter, EnergyCounter) and reason is None
            counter.close()


def test_execution_provider_is_known_or_clearly_unavailable(implementation):
    make, _, _ = implementation
    for info in make().discover():
        try:
            provider = default_execution_provider(info)
        except ExecutionProviderUnavailableError as exc:
            assert info.kind is DeviceKind.GPU and "onnxruntime-gpu" in str(exc)
        else:
            assert (
                provider
                == {"cpu": "CPUExecutionProvider", "gpu": "CUDAExecutionProvider"}[info.kind.value]
            )
