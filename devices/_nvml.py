"""The one place where NVML (nvidia-ml-py, imported as ``pynvml``) is called.

pynvml is imported lazily, so a machine without it imports hilnas fine. Every call goes through
:meth:`Nvml.call`, which translates ``pynvml.NVMLError`` (and a missing library) into the
:class:`~hilnas.devices.base.DeviceError` subclasses; no other module catches vendor errors.
Tests pass a stand-in module (:class:`hilnas.devices.testing.FakeNvml`) or patch
``sys.modules["pynvml"]``.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from hilnas.devices.base import (
    DeviceError,
    DeviceLibraryError,
    DeviceNotSupportedError,
    DevicePermissionError,
)

INSTALL_HINT = "install it with `pip install nvidia-ml-py`"
DRIVER_HINT = (
    "the NVIDIA driver's libnvidia-ml is missing or not loaded; expected on a machine without an "
    "NVIDIA GPU, otherwise install/load the NVIDIA driver"
)

# NVML return codes (nvml.h); looked up on the module first, these are the fallbacks.
_LIBRARY_CODES = {
    "NVML_ERROR_UNINITIALIZED": 1,
    "NVML_ERROR_DRIVER_NOT_LOADED": 9,
    "NVML_ERROR_LIBRARY_NOT_FOUND": 12,
    "NVML_ERROR_FUNCTION_NOT_FOUND": 13,
    "NVML_ERROR_LIB_RM_VERSION_MISMATCH": 18,
}
_NOT_SUPPORTED = ("NVML_ERROR_NOT_SUPPORTED", 3)
_NO_PERMISSION = ("NVML_ERROR_NO_PERMISSION", 4)


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def translate(exc: BaseException, what: str, module: ModuleType | Any | None = None) -> DeviceError:
    """Map a pynvml exception raised by ``what`` to a DeviceError subclass (never raises)."""
    if isinstance(exc, DeviceError):
        return exc
    code = getattr(exc, "value", None)

    def const(name: str, default: int) -> int:
        return getattr(module, name, default) if module is not None else default

    message = f"NVML {what} failed: {exc}"
    if code is not None:
        if code in {const(n, v) for n, v in _LIBRARY_CODES.items()}:
            return DeviceLibraryError(f"{message} ({DRIVER_HINT})")
        if code == const(*_NOT_SUPPORTED):
            return DeviceNotSupportedError(message)
        if code == const(*_NO_PERMISSION):
            return DevicePermissionError(f"{message} (run as a user allowed to query the GPU)")
    if isinstance(exc, OSError):  # libnvidia-ml.so could not be opened
        return DeviceLibraryError(f"{message} ({DRIVER_HINT})")
    return DeviceError(message)


class Nvml:
    """A lazily imported pynvml with error translation. Use as a context manager (init/shutdown).

    Not thread-safe; NVML itself reference-counts ``nvmlInit``/``nvmlShutdown``.
    """

    def __init__(self, module: ModuleType | Any | None = None) -> None:
        self._module = module
        self._initialised = False

    @property
    def module(self) -> ModuleType | Any:
        if self._module is None:
            try:
                self._module = importlib.import_module("pynvml")
            except ImportError as exc:  # also sys.modules["pynvml"] = None
                raise DeviceLibraryError(
                    f"nvidia-ml-py (pynvml) is not importable ({exc}); {INSTALL_HINT}"
                ) from exc
        return self._module

    def call(self, name: str, *args: Any) -> Any:
        """Call ``pynvml.<name>(*args)``; vendor errors become DeviceError subclasses."""
        module = self.module
        fn = getattr(module, name, None)
        if fn is None:
            raise DeviceNotSupportedError(
                f"this nvidia-ml-py has no {name}(); upgrade it with `pip install -U nvidia-ml-py`"
            )
        try:
            return fn(*args)
        except Exception as exc:  # every vendor error is translated here
            raise translate(exc, f"{name}()", module) from exc

    def text(self, name: str, *args: Any) -> str:
        return _text(self.call(name, *args))

    def init(self) -> Nvml:
        if not self._initialised:
            self.call("nvmlInit")
            self._initialised = True
        return self

    def shutdown(self) -> None:
        if self._initialised:
            self._initialised = False
            try:
                self.call("nvmlShutdown")
            except DeviceError:
                pass

    def __enter__(self) -> Nvml:
        return self.init()

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
