"""Access to real datasets through the data API (``qmedgen.data.load_dataset``), with evaluation-specific checks."""

from __future__ import annotations

from pathlib import Path

from qmedgen.errors import ConfigError


def load_split(name: str, split: str, size: int = 28, root: Path | None = None):
    """``qmedgen.data.load_dataset(name, split, size, root)``; raises a ConfigError if the data API is absent."""
    try:
        from qmedgen.data import load_dataset
    except ImportError as exc:  # the data subsystem is a separate module; say what is missing
        raise ConfigError(f"cannot load dataset {name!r}: qmedgen.data.load_dataset is unavailable ({exc})") from exc
    return load_dataset(name, split=split, size=size, root=root)


def few_shot(labels, n_per_class: int | None, seed: int):
    """Indices of a seeded few-shot subset (``qmedgen.data.few_shot_subset``); all indices when n is None."""
    import numpy as np

    if n_per_class is None:
        return np.arange(len(labels), dtype=np.int64)
    from qmedgen.data import few_shot_subset

    return few_shot_subset(labels, n_per_class=n_per_class, seed=seed)
