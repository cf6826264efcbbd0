"""hilnas: devices — what hardware is here, its stable ids and fingerprints, its energy counters.

No torch, onnx or prefect; pynvml and onnxruntime are imported lazily, only when needed.
"""

from hilnas.devices.base import (
    LOCAL_ID_PATTERN,
    DeviceBackend,
    DeviceConfig,
    DeviceError,
    DeviceInfo,
    DeviceKind,
    DeviceLibraryError,
    DeviceNotFoundError,
    DeviceNotSupportedError,
    DevicePermissionError,
    Discovery,
    ExecutionProviderUnavailableError,
    fingerprint_of,
    local_device_id,
)
from hilnas.devices.discovery import (
    CPU_EP,
    CUDA_EP,
    available_execution_providers,
    default_execution_provider,
    discover,
    get_device,
    probe,
)
from hilnas.devices.energy import (
    EnergyCounter,
    EnergyMethod,
    EnergyReading,
    NvmlCounter,
    RaplCounter,
    counter_for,
    counter_from_spec,
)

__all__ = [
    "CPU_EP",
    "CUDA_EP",
    "LOCAL_ID_PATTERN",
    "DeviceBackend",
    "DeviceConfig",
    "DeviceError",
    "DeviceInfo",
    "DeviceKind",
    "DeviceLibraryError",
    "DeviceNotFoundError",
    "DeviceNotSupportedError",
    "DevicePermissionError",
    "Discovery",
    "EnergyCounter",
    "EnergyMethod",
    "EnergyReading",
    "ExecutionProviderUnavailableError",
    "NvmlCounter",
    "RaplCounter",
    "available_execution_providers",
    "counter_for",
    "counter_from_spec",
    "default_execution_provider",
    "discover",
    "fingerprint_of",
    "get_device",
    "local_device_id",
    "probe",
]
