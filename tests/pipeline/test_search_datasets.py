"""Datasets of supernet-mode search: digits, CIFAR-10 binary batches, no pickles."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from hilnas.pipeline.datasets import (
    DatasetError,
    dataset_model_config,
    load_cifar10,
    load_dataset,
    load_digits,
)


def test_digits_splits_are_seeded_and_standardised():
    a, b, c = load_digits(seed=0), load_digits(seed=0), load_digits(seed=1)
    assert a.train_x.shape[1:] == (1, 8, 8) and a.num_classes == 10 and a.input_size == 8
    assert len(a.train_y) + len(a.val_y) + len(a.test_y) == 1797
    assert torch.equal(a.val_y, b.val_y) and not torch.equal(a.val_y, c.val_y)
    assert abs(float(a.train_x.mean())) < 1e-3
    assert a.model_config(8, 1).key() == dataset_model_config("digits", 8, 1).key()


def _write_batch(path, n, rng):
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    pixels = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    np.concatenate([labels[:, None], pixels], axis=1).tofile(path)
    return labels


def test_cifar10_binary_batches_are_read_without_pickle(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for i in range(1, 6):
        _write_batch(folder / f"data_batch_{i}.bin", 20, rng)
    test_labels = _write_batch(folder / "test_batch.bin", 10, rng)
    data = load_cifar10(tmp_path, seed=0, val_fraction=0.1)
    assert data.train_x.shape == (90, 3, 32, 32)
    assert data.val_x.shape == (10, 3, 32, 32)
    assert np.array_equal(data.test_y.numpy(), test_labels.astype(np.int64))
    assert data.model_config(16, 5).key() == dataset_model_config("cifar10", 16, 5).key()


def test_cifar10_python_pickles_are_refused_with_the_fix(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(b"\x80\x04not read")
    with pytest.raises(DatasetError, match="pickle.*binary version"):
        load_cifar10(tmp_path)


def test_bad_cifar_inputs_are_explained(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_cifar10(tmp_path / "nope")
    with pytest.raises(DatasetError, match="no CIFAR-10 binary batches"):
        load_cifar10(tmp_path)
    (tmp_path / "data_batch_1.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(DatasetError, match="missing|not a CIFAR-10"):
        load_cifar10(tmp_path)
    with pytest.raises(DatasetError, match="local directory"):
        load_dataset("cifar10")
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_dataset("mnist")
