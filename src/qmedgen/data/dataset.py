"""In-memory image dataset: uint8 NHWC images, integer labels and a description of where they came from."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from qmedgen.errors import DataError


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is: name, task type, class names, channels, image size and split.

    ``task`` is one of ``multi-class``, ``ordinal-regression``, ``multi-label`` or ``binary-class``.
    ``source`` is the file or folder the images were read from (empty for synthetic data).
    """

    name: str
    task: str
    class_names: list[str]
    n_channels: int
    size: int
    split: str
    n_classes: int
    license: str = ""
    source: str = ""
    extra: dict = field(default_factory=dict, compare=False)


class ImageDataset:
    """Images ``uint8 [N, H, W, C]`` with labels ``int64 [N]`` (or ``[N, L]`` for multi-label data).

    ``indices`` are the positions of these images in the original split they were loaded from, so that a
    subset (for example a few-shot draw) can always be traced back to the exact source images.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, info: DatasetInfo,
                 indices: np.ndarray | None = None) -> None:
        images = np.asarray(images)
        labels = np.asarray(labels)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise DataError(
                f"{info.name}: images must be uint8 [N, H, W, C] with C in (1, 3); got {images.dtype} "
                f"{list(images.shape)}"
            )
        if labels.ndim not in (1, 2) or len(labels) != len(images):
            raise DataError(
                f"{info.name}: labels must be [N] or [N, L] with N = {len(images)} images; got {list(labels.shape)}"
            )
        self.images = images
        self.labels = labels.astype(np.int64, copy=False)
        self.info = info
        self.indices = np.arange(len(images), dtype=np.int64) if indices is None else np.asarray(indices, np.int64)

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        i = self.info
        return (f"ImageDataset({i.name!r}, split={i.split!r}, n={len(self)}, size={i.size}, "
                f"channels={i.n_channels}, classes={i.n_classes}, task={i.task!r})")

    def subset(self, indices) -> ImageDataset:
        """A new dataset with the images at ``indices`` (positions in this dataset); provenance is kept."""
        idx = _as_index(indices, len(self), self.info.name)
        return ImageDataset(self.images[idx], self.labels[idx], self.info, self.indices[idx])

    def tensors(self, indices=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Model-ready tensors: images float32 ``[N, C, H, W]`` in [-1, 1] (``x / 127.5 - 1``), labels int64."""
        idx = slice(None) if indices is None else _as_index(indices, len(self), self.info.name)
        images = torch.from_numpy(np.ascontiguousarray(self.images[idx]))
        x = images.permute(0, 3, 1, 2).to(torch.float32).div_(127.5).sub_(1.0).contiguous()
        y = torch.from_numpy(np.ascontiguousarray(self.labels[idx])).to(torch.int64)
        return x, y

    def class_counts(self) -> np.ndarray:
        """Images per class (multi-label: positives per label)."""
        if self.labels.ndim == 2:
            return (self.labels > 0).sum(axis=0).astype(np.int64)
        return np.bincount(self.labels, minlength=self.info.n_classes).astype(np.int64)

    def with_info(self, **changes) -> ImageDataset:
        """A copy with some ``DatasetInfo`` fields changed (same arrays)."""
        return ImageDataset(self.images, self.labels, replace(self.info, **changes), self.indices)


def _as_index(indices, n: int, name: str) -> np.ndarray:
    idx = np.asarray(indices)
    if idx.dtype == bool:
        if idx.shape != (n,):
            raise DataError(f"{name}: boolean mask must have shape [{n}], got {list(idx.shape)}")
        return np.flatnonzero(idx)
    if idx.size == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.issubdtype(idx.dtype, np.integer):
        raise DataError(f"{name}: indices must be integers, got dtype {idx.dtype}")
    idx = idx.astype(np.int64).reshape(-1)
    if idx.min() < -n or idx.max() >= n:
        raise DataError(f"{name}: index out of range for a dataset of {n} images (got {idx.min()}..{idx.max()})")
    return idx
