"""load_dataset / ImageDataset / DatasetInfo: the public API other areas code against."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qmedgen.data import DatasetInfo, ImageDataset, few_shot_subset, known_datasets, load_dataset
from qmedgen.errors import DataError


def test_public_api_contract():
    ds = load_dataset("embedded-retinamnist")
    assert isinstance(ds, ImageDataset) and isinstance(ds.info, DatasetInfo)
    assert ds.images.dtype == np.uint8 and ds.images.shape == (100, 28, 28, 3)
    assert ds.labels.dtype == np.int64 and ds.labels.shape == (100,)
    info = ds.info
    assert (info.name, info.task, info.n_channels, info.size, info.split, info.n_classes) == (
        "embedded-retinamnist", "ordinal-regression", 3, 28, "train", 5)
    assert info.class_names == ["0", "1", "2", "3", "4"]
    x, y = ds.tensors()
    assert x.dtype == torch.float32 and x.shape == (100, 3, 28, 28) and y.dtype == torch.int64
    assert torch.equal(x, torch.from_numpy(ds.images).permute(0, 3, 1, 2).float() / 127.5 - 1)
    assert x.min() >= -1 and x.max() <= 1
    idx = few_shot_subset(ds.labels, n_per_class=2)
    sub = ds.subset(idx)
    assert len(sub) == 10 and np.array_equal(sub.indices, idx)
    xs, ys = ds.tensors(idx)
    assert xs.shape == (10, 3, 28, 28) and torch.equal(ys, torch.from_numpy(ds.labels[idx]))
    # provenance survives nested subsets
    assert np.array_equal(sub.subset([1, 3]).indices, idx[[1, 3]])


def test_unknown_name_split_and_options():
    with pytest.raises(DataError, match="Did you mean 'bloodmnist'"):
        load_dataset("bloodmnsit")
    with pytest.raises(DataError, match="unknown split"):
        load_dataset("embedded-bloodmnist", split="validation")
    with pytest.raises(DataError, match="train, test"):
        load_dataset("embedded-bloodmnist", split="val")
    with pytest.raises(DataError, match="channels"):
        load_dataset("embedded-bloodmnist", channels=2)
    assert "retinamnist" in known_datasets() and "embedded-bloodmnist" in known_datasets()


def test_channels_and_size_options():
    gray = load_dataset("embedded-bloodmnist", split="test", channels=1)
    assert gray.images.shape == (200, 28, 28, 1) and gray.info.n_channels == 1
    big = load_dataset("embedded-bloodmnist", split="test", size=64)
    assert big.images.shape == (200, 64, 64, 3) and big.info.size == 64


def test_subset_rejects_bad_indices():
    ds = load_dataset("embedded-bloodmnist")
    with pytest.raises(DataError, match="out of range"):
        ds.subset([100])
    with pytest.raises(DataError, match="integers"):
        ds.subset([0.5])
    assert len(ds.subset(ds.labels == 0)) == int((ds.labels == 0).sum())
