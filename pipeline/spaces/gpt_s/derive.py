"""Rebuild the GPT-S data shipped in ``data/`` from the plain-data copy of HW-GPT-Bench.

Run by maintainers: ``python -m hilnas.pipeline.spaces.gpt_s.derive ../shared/data/gpt_s``.
It writes, next to this file under ``data/``:

- ``surrogates.npz``: the 21 MLPs' float32 tensors copied unchanged (keys ``<model>/fcK.weight``
  and ``<model>/fcK.bias``); each source ``.npz`` is checked against the SHA-256 that
  ``surrogates.json`` records before it is copied.
- ``measured.npz``: ``measured.csv`` re-packed: architecture codes (int8), the surrogates'
  train/test split, perplexity, latency (ms) and energy (mJ = Wh x 3.6e6) on the 10 devices as
  float32; energies <= 0 become NaN (invalid).
- ``LICENSE.HW-GPT-Bench.txt``: the source's licence, copied.

Nothing is retrained or rescaled beyond the Wh -> mJ unit change.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from hilnas.devices.errors import DataIntegrityError, NotFoundError
from hilnas.pipeline.spaces.gpt_s.space import GPTSpace
from hilnas.pipeline.spaces.gpt_s.surrogates import (
    DATA_DIR,
    DEVICES,
    MJ_PER_WH,
    MODEL_NAMES,
)

LAYER_KEYS = tuple(f"fc{k}.{p}" for k in range(1, 6) for p in ("weight", "bias"))


def derive_surrogates(src: Path, out: Path) -> Path:
    """Copy the 21 MLPs into one compressed ``.npz`` after checking their checksums."""
    meta = json.loads((src / "surrogates.json").read_text())["models"]
    arrays: dict[str, np.ndarray] = {}
    for name in MODEL_NAMES:
        path = src / meta[name]["file"]
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != meta[name]["npz_sha256"]:
            raise DataIntegrityError(
                f"{path} has sha256 {digest}, surrogates.json says {meta[name]['npz_sha256']}; "
                "use an unmodified copy of the data"
            )
        with np.load(path, allow_pickle=False) as z:
            for key in LAYER_KEYS:
                a = z[key]
                if a.dtype != np.float32:
                    raise DataIntegrityError(f"{path}:{key} is {a.dtype}, expected float32")
                arrays[f"{name}/{key}"] = a
    np.savez_compressed(out, **arrays)
    return out


def derive_measured(src: Path, out: Path) -> Path:
    """Re-pack ``measured.csv`` into compact arrays (see the module docstring)."""
    space = GPTSpace()
    with (src / "measured.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    n = len(rows)
    codes = np.zeros((n, space.num_decisions), dtype=np.int8)
    train = np.zeros(n, dtype=bool)
    ppl = np.zeros(n, dtype=np.float32)
    lat = np.zeros((n, len(DEVICES)), dtype=np.float32)
    energy = np.zeros((n, len(DEVICES)), dtype=np.float32)
    for i, row in enumerate(rows):
        if int(row["idx"]) != i:
            raise DataIntegrityError(
                f"measured.csv row {i} has idx {row['idx']}; rows must be in order"
            )
        codes[i] = space.parse(row["arch"])
        train[i] = row["surrogate_split"] == "train"
        ppl[i] = float(row["perplexity"])
        lat[i] = [float(row[f"latency_ms_{d}"]) for d in DEVICES]
        energy[i] = [float(row[f"energy_wh_{d}"]) * MJ_PER_WH for d in DEVICES]
    energy[~(energy > 0)] = np.nan
    np.savez_compressed(
        out,
        arch_codes=codes,
        surrogate_train=train,
        perplexity=ppl,
        latency_ms=lat,
        energy_mj=energy,
        devices=np.array(DEVICES),
    )
    return out


def derive(src: Path, dest: Path = DATA_DIR) -> list[Path]:
    """Write every derived file into ``dest``; returns their paths."""
    if not (src / "surrogates.json").exists():
        raise NotFoundError(
            f"{src} holds no surrogates.json; pass the folder of HW-GPT-Bench's plain data "
            "(e.g. ../shared/data/gpt_s)"
        )
    dest.mkdir(parents=True, exist_ok=True)
    licence = dest / "LICENSE.HW-GPT-Bench.txt"
    shutil.copyfile(src / "LICENSE.HW-GPT-Bench.txt", licence)
    return [
        derive_surrogates(src, dest / "surrogates.npz"),
        derive_measured(src, dest / "measured.npz"),
        licence,
    ]


if __name__ == "__main__":
    for p in derive(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/gpt_s")):
        print(p, p.stat().st_size)
