"""HW-GPT-Bench's real GPT-S measurements (10,000 architectures x 10 devices), shipped compactly.

``data/measured.npz`` is ``measured.csv`` of the plain-data copy re-packed by ``derive.py``:
the architecture codes, which rows trained the latency/energy surrogates (the first 8,000;
judge a surrogate on the other 2,000 only), the logged perplexity (supernet weights), latency
in ms and energy in mJ, per forward pass of 8 x 1,024 tokens, as float32 (the logs carry 3-4
significant digits). Energies <= 0 are NaN (none in this release). For predictor benchmarks:
these are measurements, not surrogate outputs.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from hilnas.devices.errors import NotFoundError
from hilnas.pipeline.spaces.gpt_s.surrogates import DATA_DIR

MEASURED_FILE = DATA_DIR / "measured.npz"


@dataclass(frozen=True)
class MeasuredTable:
    """Read-only arrays; row ``i`` is HW-GPT-Bench's ``i``-th profiled architecture."""

    arch_codes: np.ndarray  # (10000, 27) int8 canonical codes
    surrogate_train: np.ndarray  # (10000,) bool: rows the latency/energy MLPs were fitted on
    perplexity: np.ndarray  # (10000,)
    latency_ms: np.ndarray  # (10000, 10)
    energy_mj: np.ndarray  # (10000, 10), NaN where invalid
    devices: tuple[str, ...]
    sha256: str

    def column(self, device: str) -> int:
        try:
            return self.devices.index(device)
        except ValueError:
            raise NotFoundError(
                f"no GPT-S measurements for device {device!r}; known: {', '.join(self.devices)}"
            ) from None

    def latency(self, device: str) -> np.ndarray:
        """Measured latency (ms per 8 x 1,024-token forward pass) of one device."""
        return self.latency_ms[:, self.column(device)]

    def energy(self, device: str) -> np.ndarray:
        """Measured energy (mJ per 8 x 1,024-token forward pass) of one device; NaN = invalid."""
        return self.energy_mj[:, self.column(device)]


@functools.lru_cache(maxsize=1)
def load_measured(path: str | Path = MEASURED_FILE) -> MeasuredTable:
    """Load the shipped measurement table (cached; arrays are read-only)."""
    path = Path(path)
    if not path.exists():
        raise NotFoundError(
            f"GPT-S measurement table {path} is missing; reinstall hilnas or rebuild it with "
            "`python -m hilnas.pipeline.spaces.gpt_s.derive ../shared/data/gpt_s`"
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    for a in arrays.values():
        a.setflags(write=False)
    return MeasuredTable(
        arch_codes=arrays["arch_codes"],
        surrogate_train=arrays["surrogate_train"],
        perplexity=arrays["perplexity"],
        latency_ms=arrays["latency_ms"],
        energy_mj=arrays["energy_mj"],
        devices=tuple(str(s) for s in arrays["devices"]),
        sha256=digest,
    )
