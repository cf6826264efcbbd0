"""The compact copy of the public NAS-Bench-201 reference data shipped with hilnas.

One small module is the only door to it: accuracy of all 15,625 architectures, latency on 27
device configurations, energy on two, and the 10 reference architectures of HELP. Sources and
licences are listed in ``pipeline/data/README.md``; ``pipeline/data/derive.py`` rebuilds the file
from the public CSVs. The arrays are read-only and indexed in the official NB201 order.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from hilnas.devices.errors import NotFoundError, PreconditionError

DATA_FILE = Path(__file__).with_name("data") / "nb201.npz"

#: Devices the MODNAS paper trains on, and the six it tests zero-shot (../shared/data/README.md).
MODNAS_TRAIN_DEVICES: tuple[str, ...] = (
    "1080ti_1",
    "1080ti_32",
    "1080ti_256",
    "silver_4114",
    "silver_4210r",
    "samsung_a50",
    "pixel3",
    "essential_ph_1",
    "samsung_s7",
    "titanx_1",
    "titanx_32",
    "titanx_256",
    "gold_6240",
)
MODNAS_TEST_DEVICES: tuple[str, ...] = (
    "titan_rtx_256",
    "gold_6226",
    "fpga",
    "pixel2",
    "raspi4",
    "eyeriss",
)


class ReferenceNotFoundError(NotFoundError, KeyError):
    """A device or column the shipped reference data does not hold (also a ``KeyError``)."""

    __str__ = Exception.__str__  # the message as written, not KeyError's quoted repr


class ReferenceDataMissingError(PreconditionError, FileNotFoundError):
    """The shipped reference data file is missing (a broken installation)."""


@dataclass(frozen=True)
class NB201Reference:
    """Arrays of the reference data; rows follow the official NB201 index order."""

    arch_codes: np.ndarray  # (15625, 6) int8 option indices
    accuracy: np.ndarray  # (15625, 4) % top-1
    accuracy_columns: tuple[str, ...]
    params_mb: np.ndarray  # (15625,) millions of parameters
    latency_ms: np.ndarray  # (15625, 27)
    latency_devices: tuple[str, ...]
    energy_mj: np.ndarray  # (15625, 2)
    energy_devices: tuple[str, ...]
    reference_indices: tuple[int, ...]
    sha256: str

    def latency(self, device: str) -> np.ndarray:
        """Latency column (ms) of one device configuration."""
        try:
            return self.latency_ms[:, self.latency_devices.index(device)]
        except ValueError:
            raise ReferenceNotFoundError(
                f"no reference latency for {device!r}; known: {', '.join(self.latency_devices)}"
            ) from None

    def energy(self, device: str) -> np.ndarray:
        """Energy column (mJ per inference) of one device."""
        try:
            return self.energy_mj[:, self.energy_devices.index(device)]
        except ValueError:
            raise ReferenceNotFoundError(
                f"no reference energy for {device!r}; known: {', '.join(self.energy_devices)}"
            ) from None

    def accuracy_of(self, column: str = "cifar10_test") -> np.ndarray:
        try:
            return self.accuracy[:, self.accuracy_columns.index(column)]
        except ValueError:
            raise ReferenceNotFoundError(
                f"no accuracy column {column!r}; known: {', '.join(self.accuracy_columns)}"
            ) from None


@functools.lru_cache(maxsize=1)
def load_nb201(path: str | Path = DATA_FILE) -> NB201Reference:
    """Load the shipped reference data (cached; arrays are made read-only)."""
    path = Path(path)
    if not path.exists():
        raise ReferenceDataMissingError(
            f"reference data {path} is missing; reinstall hilnas or rebuild it with "
            "`python -m hilnas.pipeline.data.derive ../shared/data/nb201`"
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    for a in arrays.values():
        a.setflags(write=False)
    return NB201Reference(
        arch_codes=arrays["arch_codes"],
        accuracy=arrays["accuracy"],
        accuracy_columns=tuple(str(s) for s in arrays["accuracy_columns"]),
        params_mb=arrays["params_mb"],
        latency_ms=arrays["latency_ms"],
        latency_devices=tuple(str(s) for s in arrays["latency_devices"]),
        energy_mj=arrays["energy_mj"],
        energy_devices=tuple(str(s) for s in arrays["energy_devices"]),
        reference_indices=tuple(int(i) for i in arrays["reference_indices"]),
        sha256=digest,
    )
