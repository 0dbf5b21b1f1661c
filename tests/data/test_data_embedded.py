"""The embedded MedMNIST subsets shipped in the package."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from qmedgen.data import embedded, load_dataset
from qmedgen.errors import DataError


@pytest.mark.parametrize(("name", "n_classes"), [("embedded-retinamnist", 5), ("embedded-bloodmnist", 8)])
def test_sizes_and_class_floor(name, n_classes):
    train, test, both = (load_dataset(name, split=s) for s in ("train", "test", "all"))
    assert (len(train), len(test), len(both)) == (100, 200, 300)
    assert train.images.shape == (100, 28, 28, 3)
    assert np.bincount(train.labels, minlength=n_classes).min() >= 8  # every class, incl. rare retina grade 4
    assert np.bincount(test.labels, minlength=n_classes).min() >= 8
    assert np.array_equal(both.images[:100], train.images) and np.array_equal(both.labels[100:], test.labels)
    assert train.info.license == "CC BY 4.0"


def test_arrays_are_independent_copies():
    a = load_dataset("embedded-bloodmnist")
    a.images[:] = 0
    assert load_dataset("embedded-bloodmnist").images.max() > 0


def test_attribution_file_is_shipped():
    text = (embedded.EMBEDDED_DIR / "ATTRIBUTION.md").read_text()
    assert "CC BY 4.0" in text and "MedMNIST v2" in text and "source_indices" in text


def test_altered_png_is_detected(tmp_path, monkeypatch):
    copy = tmp_path / "embedded"
    shutil.copytree(embedded.EMBEDDED_DIR, copy)
    png = copy / "bloodmnist_28_train.png"
    data = bytearray(png.read_bytes())
    data[-20] ^= 0xFF
    png.write_bytes(bytes(data))
    monkeypatch.setattr(embedded, "EMBEDDED_DIR", copy)
    embedded._load_split.cache_clear()
    try:
        with pytest.raises(DataError, match=r"bloodmnist_28_train\.png"):
            load_dataset("embedded-bloodmnist")
    finally:
        embedded._load_split.cache_clear()


@pytest.mark.parametrize("name", ["retinamnist", "bloodmnist"])
def test_pixels_equal_the_official_file(shared_data, name):
    if not (shared_data / "medmnist" / f"{name}.npz").is_file():
        pytest.skip(f"{name}.npz absent")
    manifest = json.loads((embedded.EMBEDDED_DIR / f"{name}_28.json").read_text())
    for split in ("train", "test"):
        small = load_dataset(f"embedded-{name}", split=split)
        full = load_dataset(name, split=split, root=shared_data)
        idx = manifest["splits"][split]["source_indices"]
        assert np.array_equal(full.images[idx], small.images)
        assert np.array_equal(full.labels[idx], small.labels)
