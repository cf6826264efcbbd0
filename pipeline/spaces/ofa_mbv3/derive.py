"""Rebuild ``data/latency.npz`` from the plain-data copy of HELP's OFA latency tables.

Run by maintainers: ``python -m hilnas.pipeline.spaces.ofa_mbv3.derive ../shared/data/ofa``.
It reads ``archs.csv``, ``latency_ms.csv`` and ``reference_archs.json`` (see that folder's
README) and writes, next to this file under ``data/``, ``latency.npz`` with:

- ``arch_codes`` ``(5000, 46)`` int8: the canonical code of each subnet in HELP's order (the
  string is parsed by this space, so a string it refuses stops the build);
- ``latency_ms`` ``(5000, 9)`` float64: the source values unchanged;
- ``configs``: the 9 configuration names (device_batch), in column order;
- ``reference_indices``: HELP's 10 hardware-embedding rows (checked against this space's
  reference architectures).

Nothing is filtered or rescaled. Source, citation and the MIT notice: ``data/README.md``.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
from hilnas.devices.errors import DataIntegrityError, NotFoundError

DATA_DIR = Path(__file__).resolve().parent / "data"
LATENCY_FILE = DATA_DIR / "latency.npz"


def derive(src: Path, out: Path = LATENCY_FILE) -> Path:
    """Parse HELP's 5,000 subnets and their 9 latency columns into one compressed ``.npz``."""
    from hilnas.pipeline.spaces import get_space

    space = get_space("ofa_mbv3")
    for name in ("archs.csv", "latency_ms.csv", "reference_archs.json"):
        if not (src / name).is_file():
            raise NotFoundError(f"{src / name} is missing; pass the folder ../shared/data/ofa")
    with (src / "archs.csv").open(newline="") as f:
        archs = {int(r["idx"]): space.parse(r["arch"]) for r in csv.DictReader(f)}
    with (src / "latency_ms.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        configs = [c for c in (reader.fieldnames or []) if c != "idx"]
        lat = {int(r["idx"]): [float(r[c]) for c in configs] for r in reader}
    idx = sorted(archs)
    if idx != list(range(len(idx))) or sorted(lat) != idx:
        raise DataIntegrityError(f"{src}: archs.csv and latency_ms.csv rows do not match 0..n-1")
    refs = json.loads((src / "reference_archs.json").read_text())["indices"]
    mine = space.reference_architectures()
    if [archs[i] for i in refs] != mine:
        raise DataIntegrityError(f"{src}: reference rows differ from the space's references")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out,
        arch_codes=np.array([archs[i] for i in idx], dtype=np.int8),
        latency_ms=np.array([lat[i] for i in idx], dtype=np.float64),
        configs=np.array(configs),
        reference_indices=np.array(refs, dtype=np.int64),
    )
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m hilnas.pipeline.spaces.ofa_mbv3.derive ../shared/data/ofa")
        return 2
    print(derive(Path(args[0])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
