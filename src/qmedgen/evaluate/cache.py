"""On-disk cache for evaluation instruments (domain classifiers) and real-set features, keyed by content hash.

Keys are sha256 digests of the bytes that determine the result (images, labels, extractor identity), so a
changed dataset file or extractor can never return stale features.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from qmedgen.fileio import atomic_open


def cache_dir() -> Path:
    """``$QMEDGEN_CACHE`` if set, else ``~/.qmedgen/cache``; created on first use."""
    root = os.environ.get("QMEDGEN_CACHE")
    path = Path(root).expanduser() if root else Path.home() / ".qmedgen" / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def content_hash(*arrays: np.ndarray | bytes | str) -> str:
    """sha256 over the shapes, dtypes and bytes of ``arrays`` (strings and bytes are hashed as given)."""
    h = hashlib.sha256()
    for a in arrays:
        if isinstance(a, str):
            h.update(b"s" + a.encode())
        elif isinstance(a, bytes):
            h.update(b"b" + a)
        else:
            arr = np.ascontiguousarray(a)
            h.update(f"a{arr.dtype.str}{arr.shape}".encode())
            h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def cached_features(key: str, compute) -> np.ndarray:
    """Features stored under ``features/<key>.npy``; ``compute()`` runs (and is stored) only on a miss."""
    path = cache_dir() / "features" / f"{key}.npy"
    if path.is_file():
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError):  # a corrupt entry is recomputed, never trusted
            path.unlink(missing_ok=True)
    feats = np.asarray(compute())
    with atomic_open(path, "wb") as fh:  # np.save on a path would append ".npy" to the temporary name
        np.save(fh, feats)
    return feats
