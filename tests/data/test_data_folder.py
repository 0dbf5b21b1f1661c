"""Image-folder datasets: layouts, resizing, channels, caching and bad-input errors."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from qmedgen.data import load_dataset
from qmedgen.errors import DataError


def _img(path, size=(40, 30), mode="RGB", value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((size[1], size[0], 3 if mode == "RGB" else 1), value, np.uint8).squeeze()
    Image.fromarray(arr, mode=None).convert(mode).save(path)
    return path


def _tree(root, classes=("cat_b", "cat_a"), per_class=2, mode="RGB"):
    for k, c in enumerate(classes):
        for i in range(per_class):
            _img(root / c / f"{i}.png", mode=mode, value=50 * k + i)
    return root


def test_flat_layout_sorted_classes_resize(tmp_path):
    root = _tree(tmp_path / "ds")
    (root / "cat_a" / "notes.txt").write_text("ignored")
    ds = load_dataset(f"folder:{root}", size=16)
    assert ds.info.class_names == ["cat_a", "cat_b"] and ds.info.n_classes == 2
    assert ds.images.shape == (4, 16, 16, 3) and ds.labels.tolist() == [0, 0, 1, 1]
    assert ds.info.extra["files"][0].endswith("0.png") and ds.info.n_channels == 3
    assert int(ds.images[2, 8, 8, 0]) == 0 and int(ds.images[0, 8, 8, 0]) == 50  # cat_b (value 0) -> label 1
    assert load_dataset(f"folder:{root}", split="all", size=16).images.shape == (4, 16, 16, 3)
    with pytest.raises(DataError, match="no split sub-folders"):
        load_dataset(f"folder:{root}", split="test")


def test_grayscale_folder_gives_one_channel(tmp_path):
    root = _tree(tmp_path / "g", mode="L")
    ds = load_dataset(f"folder:{root}", size=8)
    assert ds.images.shape == (4, 8, 8, 1)
    assert load_dataset(f"folder:{root}", size=8, channels=3).images.shape == (4, 8, 8, 3)


def test_split_layout(tmp_path):
    _tree(tmp_path / "s" / "train", per_class=3)
    _tree(tmp_path / "s" / "test", per_class=1)
    assert len(load_dataset(f"folder:{tmp_path / 's'}", split="train", size=8)) == 6
    assert len(load_dataset(f"folder:{tmp_path / 's'}", split="test", size=8)) == 2
    assert len(load_dataset(f"folder:{tmp_path / 's'}", split="all", size=8)) == 8
    with pytest.raises(DataError, match="split 'val' not found"):
        load_dataset(f"folder:{tmp_path / 's'}", split="val")


def test_empty_class_folder_is_named(tmp_path):
    root = _tree(tmp_path / "e")
    (root / "zz_empty").mkdir()
    with pytest.raises(DataError) as err:
        load_dataset(f"folder:{root}")
    assert str(root / "zz_empty") in str(err.value) and "empty class folder" in str(err.value)


def test_unreadable_image_is_named(tmp_path):
    root = _tree(tmp_path / "u")
    bad = root / "cat_a" / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError) as err:
        load_dataset(f"folder:{root}")
    assert str(bad) in str(err.value) and "cannot read image" in str(err.value)


def test_missing_folder_and_no_classes(tmp_path):
    with pytest.raises(DataError, match="image folder not found"):
        load_dataset(f"folder:{tmp_path / 'nope'}")
    (tmp_path / "flat").mkdir()
    _img(tmp_path / "flat" / "a.png")
    with pytest.raises(DataError, match="no class sub-folders"):
        load_dataset(f"folder:{tmp_path / 'flat'}")


def test_decode_cache_is_reused_and_invalidated(tmp_path, isolated_data_dirs):
    root = _tree(tmp_path / "c")
    first = load_dataset(f"folder:{root}", size=8)
    cached = list((isolated_data_dirs / "cache" / "folders").glob("*.npz"))
    assert len(cached) == 1
    assert np.array_equal(load_dataset(f"folder:{root}", size=8).images, first.images)
    changed = _img(root / "cat_a" / "0.png", value=200)  # changed file -> new key (mtime bumped explicitly)
    st = changed.stat()
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert not np.array_equal(load_dataset(f"folder:{root}", size=8).images, first.images)
