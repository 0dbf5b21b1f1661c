"""Small attributed subsets of real MedMNIST images shipped inside the package (no network, no download).

``embedded-retinamnist`` and ``embedded-bloodmnist``: 100 train + 200 test images each, 28x28 RGB, drawn stratified
(with a floor of 8 images per class) from the official files by ``scripts/build_embedded.py``. Images are stored
losslessly as PNG mosaics (one tile per image, row-major) next to a JSON manifest with labels, the indices in the
official split and SHA-256 of each PNG, which is checked on load. See ``embedded/ATTRIBUTION.md`` (CC BY 4.0).
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image

from qmedgen.data.catalog import medmnist_spec
from qmedgen.data.dataset import DatasetInfo, ImageDataset
from qmedgen.errors import DataError

EMBEDDED_DIR = Path(__file__).resolve().parent / "embedded"
EMBEDDED = ("embedded-retinamnist", "embedded-bloodmnist")


def manifest_path(name: str) -> Path:
    return EMBEDDED_DIR / f"{name.removeprefix('embedded-')}_28.json"


@functools.lru_cache(maxsize=8)
def _load_split(name: str, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mpath = manifest_path(name)
    try:
        manifest = json.loads(mpath.read_text())
        entry = manifest["splits"][split]
    except FileNotFoundError as exc:
        raise DataError(f"{mpath}: embedded dataset manifest missing; the qmedgen installation is incomplete") from exc
    except (ValueError, KeyError) as exc:
        raise DataError(f"{mpath}: malformed embedded manifest (missing {exc}); reinstall qmedgen") from exc
    png = EMBEDDED_DIR / entry["image_file"]
    data = png.read_bytes() if png.is_file() else b""
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise DataError(f"{png}: missing or altered (SHA-256 differs from {mpath.name}); reinstall qmedgen")
    with Image.open(png) as img:
        mosaic = np.asarray(img.convert("RGB"), dtype=np.uint8)
    n, tile, cols = int(entry["n"]), int(manifest["size"]), int(entry["columns"])
    rows = -(-n // cols)
    if mosaic.shape != (rows * tile, cols * tile, 3):
        raise DataError(f"{png}: mosaic shape {mosaic.shape}, expected {(rows * tile, cols * tile, 3)}")
    tiles = mosaic.reshape(rows, tile, cols, tile, 3).transpose(0, 2, 1, 3, 4).reshape(rows * cols, tile, tile, 3)
    labels = np.asarray(entry["labels"], dtype=np.int64)
    indices = np.asarray(entry["source_indices"], dtype=np.int64)
    if len(labels) != n or len(indices) != n:
        raise DataError(f"{mpath}: {split} lists {len(labels)} labels and {len(indices)} indices for {n} images")
    for arr in (tiles, labels, indices):
        arr.setflags(write=False)
    return tiles[:n], labels, indices


def load_embedded(name: str, split: str = "train", size: int = 28) -> ImageDataset:
    """Load an embedded subset: split ``train``, ``test`` or ``all`` (train then test), resized when ``size != 28``."""
    if name not in EMBEDDED:
        raise DataError(f"unknown embedded dataset {name!r}; known: {', '.join(EMBEDDED)}")
    if split not in ("train", "test", "all"):
        raise DataError(f"{name}: split {split!r} does not exist; embedded subsets have train, test (and all)")
    parts = ("train", "test") if split == "all" else (split,)
    loaded = [_load_split(name, p) for p in parts]
    images = np.concatenate([x for x, _, _ in loaded])  # copies: callers may modify their arrays freely
    labels = np.concatenate([y for _, y, _ in loaded])
    source_indices = np.concatenate([i for _, _, i in loaded])
    if size != 28:
        from qmedgen.data.transforms import resize_images

        images = resize_images(images, size)
    spec = medmnist_spec(name.removeprefix("embedded-"))
    info = DatasetInfo(
        name=name, task=spec.task, class_names=list(spec.class_names), n_channels=3, size=size, split=split,
        n_classes=spec.n_classes, license=spec.license, source=str(manifest_path(name)),
        extra={"source_split_indices": source_indices.tolist(),
               "source_splits": [p for p, (x, _, _) in zip(parts, loaded) for _ in range(len(x))]},
    )
    return ImageDataset(images, labels, info)
