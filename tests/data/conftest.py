"""Shared fixtures for the data tests: an isolated data/cache location and the optional real files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def isolated_data_dirs(tmp_path_factory, monkeypatch):
    """No test reads or writes the user's ~/.qmedgen: data, cache and HOME point into a temporary folder."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("QMEDGEN_DATA", str(home / "data"))
    monkeypatch.setenv("QMEDGEN_CACHE", str(home / "cache"))
    from qmedgen.data import integrity

    monkeypatch.setattr(integrity, "_MEMO", {})
    return home


@pytest.fixture
def shared_data() -> Path:
    """The real data folder (<repo>/../shared/data or $QMEDGEN_SHARED_DATA); skips when absent."""
    env = os.environ.get("QMEDGEN_SHARED_DATA")
    path = Path(env) if env else REPO / ".." / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"real data folder not found at {path} (set QMEDGEN_SHARED_DATA)")
    return path.resolve()


def write_fake_medmnist(path: Path, size: int = 28, channels: int = 3, n: int = 6, n_classes: int = 5,
                        seed: int = 0, **overrides) -> Path:
    """A small file in the official MedMNIST layout (keys {split}_images / {split}_labels)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split in ("train", "val", "test"):
        shape = (n, size, size) if channels == 1 else (n, size, size, channels)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, n_classes, (n, 1)).astype(np.uint8)
    arrays.update(overrides)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


@pytest.fixture
def fake_medmnist():
    """The :func:`write_fake_medmnist` helper, as a fixture (test modules should not import conftest)."""
    return write_fake_medmnist
