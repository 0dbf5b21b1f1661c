"""``load_dataset``: one entry point for every dataset family qmedgen knows.

Names: the 12 MedMNIST 2D names (``retinamnist``, ``bloodmnist``, ...), ``mnist``, ``embedded-retinamnist``,
``embedded-bloodmnist`` and ``folder:PATH``. Files are looked for in ``root``, ``$QMEDGEN_DATA`` and
``~/.qmedgen/data`` (and their ``medmnist/`` / ``mnist/`` sub-folders), see :mod:`qmedgen.data.locations`.
"""

from __future__ import annotations

import os

from qmedgen.data.catalog import MEDMNIST
from qmedgen.data.dataset import ImageDataset
from qmedgen.data.embedded import EMBEDDED, load_embedded
from qmedgen.data.folder import load_folder
from qmedgen.data.medmnist import load_medmnist
from qmedgen.data.mnist import load_mnist
from qmedgen.errors import DataError

SPLITS = ("train", "val", "test", "all")


def known_datasets() -> list[str]:
    """Every dataset name accepted by :func:`load_dataset` (besides ``folder:PATH``)."""
    return [*EMBEDDED, *MEDMNIST, "mnist"]


def load_dataset(name: str, split: str = "train", size: int = 28, root: str | os.PathLike | None = None,
                 download: bool = False, *, verify: bool = True, channels: int | None = None) -> ImageDataset:
    """Load a dataset split as an :class:`ImageDataset` (uint8 NHWC images at ``size``, int64 labels).

    ``split``: ``train``, ``val``, ``test`` or ``all`` (train+val+test pooled, as the MediQ-GAN paper uses for
    RetinaMNIST). MedMNIST ``size`` selects the official file (28, 64, 128, 224); MNIST, embedded and folder images
    are resized (antialiased). ``download=True`` fetches a missing official file (MD5-checked); nothing is
    downloaded otherwise. ``verify=False`` skips the official MD5 check (for re-saved copies). ``channels`` (1 or 3)
    converts the images (BT.601 luma or repetition).
    """
    if split not in SPLITS:
        raise DataError(f"{name}: unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if not isinstance(size, int) or size < 1:
        raise DataError(f"{name}: size must be a positive integer, got {size!r}")
    if channels not in (None, 1, 3):
        raise DataError(f"{name}: channels must be 1 or 3 (or None to keep the dataset's own), got {channels!r}")
    key = name.strip()
    if key.startswith("folder:"):
        path = key[len("folder:"):]
        if not path:
            raise DataError("folder dataset needs a path: 'folder:PATH' with one sub-folder per class")
        return load_folder(path, split=split, size=size, channels=channels)
    low = key.lower()
    if low in EMBEDDED:
        ds = load_embedded(low, split=split, size=size)
    elif low == "mnist":
        ds = load_mnist(split=split, size=size, root=root, download=download, verify=verify)
    elif low in MEDMNIST:
        ds = load_medmnist(low, split=split, size=size, root=root, download=download, verify=verify)
    else:
        import difflib

        close = difflib.get_close_matches(low, known_datasets(), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(known_datasets())}, or 'folder:PATH'.{hint}")
    return _with_channels(ds, channels)


def _with_channels(ds: ImageDataset, channels: int | None) -> ImageDataset:
    if channels is None or channels == ds.info.n_channels:
        return ds
    from qmedgen.data.transforms import convert_channels

    out = ImageDataset(convert_channels(ds.images, channels), ds.labels, ds.info, ds.indices)
    return out.with_info(n_channels=channels)
