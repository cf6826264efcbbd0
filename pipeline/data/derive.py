"""Derive the compact reference-data copy (``nb201.npz``) from the public CSV tables.

Run once by maintainers: ``python -m hilnas.pipeline.data.derive ../shared/data/nb201``.
The figures are the published ones (sources in ``pipeline/data/README.md``); this script only
re-packs them: architecture codes in the official NB201 index order, accuracy, latency and energy.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
from hilnas.pipeline.spaces.nb201 import NB201

OUT = Path(__file__).with_name("nb201.npz")


def _read(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def derive(src: Path, out: Path = OUT) -> Path:
    space = NB201()
    head, rows = _read(src / "accuracy.csv")
    n = len(rows)
    if n != 15625:
        raise ValueError(f"{src / 'accuracy.csv'} has {n} rows, expected 15625")
    codes = np.zeros((n, 6), dtype=np.int8)
    acc_cols = ["cifar10_test", "cifar100_test", "imagenet16_test", "cifar10_valid"]
    acc = np.zeros((n, len(acc_cols)))
    params = np.zeros(n)
    for row in rows:
        rec = dict(zip(head, row, strict=False))
        i = int(rec["idx"])
        codes[i] = space.parse(rec["arch"])
        acc[i] = [float(rec[c]) for c in acc_cols]
        params[i] = float(rec["params_mb"])
    lat_head, lat_rows = _read(src / "latency_ms.csv")
    lat = np.zeros((n, len(lat_head) - 1))
    for row in lat_rows:
        lat[int(row[0])] = [float(v) for v in row[1:]]
    en_head, en_rows = _read(src / "energy_mj.csv")
    en = np.zeros((n, len(en_head) - 1))
    for row in en_rows:
        en[int(row[0])] = [float(v) for v in row[1:]]
    ref = json.loads((src / "reference_archs.json").read_text())["reference_arch_indices"]
    np.savez_compressed(
        out,
        arch_codes=codes,
        accuracy=acc,
        accuracy_columns=np.array(acc_cols),
        params_mb=params,
        latency_ms=lat,
        latency_devices=np.array(lat_head[1:]),
        energy_mj=en,
        energy_devices=np.array(en_head[1:]),
        reference_indices=np.array(ref, dtype=np.int64),
    )
    return out


if __name__ == "__main__":
    print(derive(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/nb201")))
