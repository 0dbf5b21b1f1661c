"""MedMNIST loader: official layout, MD5 checks, and each bad-input error naming the file and the expectation."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from qmedgen.data import load_dataset
from qmedgen.data.catalog import MEDMNIST, MEDMNIST_SIZES, medmnist_spec
from qmedgen.data.integrity import file_md5
from qmedgen.errors import DataError


def test_catalog_covers_the_12_2d_datasets():
    assert len(MEDMNIST) == 12
    for name, spec in MEDMNIST.items():
        assert set(spec.md5) == set(MEDMNIST_SIZES)
        assert all(len(v) == 32 for v in spec.md5.values())
        assert spec.task in ("multi-class", "ordinal-regression", "multi-label", "binary-class")
        assert spec.filename(28) == f"{name}.npz" and spec.filename(64) == f"{name}_64.npz"
        assert spec.url(128).startswith("https://zenodo.org/") and f"{name}_128.npz" in spec.url(128)
    assert MEDMNIST["retinamnist"].task == "ordinal-regression"
    assert MEDMNIST["chestmnist"].task == "multi-label"
    assert MEDMNIST["bloodmnist"].n_classes == 8 and MEDMNIST["retinamnist"].n_classes == 5
    with pytest.raises(DataError, match="bloodmnist"):
        medmnist_spec("bloodmnst")


def test_missing_file_says_where_it_looked_and_how_to_get_it(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset("pathmnist", root=tmp_path)
    msg = str(err.value)
    assert "pathmnist.npz" in msg and str(tmp_path) in msg and str(tmp_path / "medmnist") in msg
    assert "qmedgen data download pathmnist" in msg and "a8b06965200029087d5bd730944a56c1" in msg


def test_unofficial_size_is_rejected(tmp_path):
    with pytest.raises(DataError, match="28, 64, 128, 224"):
        load_dataset("retinamnist", size=32, root=tmp_path)


def test_wrong_md5_names_file_and_both_digests(tmp_path, fake_medmnist):
    path = fake_medmnist(tmp_path / "retinamnist.npz")
    with pytest.raises(DataError) as err:
        load_dataset("retinamnist", root=tmp_path)
    msg = str(err.value)
    assert str(path) in msg and "bd4c0672f1bba3e3a89f0e4e876791e4" in msg and file_md5(path) in msg


def test_verify_false_loads_a_well_formed_copy_from_root_subfolder(tmp_path, fake_medmnist):
    fake_medmnist(tmp_path / "medmnist" / "retinamnist.npz", n=6)
    ds = load_dataset("retinamnist", split="all", root=tmp_path, verify=False)
    assert ds.images.shape == (18, 28, 28, 3) and ds.images.dtype == np.uint8
    assert ds.labels.shape == (18,) and ds.labels.dtype == np.int64
    assert ds.info.split == "all" and ds.info.task == "ordinal-regression" and ds.info.n_classes == 5


def test_grayscale_files_get_a_channel_axis(tmp_path, fake_medmnist):
    fake_medmnist(tmp_path / "breastmnist_64.npz", size=64, channels=1, n_classes=2)
    ds = load_dataset("breastmnist", split="val", size=64, root=tmp_path, verify=False)
    assert ds.images.shape == (6, 64, 64, 1) and ds.info.n_channels == 1
    x, _ = ds.tensors()
    assert x.shape == (6, 1, 64, 64)


@pytest.mark.parametrize("content", [b"this is not a zip archive", "truncated"])
def test_truncated_or_non_npz_file(tmp_path, fake_medmnist, content):
    path = tmp_path / "retinamnist.npz"
    if content == "truncated":
        data = fake_medmnist(tmp_path / "full.npz").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(content)
    with pytest.raises(DataError) as err:
        load_dataset("retinamnist", root=tmp_path)
    msg = str(err.value)
    assert str(path) in msg and "not a valid .npz" in msg and "retinamnist.npz" in msg and "MD5" in msg


def test_wrong_keys(tmp_path, fake_medmnist):
    path = fake_medmnist(tmp_path / "retinamnist.npz", train_images=None, images=np.zeros((2, 28, 28, 3), np.uint8))
    with pytest.raises(DataError) as err:
        load_dataset("retinamnist", root=tmp_path, verify=False)
    msg = str(err.value)
    assert str(path) in msg and "train_images" in msg and "'images'" in msg


@pytest.mark.parametrize(
    ("override", "expect"),
    [
        ({"train_images": np.zeros((4, 32, 32, 3), np.uint8)}, "expected uint8 [N, 28, 28, 3]"),
        ({"train_images": np.zeros((4, 28, 28, 3), np.float32)}, "expected uint8 [N, 28, 28, 3]"),
        ({"train_labels": np.zeros((5, 1), np.uint8)}, "expected integer [6, 1]"),
        ({"train_labels": np.full((6, 1), 7, np.uint8)}, "expected [0, 4]"),
    ],
)
def test_wrong_shapes_dtypes_and_labels(tmp_path, fake_medmnist, override, expect):
    path = fake_medmnist(tmp_path / "retinamnist.npz", **override)
    with pytest.raises(DataError) as err:
        load_dataset("retinamnist", root=tmp_path, verify=False)
    assert str(path) in str(err.value) and expect in str(err.value)


def test_multilabel_chestmnist_keeps_label_matrix(tmp_path, fake_medmnist):
    labels = np.zeros((6, 14), np.uint8)
    labels[0, 3] = labels[1, [2, 5]] = 1
    fake_medmnist(tmp_path / "chestmnist.npz", channels=1, train_labels=labels)
    ds = load_dataset("chestmnist", root=tmp_path, verify=False)
    assert ds.labels.shape == (6, 14) and ds.info.task == "multi-label"
    assert ds.class_counts()[[2, 3, 5]].tolist() == [1, 1, 1]


def test_real_files_verify_and_match_official_counts(shared_data):
    for name in ("retinamnist", "bloodmnist"):
        path = shared_data / "medmnist" / f"{name}.npz"
        if not path.is_file():
            pytest.skip(f"{path} absent")
        spec = MEDMNIST[name]
        assert file_md5(path) == spec.md5[28]
        for split, n in spec.n_samples.items():
            ds = load_dataset(name, split=split, root=shared_data)  # root/medmnist is searched
            assert len(ds) == n and ds.images.shape[1:] == (28, 28, 3)
            assert ds.labels.min() >= 0 and ds.labels.max() < spec.n_classes
    pooled = load_dataset("retinamnist", split="all", root=shared_data / "medmnist")
    assert len(pooled) == 1600 and pooled.info.extra["split_sizes"] == {"train": 1080, "val": 120, "test": 400}


def test_real_file_found_through_qmedgen_data(shared_data, monkeypatch):
    if not (shared_data / "medmnist" / "retinamnist.npz").is_file():
        pytest.skip("retinamnist.npz absent")
    monkeypatch.setenv("QMEDGEN_DATA", str(shared_data))
    assert len(load_dataset("retinamnist", split="val")) == 120


def test_corrupted_copy_of_real_file_fails_md5(shared_data, tmp_path):
    src = shared_data / "medmnist" / "retinamnist.npz"
    if not src.is_file():
        pytest.skip("retinamnist.npz absent")
    dst = tmp_path / "retinamnist.npz"
    shutil.copyfile(src, dst)
    data = bytearray(dst.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dst.write_bytes(bytes(data))
    with pytest.raises(DataError, match="MD5 mismatch"):
        load_dataset("retinamnist", root=tmp_path)


def test_md5_is_cached_by_size_and_mtime(tmp_path, monkeypatch):
    from qmedgen.data import integrity

    path = tmp_path / "f.bin"
    path.write_bytes(b"a" * 1000)
    first = file_md5(path)
    st = path.stat()
    path.write_bytes(b"b" * 1000)  # same size; restore the mtime so the cache key is unchanged
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    monkeypatch.setattr(integrity, "_MEMO", {})  # force the on-disk cache to be used
    assert file_md5(path) == first
    assert file_md5(path, use_cache=False) != first
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: hashed again
    assert file_md5(path) != first
