"""MNIST from the standard idx files (``train-images-idx3-ubyte[.gz]`` etc.), gzipped or not.

Each file is checked: readable (gzip not truncated), idx magic number (2051 images / 2049 labels), header sizes
against the byte count, image and label counts agreeing, and (``verify=True``) the MD5 of the *uncompressed* bytes
against the official value, which identifies the content whatever gzip container it came in.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from qmedgen.data.catalog import MNIST_FILES
from qmedgen.data.dataset import DatasetInfo, ImageDataset
from qmedgen.data.integrity import md5_bytes
from qmedgen.data.locations import download_dir, find_file, search_dirs
from qmedgen.errors import DataError

MNIST_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist"
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049


def locate(kind: str, root=None) -> Path | None:
    stem = MNIST_FILES[kind]["stem"]
    return find_file([f"{stem}.gz", str(stem)], root, "mnist")


def download_mnist(root=None, progress: bool = True) -> list[Path]:
    """Download the four .gz files from the mirror torchvision uses (MD5-checked, atomic)."""
    from qmedgen.data.download import download_file

    out = []
    for meta in MNIST_FILES.values():
        name = f"{meta['stem']}.gz"
        out.append(download_file(f"{MNIST_MIRROR}/{name}", download_dir(root, "mnist") / name, str(meta["gz_md5"]),
                                 progress=progress))
    return out


def read_idx(path: str | os.PathLike, expected_magic: int, expected_md5: str | None = None) -> np.ndarray:
    """Parse one idx file (optionally gzipped) into a uint8 array, validating header and size."""
    path = Path(path)
    what = "images (idx3, magic 2051)" if expected_magic == IMAGES_MAGIC else "labels (idx1, magic 2049)"
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                data = fh.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot be read ({exc}); expected a complete MNIST {what} file") from exc
    if len(data) < 8:
        raise DataError(f"{path}: only {len(data)} bytes; expected an MNIST {what} file")
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        raise DataError(f"{path}: idx magic number {magic}; expected {expected_magic} for MNIST {what}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    if len(data) != header + int(np.prod(dims)):
        raise DataError(
            f"{path}: header says shape {dims} ({header + int(np.prod(dims))} bytes), file has {len(data)} bytes "
            f"(truncated?); expected a complete MNIST {what} file"
        )
    if expected_md5 is not None and md5_bytes(data) != expected_md5:
        raise DataError(
            f"{path}: MD5 of the uncompressed content is {md5_bytes(data)}, expected the official {expected_md5}; "
            f"pass verify=False to load it anyway"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def load_mnist(split: str = "train", size: int = 28, root=None, download: bool = False,
               verify: bool = True) -> ImageDataset:
    """MNIST split ``train`` (60k), ``test`` (10k) or ``all`` (pooled), 1 channel, resized when ``size != 28``."""
    if split not in ("train", "test", "all"):
        raise DataError(f"mnist: unknown split {split!r}; MNIST has train, test (and all = both pooled)")
    parts = ("train", "test") if split == "all" else (split,)
    images, labels, sources = [], [], []
    for part in parts:
        pair = []
        for kind, magic in ((f"{part}-images", IMAGES_MAGIC), (f"{part}-labels", LABELS_MAGIC)):
            path = locate(kind, root)
            if path is None and download:
                download_mnist(root)
                path = locate(kind, root)
            if path is None:
                stem = MNIST_FILES[kind]["stem"]
                where = "\n  ".join(str(d) for d in search_dirs(root, "mnist"))
                raise DataError(
                    f"mnist: file '{stem}.gz' (or uncompressed '{stem}') not found. Looked in:\n  {where}\n"
                    f"Get it with `qmedgen data download mnist`, or put the standard idx files in one of those folders."
                )
            md5 = str(MNIST_FILES[kind]["raw_md5"]) if verify else None
            pair.append(read_idx(path, magic, md5))
            sources.append(str(path))
        x, y = pair
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"mnist {part}: {len(x)} images {list(x.shape)} but {len(y)} labels; expected equal counts")
        if y.size and y.max() > 9:
            raise DataError(f"mnist {part}: label value {int(y.max())}; expected digits 0-9")
        images.append(x)
        labels.append(y)
    x = np.concatenate(images)[..., None]
    if size != 28:
        from qmedgen.data.transforms import resize_images

        x = resize_images(x, size)
    info = DatasetInfo(name="mnist", task="multi-class", class_names=[str(d) for d in range(10)], n_channels=1,
                       size=size, split=split, n_classes=10, license="CC BY-SA 3.0 (Y. LeCun, C. Cortes)",
                       source=";".join(sources))
    return ImageDataset(x, np.concatenate(labels).astype(np.int64), info)
