"""MNIST idx reader: real files when present, and synthetic files for each malformed case."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from qmedgen.data import load_dataset
from qmedgen.data.mnist import read_idx
from qmedgen.errors import DataError


def _idx(magic: int, dims: list[int], payload: bytes) -> bytes:
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims) + payload


def _write_mnist(folder, n_train=5, n_test=3, gz=True):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for stem, n in (("train", n_train), ("t10k", n_test)):
        images = _idx(2051, [n, 28, 28], rng.integers(0, 256, n * 784, dtype=np.uint8).tobytes())
        labels = _idx(2049, [n], (np.arange(n) % 10).astype(np.uint8).tobytes())
        for kind, data in (("images-idx3-ubyte", images), ("labels-idx1-ubyte", labels)):
            path = folder / f"{stem}-{kind}"
            if gz:
                path = path.with_name(path.name + ".gz")
                path.write_bytes(gzip.compress(data))
            else:
                path.write_bytes(data)
    return folder


@pytest.mark.parametrize("gz", [True, False])
def test_synthetic_idx_files_load(tmp_path, gz):
    _write_mnist(tmp_path / "mnist", gz=gz)
    ds = load_dataset("mnist", split="all", root=tmp_path, verify=False)
    assert ds.images.shape == (8, 28, 28, 1) and ds.labels.tolist() == [0, 1, 2, 3, 4, 0, 1, 2]
    small = load_dataset("mnist", split="test", size=16, root=tmp_path, verify=False)
    assert small.images.shape == (3, 16, 16, 1) and small.info.size == 16


def test_official_md5_rejects_synthetic_files(tmp_path):
    _write_mnist(tmp_path)
    with pytest.raises(DataError, match="MD5 of the uncompressed content"):
        load_dataset("mnist", split="test", root=tmp_path)


def test_bad_magic_names_file(tmp_path):
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(_idx(2049, [2, 28, 28], bytes(2 * 784)))
    with pytest.raises(DataError) as err:
        read_idx(path, 2051)
    assert str(path) in str(err.value) and "expected 2051" in str(err.value)


def test_truncated_idx_and_truncated_gzip(tmp_path):
    raw = _idx(2051, [3, 28, 28], bytes(3 * 784))
    path = tmp_path / "short-idx3-ubyte"
    path.write_bytes(raw[:-100])
    with pytest.raises(DataError, match="truncated"):
        read_idx(path, 2051)
    gz = tmp_path / "short-idx3-ubyte.gz"
    gz.write_bytes(gzip.compress(raw)[:-30])
    with pytest.raises(DataError) as err:
        read_idx(gz, 2051)
    assert str(gz) in str(err.value)


def test_missing_files_and_bad_split(tmp_path):
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz"):
        load_dataset("mnist", root=tmp_path)
    with pytest.raises(DataError, match="train, test"):
        load_dataset("mnist", split="val", root=tmp_path)


def test_count_mismatch(tmp_path):
    folder = _write_mnist(tmp_path, n_train=5)
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(2049, [4], bytes(4))))
    with pytest.raises(DataError, match=r"5 images .* but 4 labels"):
        load_dataset("mnist", root=tmp_path, verify=False)


def test_real_mnist_test_split(shared_data):
    if not (shared_data / "mnist" / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("MNIST files absent")
    ds = load_dataset("mnist", split="test", root=shared_data)  # verifies the official uncompressed MD5s
    assert ds.images.shape == (10000, 28, 28, 1)
    assert np.bincount(ds.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
