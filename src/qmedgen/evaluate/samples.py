"""Reading generated samples written by ``qmedgen sample``: ``OUT/samples.npz`` and/or ``OUT/class_<k>/*.png``
(the writer is :func:`qmedgen.images.write_samples`), and the link from samples back to the run that made them.

Bad input is reported precisely: which folder is empty, which file has a different size or channel count, where
the npz and the class folders disagree.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from PIL import Image

from qmedgen.errors import DataError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
_CLASS_DIR = re.compile(r"^class_(\d+)$")


def find_samples_dir(path: Path) -> Path:
    """``path`` itself when it holds samples; otherwise the newest sub-folder (depth <= 2) that does (a run dir)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_file():
        return path
    if _has_samples(path):
        return path
    candidates = [p for p in list(path.glob("*")) + list(path.glob("*/*")) if p.is_dir() and _has_samples(p)]
    if not candidates:
        raise DataError(f"{path}: no generated samples found (expected samples.npz or class_<k>/ image folders "
                        "here or in a sub-folder, as written by `qmedgen sample`)")
    return max(candidates, key=lambda p: p.stat().st_mtime)


def _has_samples(d: Path) -> bool:
    return (d / "samples.npz").is_file() or any(_CLASS_DIR.match(p.name) for p in d.iterdir() if p.is_dir())


def load_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = {"images", "labels"} - set(z.files)
            if missing:
                raise DataError(f"{path}: missing array(s) {sorted(missing)}; found {sorted(z.files)}")
            images, labels = z["images"], z["labels"]
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from exc
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise DataError(f"{path}: 'images' must be uint8 [N, H, W, C] with C = 1 or 3; got {images.dtype} "
                        f"{list(images.shape)}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"{path}: 'labels' must be [N] with N = {len(images)}; got {list(labels.shape)}")
    if len(images) == 0:
        raise DataError(f"{path}: contains no images")
    return images, labels.astype(np.int64)


def _read_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            if im.mode in ("L", "I;16", "1"):
                arr = np.asarray(im.convert("L"))[..., None]
            elif im.mode in ("RGB", "P"):
                arr = np.asarray(im.convert("RGB"))
            else:
                raise DataError(f"{path}: unsupported image mode {im.mode!r} (expected grayscale or RGB)")
    except OSError as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from exc
    return arr


def load_class_folders(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images from ``root/class_<k>/*`` with label k; all images must share one size and channel count."""
    dirs = sorted((p for p in root.iterdir() if p.is_dir() and _CLASS_DIR.match(p.name)),
                  key=lambda p: int(_CLASS_DIR.match(p.name).group(1)))
    if not dirs:
        raise DataError(f"{root}: no class_<k> folders")
    images, labels, first = [], [], None
    for d in dirs:
        files = sorted((f for f in d.iterdir() if f.suffix.lower() in IMAGE_EXTS),
                       key=lambda f: (len(f.stem), f.stem))
        if not files:
            raise DataError(f"{d}: empty class folder (no {'/'.join(IMAGE_EXTS)} files)")
        k = int(_CLASS_DIR.match(d.name).group(1))
        for f in files:
            arr = _read_image(f)
            if first is None:
                first = (f, arr.shape)
            elif arr.shape != first[1]:
                raise DataError(f"{f}: image is {arr.shape[0]}x{arr.shape[1]} with {arr.shape[2]} channel(s) but "
                                f"{first[0]} is {first[1][0]}x{first[1][1]} with {first[1][2]}; all samples must "
                                "match")
            images.append(arr)
            labels.append(k)
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def load_samples(path: Path) -> tuple[np.ndarray, np.ndarray, Path]:
    """(images uint8 [N, H, W, C], labels int64 [N], the folder or file read) for a sample output or run dir.

    When both ``samples.npz`` and class folders exist, the npz is used and the per-class counts must agree.
    """
    src = find_samples_dir(Path(path))
    if src.is_file():
        if src.suffix != ".npz":
            raise DataError(f"{src}: expected a samples.npz file or a folder")
        images, labels = load_npz(src)
        return images, labels, src
    npz = src / "samples.npz"
    if npz.is_file():
        images, labels = load_npz(npz)
        for d in src.iterdir():
            m = _CLASS_DIR.match(d.name)
            if d.is_dir() and m:
                n_files = sum(1 for f in d.iterdir() if f.suffix.lower() in IMAGE_EXTS)
                n_npz = int((labels == int(m.group(1))).sum())
                if n_files != n_npz:
                    raise DataError(f"mismatched samples in {src}: samples.npz has {n_npz} images of class "
                                    f"{m.group(1)} but {d.name}/ has {n_files}")
        return images, labels, npz
    images, labels = load_class_folders(src)
    return images, labels, src


def run_info(samples_src: Path) -> dict | None:
    """What the run behind a sample output trained on: ``{"run_dir", "dataset", "split", "indices", ...}``.

    Follows ``sampling.json`` (written by ``qmedgen sample``) to the run directory and reads its ``indices.json``;
    also accepts a run directory itself. None when there is no such record.
    """
    d = samples_src.parent if samples_src.is_file() else samples_src
    for candidate in (d, d.parent):
        if (candidate / "indices.json").is_file():
            run_dir = candidate
            break
    else:
        sj = d / "sampling.json"
        if not sj.is_file():
            return None
        try:
            run_dir = Path(json.loads(sj.read_text())["run_dir"])
        except (ValueError, KeyError):
            return None
        if not (run_dir / "indices.json").is_file():
            return None
    try:
        info = json.loads((run_dir / "indices.json").read_text())
    except ValueError:
        return None
    info["run_dir"] = str(run_dir)
    return info
