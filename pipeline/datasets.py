"""Datasets for supernet-mode search: scikit-learn's 8x8 digits (default) and CIFAR-10 from disk.

Both come back as :class:`DatasetSplits`: float32 image tensors ``(N, C, H, W)`` standardised
per channel with the training split's statistics, int64 labels, and seeded train / validation /
test splits.

CIFAR-10 is read from the *binary* distribution (``cifar-10-batches-bin``: ``data_batch_1.bin``
... ``data_batch_5.bin`` and ``test_batch.bin``, each record one label byte and 3072 pixel
bytes), which is plain bytes. The Python distribution (``cifar-10-batches-py``) is a set of
pickles; unpickling a downloaded file can run arbitrary code, so hilnas refuses it and says
which file to download instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from hilnas.devices.errors import InvalidInputError

DATASETS: tuple[str, ...] = ("digits", "cifar10")
CIFAR_BIN_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
_CIFAR_RECORD = 1 + 32 * 32 * 3
#: The block between the skeleton's stages per dataset (``ModelConfig.reduction``). On 8x8
#: digits NB201's residual blocks alone solve the task: trained alone (C=8, N=1, 30 epochs,
#: 3 seeds) all-skip cells reach 2.1 % test error, all-conv1x1 2.2 %, all-conv3x3 1.6 %, so the
#: cell, the thing searched, hardly matters and there is hardly an accuracy/latency trade-off.
#: With pooled reductions (the residual block's shortcut alone) the same runs give 16.8 %
#: (all-skip), 29.7 % (all-pool), 3.6 % (all-conv1x1), 1.2 % (all-conv3x3).
#: Reproduce: ``python -m hilnas.pipeline.benchmarks.supernet --skeleton-study``.
DEFAULT_REDUCTION: dict[str, str] = {"digits": "pool", "cifar10": "residual"}


class DatasetError(InvalidInputError):
    """A dataset that cannot be loaded; the message says how to fix it."""


@dataclass(frozen=True)
class DatasetSplits:
    """Train / validation / test tensors of one dataset (torch tensors)."""

    name: str
    train_x: object
    train_y: object
    val_x: object
    val_y: object
    test_x: object
    test_y: object
    input_size: int
    in_channels: int
    num_classes: int
    seed: int
    source: str

    def model_config(self, channels: int, cells_per_stage: int, reduction: str | None = None):
        """The NB201 skeleton for this dataset's input size, channels and classes
        (``reduction``: ``None`` = the dataset's default, see :data:`DEFAULT_REDUCTION`)."""
        from hilnas.pipeline.spaces import ModelConfig

        return ModelConfig(
            channels=channels,
            cells_per_stage=cells_per_stage,
            input_size=self.input_size,
            in_channels=self.in_channels,
            num_classes=self.num_classes,
            reduction=reduction or DEFAULT_REDUCTION.get(self.name, "residual"),
        )

    def describe(self) -> dict:
        return {
            "name": self.name,
            "source": self.source,
            "seed": self.seed,
            "train": len(self.train_y),
            "val": len(self.val_y),
            "test": len(self.test_y),
            "input": [self.in_channels, self.input_size, self.input_size],
            "classes": self.num_classes,
        }


def dataset_model_config(
    name: str, channels: int, cells_per_stage: int, reduction: str | None = None
):
    """The skeleton for a dataset without loading it (digits: 1x8x8, CIFAR-10: 3x32x32)."""
    from hilnas.pipeline.spaces import ModelConfig

    shapes = {"digits": (8, 1, 10), "cifar10": (32, 3, 10)}
    if name not in shapes:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    size, ch, classes = shapes[name]
    return ModelConfig(
        channels=channels,
        cells_per_stage=cells_per_stage,
        input_size=size,
        in_channels=ch,
        num_classes=classes,
        reduction=reduction or DEFAULT_REDUCTION[name],
    )


def _split(n: int, seed: int, val_fraction: float, test_fraction: float) -> tuple[np.ndarray, ...]:
    if not (0 < val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DatasetError(
            f"val_fraction and test_fraction must be in (0, 1) and sum below 1, got "
            f"{val_fraction}, {test_fraction}"
        )
    perm = np.random.default_rng(seed).permutation(n)
    n_val, n_test = round(n * val_fraction), round(n * test_fraction)
    return perm[n_val + n_test :], perm[:n_val], perm[n_val : n_val + n_test]


def _standardise(x: np.ndarray, train_idx: np.ndarray) -> np.ndarray:
    mean = x[train_idx].mean(axis=(0, 2, 3), keepdims=True)
    std = x[train_idx].std(axis=(0, 2, 3), keepdims=True) + 1e-6
    return ((x - mean) / std).astype(np.float32)


def _to_splits(name, x, y, train, val, test, seed, source, num_classes) -> DatasetSplits:
    import torch

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a))

    return DatasetSplits(
        name=name,
        train_x=t(x[train]),
        train_y=t(y[train].astype(np.int64)),
        val_x=t(x[val]),
        val_y=t(y[val].astype(np.int64)),
        test_x=t(x[test]),
        test_y=t(y[test].astype(np.int64)),
        input_size=int(x.shape[-1]),
        in_channels=int(x.shape[1]),
        num_classes=num_classes,
        seed=seed,
        source=source,
    )


def load_digits(
    *, seed: int = 0, val_fraction: float = 0.2, test_fraction: float = 0.2
) -> DatasetSplits:
    """scikit-learn's handwritten digits: 1,797 images of 1x8x8, 10 classes (no download)."""
    try:
        from sklearn.datasets import load_digits as _load
    except ModuleNotFoundError as exc:  # pragma: no cover - sklearn is in the search extra
        raise DatasetError(
            "the digits dataset needs scikit-learn: pip install 'hilnas[search]'"
        ) from exc
    bunch = _load()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = bunch.target.astype(np.int64)
    train, val, test = _split(len(y), seed, val_fraction, test_fraction)
    return _to_splits(
        "digits",
        _standardise(x, train),
        y,
        train,
        val,
        test,
        seed,
        "sklearn.datasets.load_digits",
        10,
    )


def _find_cifar_dir(root: Path) -> Path:
    """The folder holding the binary batches: ``root`` itself or ``root/cifar-10-batches-bin``."""
    if not root.exists():
        raise DatasetError(f"CIFAR-10 directory {root} does not exist")
    for cand in (root, root / "cifar-10-batches-bin"):
        if (cand / "data_batch_1.bin").is_file():
            return cand
    for cand in (root, root / "cifar-10-batches-py"):
        if (cand / "data_batch_1").is_file() or (cand / "batches.meta").is_file():
            raise DatasetError(
                f"{cand} holds the Python (pickle) version of CIFAR-10; hilnas does not unpickle "
                f"downloaded files (a pickle can run code). Download the binary version "
                f"({CIFAR_BIN_URL}), unpack it and point --data-dir at cifar-10-batches-bin"
            )
    raise DatasetError(
        f"no CIFAR-10 binary batches (data_batch_1.bin ... test_batch.bin) under {root}; "
        f"download {CIFAR_BIN_URL} and unpack it there"
    )


def _read_cifar_bin(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % _CIFAR_RECORD:
        raise DatasetError(
            f"{path} is not a CIFAR-10 binary batch (size {raw.size} bytes is not a multiple of "
            f"{_CIFAR_RECORD})"
        )
    rec = raw.reshape(-1, _CIFAR_RECORD)
    labels = rec[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise DatasetError(f"{path} has labels above 9: not a CIFAR-10 binary batch")
    images = rec[:, 1:].reshape(-1, 3, 32, 32).astype(np.float32) / 255.0
    return images, labels


def load_cifar10(
    root: str | Path,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    limit: int | None = None,
) -> DatasetSplits:
    """CIFAR-10 from the binary batches under ``root``; the official test batch is the test
    split, the validation split is carved from the training batches (seeded). ``limit`` keeps
    a seeded subset of the training batches (for quick CPU runs)."""
    folder = _find_cifar_dir(Path(root).expanduser())
    parts = []
    for i in range(1, 6):
        path = folder / f"data_batch_{i}.bin"
        if not path.is_file():
            raise DatasetError(f"{path} is missing; the binary CIFAR-10 has data_batch_1..5.bin")
        parts.append(_read_cifar_bin(path))
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    test_path = folder / "test_batch.bin"
    if not test_path.is_file():
        raise DatasetError(f"{test_path} is missing")
    tx, ty = _read_cifar_bin(test_path)
    rng = np.random.default_rng(seed)
    keep = rng.permutation(len(y))[: limit or len(y)]
    x, y = x[keep], y[keep]
    n_val = round(len(y) * val_fraction)
    val, train = np.arange(n_val), np.arange(n_val, len(y))
    allx = np.concatenate([x, tx])
    ally = np.concatenate([y, ty])
    test = np.arange(len(y), len(ally))
    return _to_splits(
        "cifar10", _standardise(allx, train), ally, train, val, test, seed, str(folder), 10
    )


def load_dataset(
    name: str = "digits", *, root: str | Path | None = None, seed: int = 0, limit: int | None = None
) -> DatasetSplits:
    """A dataset by name (``digits`` or ``cifar10``; CIFAR-10 needs ``root``; ``limit``: keep a
    seeded subset of CIFAR-10's training batches, for a quicker run on a CPU)."""
    if name == "digits":
        return load_digits(seed=seed)
    if name == "cifar10":
        if root is None:
            raise DatasetError(
                "CIFAR-10 is read from a local directory: pass the folder holding "
                "cifar-10-batches-bin (binary version, " + CIFAR_BIN_URL + ")"
            )
        return load_cifar10(root, seed=seed, limit=limit)
    raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
