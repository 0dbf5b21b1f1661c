"""MedMNIST 2D loader for the official ``.npz`` files (``<name>.npz`` for 28x28, ``<name>_<size>.npz`` otherwise).

Each file holds ``{train,val,test}_images`` (uint8 ``[N, S, S]`` or ``[N, S, S, 3]``) and ``{train,val,test}_labels``
(``[N, 1]``, or ``[N, 14]`` for ChestMNIST). Files are checked in this order, each failure a :class:`DataError` that
names the file: present -> a readable zip/npz -> official MD5 (cached, see ``integrity``) -> keys -> shapes/labels.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from qmedgen.data.catalog import MedMNISTSpec, check_medmnist_size, medmnist_spec
from qmedgen.data.dataset import DatasetInfo, ImageDataset
from qmedgen.data.integrity import verify_md5
from qmedgen.data.locations import download_dir, find_file, search_dirs
from qmedgen.errors import DataError

SPLITS = ("train", "val", "test")


def locate(name: str, size: int = 28, root: str | os.PathLike | None = None) -> Path | None:
    """Path of the official file for ``name`` at ``size`` in the search directories, or None."""
    spec = medmnist_spec(name)
    return find_file([spec.filename(size)], root, "medmnist")


def missing_file_error(spec: MedMNISTSpec, size: int, root) -> DataError:
    where = "\n  ".join(str(d) for d in search_dirs(root, "medmnist"))
    fname = spec.filename(size)
    return DataError(
        f"{spec.name} ({size}x{size}): file {fname!r} not found. Looked in:\n  {where}\n"
        f"Get it with `qmedgen data download {spec.name} --size {size}` (or load_dataset(..., download=True)), "
        f"or put the official file (MD5 {spec.md5[size]}, from {spec.url(size)}) in one of those folders "
        f"(set QMEDGEN_DATA or pass root=)."
    )


def download_medmnist(name: str, size: int = 28, root: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """Download the official file from Zenodo (MD5-checked, atomic). Returns the local path."""
    from qmedgen.data.download import download_file

    spec = medmnist_spec(name)
    check_medmnist_size(spec.name, size)
    dest = download_dir(root, "medmnist") / spec.filename(size)
    return download_file(spec.url(size), dest, spec.md5[size], progress=progress)


def load_medmnist(name: str, split: str = "train", size: int = 28, root: str | os.PathLike | None = None,
                  download: bool = False, verify: bool = True) -> ImageDataset:
    """Load one split (or ``"all"``: train+val+test pooled in that order) of a MedMNIST 2D dataset."""
    spec = medmnist_spec(name)
    check_medmnist_size(spec.name, size)
    splits = SPLITS if split == "all" else (split,)
    if split != "all" and split not in SPLITS:
        raise DataError(f"{spec.name}: unknown split {split!r}; expected one of train, val, test, all")
    path = locate(spec.name, size, root)
    if path is None:
        if not download:
            raise missing_file_error(spec, size, root)
        path = download_medmnist(spec.name, size, root)
    arrays = read_npz(path, spec, size, splits, verify=verify)
    images = np.concatenate([arrays[s][0] for s in splits]) if len(splits) > 1 else arrays[splits[0]][0]
    labels = np.concatenate([arrays[s][1] for s in splits]) if len(splits) > 1 else arrays[splits[0]][1]
    info = DatasetInfo(
        name=spec.name, task=spec.task, class_names=list(spec.class_names), n_channels=spec.n_channels, size=size,
        split=split, n_classes=spec.n_classes, license=spec.license, source=str(path),
        extra={"split_sizes": {s: len(arrays[s][0]) for s in splits}},
    )
    return ImageDataset(images, labels, info)


def read_npz(path: Path, spec: MedMNISTSpec, size: int, splits=SPLITS,
             verify: bool = True) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Validated ``{split: (images uint8 [N,S,S,C], labels int64 [N] or [N,L])}`` from an official-format file."""
    path = Path(path)
    expect = f"the official {spec.filename(size)} (MedMNIST {spec.name}, {size}x{size}, MD5 {spec.md5[size]})"
    if not zipfile.is_zipfile(path):
        raise DataError(
            f"{path}: not a valid .npz archive ({path.stat().st_size} bytes; truncated download or a different "
            f"format); expected {expect}"
        )
    if verify:
        verify_md5(path, spec.md5[size], what=f"{spec.name} {size}x{size}")
    try:
        npz = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: cannot be read as .npz ({exc}); expected {expect}") from exc
    with npz:
        out = {}
        for s in splits:
            keys = (f"{s}_images", f"{s}_labels")
            missing = [k for k in keys if k not in npz.files]
            if missing:
                raise DataError(
                    f"{path}: missing key(s) {missing}; expected {expect} with keys "
                    f"{{train,val,test}}_{{images,labels}}, found {sorted(npz.files)}"
                )
            try:
                images, labels = npz[keys[0]], npz[keys[1]]
            except (ValueError, OSError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
                raise DataError(f"{path}: array {keys[0]!r}/{keys[1]!r} is corrupt ({exc}); expected {expect}") from exc
            out[s] = _check_arrays(path, spec, size, s, images, labels)
    return out


def _check_arrays(path: Path, spec: MedMNISTSpec, size: int, split: str, images: np.ndarray,
                  labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c = spec.n_channels
    want = f"[N, {size}, {size}]" if c == 1 else f"[N, {size}, {size}, 3]"
    ok_shape = images.shape[1:] in ((size, size), (size, size, 1)) if c == 1 else images.shape[1:] == (size, size, 3)
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or not ok_shape:
        raise DataError(
            f"{path}: {split}_images has dtype {images.dtype} shape {list(images.shape)}; expected uint8 {want} "
            f"for {spec.name} at {size}x{size}"
        )
    if images.ndim == 3:
        images = images[..., None]
    n = len(images)
    n_label_cols = spec.n_classes if spec.task == "multi-label" else 1
    if labels.ndim == 1 and n_label_cols == 1:
        labels = labels[:, None]
    if labels.ndim != 2 or labels.shape != (n, n_label_cols) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"{path}: {split}_labels has dtype {labels.dtype} shape {list(labels.shape)}; expected integer "
            f"[{n}, {n_label_cols}] (one row per image in {split}_images)"
        )
    labels = labels.astype(np.int64)
    hi = 1 if spec.task == "multi-label" else spec.n_classes - 1
    if n and (labels.min() < 0 or labels.max() > hi):
        raise DataError(
            f"{path}: {split}_labels has values in [{labels.min()}, {labels.max()}]; expected [0, {hi}] for "
            f"{spec.name} ({spec.task})"
        )
    return images, (labels if spec.task == "multi-label" else labels[:, 0])
