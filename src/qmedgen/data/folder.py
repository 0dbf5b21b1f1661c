"""Image-folder datasets: ``PATH/<class>/<image>`` (ISIC2019 and ODIR-5k are usually arranged this way).

Layout: either ``PATH/<class>/...`` (one pool: splits ``train`` and ``all`` both return every image; ``val`` and
``test`` are errors) or ``PATH/{train,val,test}/<class>/...`` (real splits; ``all`` pools them). Class names are the
sorted sub-folder names (union across splits so label ids agree). Hidden entries and non-image files are ignored;
an empty class folder or an unreadable image is a :class:`DataError` naming the path.

Every image is centre-cropped to a square and resized (Pillow bicubic, antialiased when shrinking) to ``size``.
Images are RGB unless every image in the folder is grayscale (then 1 channel), or ``channels`` says otherwise.
Decoded arrays are cached in ``$QMEDGEN_CACHE/folders`` keyed by the file list, sizes and mtimes, so a
25 000-image folder is decoded once per target size; ``info.extra["files"]`` lists each image's relative path so
indices can be traced to files.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from qmedgen.data.dataset import DatasetInfo, ImageDataset
from qmedgen.data.integrity import cache_dir
from qmedgen.errors import DataError
from qmedgen.fileio import atomic_open

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm"}
SPLIT_DIRS = ("train", "val", "test")
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F", "P;L"}


def _subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)


def scan_folder(path: str | os.PathLike) -> dict[str, dict[str, list[Path]]]:
    """``{split: {class: [files]}}``; a flat class layout is reported as the single split ``"all"``."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: image folder not found (expected a directory with one sub-folder per class)")
    subs = _subdirs(root)
    split_layout = bool(subs) and all(s.name in SPLIT_DIRS for s in subs)
    tree: dict[str, dict[str, list[Path]]] = {}
    for split_dir in (subs if split_layout else [root]):
        classes = _subdirs(split_dir)
        if not classes:
            raise DataError(f"{split_dir}: no class sub-folders; expected {split_dir}/<class name>/<images>")
        per_class = {}
        for c in classes:
            files = _images_in(c)
            if not files:
                raise DataError(
                    f"{c}: empty class folder (no image files with suffix {sorted(IMAGE_SUFFIXES)}); "
                    f"expected at least one image per class (remove the folder if the class is unused)"
                )
            per_class[c.name] = files
        tree[split_dir.name if split_layout else "all"] = per_class
    return tree


def read_image(path: Path, size: int) -> tuple[np.ndarray, bool]:
    """One image as uint8 RGB ``[size, size, 3]`` (centre square, resized) and whether it was grayscale."""
    try:
        with Image.open(path) as img:
            gray = img.mode in _GRAY_MODES
            if img.format == "JPEG":
                img.draft("L" if gray else "RGB", (2 * size, 2 * size))  # fast DCT-domain downscale, still >= 2x
            img.load()
            if img.mode.startswith("I") or img.mode == "F":
                arr = np.asarray(img, dtype=np.float64)
                hi = 65535.0 if arr.max() > 255 else 255.0
                img = Image.fromarray(np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8))
            img = img.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: cannot read image ({exc}); expected a readable image file (PNG, JPEG, ...)") from exc
    w, h = img.size
    s = min(w, h)
    box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
    img = img.resize((size, size), Image.Resampling.BICUBIC, box=box)
    return np.asarray(img, dtype=np.uint8), gray


def _cache_key(files: list[Path], size: int) -> str:
    h = hashlib.sha1(usedforsecurity=False)
    h.update(f"v1|{size}".encode())
    for f in files:
        st = f.stat()
        h.update(f"|{f.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()


def _decode_all(files: list[Path], size: int, use_cache: bool) -> tuple[np.ndarray, bool]:
    cache = cache_dir() / "folders" / f"{_cache_key(files, size)}.npz"
    if use_cache and cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as z:
                return z["images"], bool(z["all_gray"])
        except (OSError, ValueError, KeyError):
            pass  # a bad cache entry is rebuilt below
    from tqdm.auto import tqdm

    out = np.empty((len(files), size, size, 3), dtype=np.uint8)
    all_gray = True
    for i, f in enumerate(tqdm(files, desc="decode images", unit="img", disable=len(files) < 500)):
        out[i], gray = read_image(f, size)
        all_gray &= gray
    if use_cache:
        try:
            with atomic_open(cache, "wb") as fh:
                np.savez(fh, images=out, all_gray=np.asarray(all_gray))
        except OSError:
            pass
    return out, all_gray


def load_folder(path: str | os.PathLike, split: str = "train", size: int = 28, channels: int | None = None,
                use_cache: bool = True) -> ImageDataset:
    """Load an image-folder dataset (see module docstring for layout, splits, channels and caching)."""
    root = Path(path).expanduser()
    tree = scan_folder(root)
    if "all" in tree and len(tree) == 1:
        if split not in ("train", "all"):
            raise DataError(
                f"{root}: this folder has no split sub-folders, so split {split!r} does not exist; use 'train' or "
                f"'all' (every image), or arrange it as {root}/{{train,val,test}}/<class>/<images>"
            )
        parts = ["all"]
    elif split == "all":
        parts = [s for s in SPLIT_DIRS if s in tree]
    elif split in tree:
        parts = [split]
    else:
        raise DataError(f"{root}: split {split!r} not found; available: {sorted(tree)} (or 'all')")
    class_names = sorted({c for per_class in tree.values() for c in per_class})
    files, labels = [], []
    for part in parts:
        for c, fs in sorted(tree[part].items()):
            files.extend(fs)
            labels.extend([class_names.index(c)] * len(fs))
    images, all_gray = _decode_all(files, size, use_cache)
    n_channels = channels if channels is not None else (1 if all_gray else 3)
    if n_channels == 1:
        images = images[..., :1].copy() if all_gray else _luma(images)
    info = DatasetInfo(
        name=f"folder:{path}", task="binary-class" if len(class_names) == 2 else "multi-class",
        class_names=class_names, n_channels=n_channels, size=size, split=split, n_classes=len(class_names),
        source=str(root), extra={"files": [str(f.relative_to(root)) for f in files]},
    )
    return ImageDataset(images, np.asarray(labels, dtype=np.int64), info)


def _luma(images: np.ndarray) -> np.ndarray:
    from qmedgen.data.transforms import convert_channels

    return convert_channels(images, 1)


def folder_summary(path: str | os.PathLike) -> str:
    """JSON text with the number of images per split and class (no decoding)."""
    tree = scan_folder(path)
    return json.dumps({s: {c: len(fs) for c, fs in pc.items()} for s, pc in tree.items()}, indent=1)
