"""The deterministic weights of GPT-S decoders: an integer hash of each entry's position.

Latency and energy do not depend on weight values, so hilnas's GPT-S networks carry no random
state: matrix ``name`` of shape ``(rows, cols)`` is ``0.02 * sqrt(3) * (2u - 1)`` with ``u`` a
hash of the flat index salted with the name (affine, squaring, affine, all modulo the prime
2**31 - 1; the square breaks the lattice an affine map alone leaves). Values look uniform with
std 0.02 (GPT-2's initialisation scale) and the spectrum is a random matrix's. Only the first
:data:`TILE_ROWS` rows are hashed; taller matrices repeat that block.

:func:`generated_matrix` is the numpy reference; :mod:`.onnx_direct` writes the same arithmetic
as ONNX nodes (int64, then float32 in the same order), so the torch module and the ONNX graph
hold bit-identical weights while the ONNX file stays a few kB. LayerNorm weights are 1 and
biases 0.
"""

from __future__ import annotations

import zlib

import numpy as np

#: Rows hashed per matrix; taller ones repeat the block (cheap to fold in ONNX Runtime).
TILE_ROWS = 256
LEHMER_A, LEHMER_M = 48271, 2**31 - 1  # the MINSTD generator's multiplier and prime
OFFSET = 12345
#: float32 constants of the mapping to [-1, 1) and the scale (std 0.02).
TO_UNIT = np.float32(2.0**-30)
SCALE = np.float32(0.02 * np.sqrt(3.0))


def salt(name: str) -> int:
    """The per-matrix salt: CRC-32 of the name, 31 bits."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def generated_matrix(name: str, rows: int, cols: int) -> np.ndarray:
    """The float32 ``(rows, cols)`` matrix called ``name`` (see the module docstring)."""
    block = min(rows, TILE_ROWS)
    idx = np.arange(block, dtype=np.int64)[:, None] * cols + np.arange(cols, dtype=np.int64)
    h = (idx * LEHMER_A + salt(name)) % LEHMER_M
    h = (h * h) % LEHMER_M
    h = (h * LEHMER_A + OFFSET) % LEHMER_M
    u = h.astype(np.float32) * TO_UNIT - np.float32(1.0)
    w = u * SCALE
    if block < rows:
        w = np.tile(w, (-(-rows // block), 1))[:rows]
    return np.ascontiguousarray(w)
