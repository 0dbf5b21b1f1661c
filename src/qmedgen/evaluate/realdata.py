"""Real datasets as the evaluation reads them: one split at the samples' size, and seeded few-shot subsets."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qmedgen.data import ImageDataset, few_shot_subset, load_dataset


def load_split(name: str, split: str, size: int = 28, root: Path | None = None) -> ImageDataset:
    """``qmedgen.data.load_dataset(name, split, size, root)``."""
    return load_dataset(name, split=split, size=size, root=root)


def few_shot(labels: np.ndarray, n_per_class: int | None, seed: int) -> np.ndarray:
    """Indices of a seeded few-shot subset (``qmedgen.data.few_shot_subset``); all indices when n is None."""
    if n_per_class is None:
        return np.arange(len(labels), dtype=np.int64)
    return few_shot_subset(labels, n_per_class=n_per_class, seed=seed)
