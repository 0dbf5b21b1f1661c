"""Few-shot protocol: stratified, seeded subsets of a training split, recorded as index files.

Rules (so that every result can be traced to its images and evaluation never sees training images):

- ``few_shot_subset`` draws ``n_per_class`` images of each class, or ``n_total`` images split across classes in
  proportion to their frequency (largest remainder, at least one per class when ``n_total`` allows), with
  ``numpy.random.default_rng(seed)``; the result is sorted int64 positions in the split it was drawn from.
- Multi-label labels ``[N, L]`` are stratified by their *first positive label*; rows with no positive label (e.g.
  "no finding" X-rays in ChestMNIST) form an extra group with id ``L``. See :func:`primary_labels`.
- Draw from the ``train`` split (or ``all`` when a paper pools, as MediQ-GAN does for RetinaMNIST); the held-out
  real images for evaluation come from the official ``test`` split (:func:`heldout_split`), never from training.
- ``save_indices`` writes the indices and their provenance as JSON in the run directory; ``load_indices`` reads
  them back and checks them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from qmedgen.errors import DataError
from qmedgen.fileio import write_json

INDICES_FORMAT = "qmedgen-indices/1"


def primary_labels(labels: np.ndarray) -> np.ndarray:
    """1-D class ids used for stratification: the label itself, or the first positive label of a multi-label row
    (``L`` when the row has none)."""
    labels = np.asarray(labels)
    if labels.ndim == 1:
        return labels.astype(np.int64)
    if labels.ndim != 2:
        raise DataError(f"labels must be [N] or [N, L], got shape {list(labels.shape)}")
    pos = labels > 0
    first = pos.argmax(axis=1).astype(np.int64)
    first[~pos.any(axis=1)] = labels.shape[1]
    return first


def few_shot_subset(labels, n_per_class: int | None = None, n_total: int | None = None, seed: int = 0,
                    classes: Sequence[int] | None = None) -> np.ndarray:
    """Sorted int64 indices of a stratified, reproducible subset (see module docstring for the protocol).

    ``classes`` restricts the draw to those class ids (default: every class present in ``labels``). Raises
    :class:`DataError` naming the class and the number available when a class has fewer images than asked.
    """
    y = primary_labels(labels)
    if (n_per_class is None) == (n_total is None):
        raise DataError("few_shot_subset: give exactly one of n_per_class or n_total")
    present = np.unique(y)
    wanted = present if classes is None else np.asarray(sorted({int(c) for c in classes}), dtype=np.int64)
    counts = {int(c): int((y == c).sum()) for c in wanted}
    empty = [c for c, n in counts.items() if n == 0]
    if empty:
        raise DataError(f"few_shot_subset: class(es) {empty} have no images (classes present: {present.tolist()})")
    if n_per_class is not None:
        if n_per_class < 1:
            raise DataError(f"few_shot_subset: n_per_class must be >= 1, got {n_per_class}")
        take = {c: int(n_per_class) for c in counts}
    else:
        take = _allocate(counts, int(n_total))
    for c, k in take.items():
        if k > counts[c]:
            raise DataError(
                f"few_shot_subset: class {c} has only {counts[c]} images available, {k} requested"
                + (" (n_per_class)" if n_per_class is not None else f" (its share of n_total={n_total})")
            )
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(y == c))[:take[c]] for c in sorted(take)]
    return np.sort(np.concatenate(chosen)).astype(np.int64) if chosen else np.zeros(0, np.int64)


def _allocate(counts: dict[int, int], n_total: int) -> dict[int, int]:
    available = sum(counts.values())
    if n_total < 1 or n_total > available:
        raise DataError(f"few_shot_subset: n_total must be in [1, {available}] (images available), got {n_total}")
    classes = sorted(counts)
    floor = 1 if n_total >= len(classes) else 0
    take = {c: min(floor, counts[c]) for c in classes}
    left = n_total - sum(take.values())
    spare = {c: counts[c] - take[c] for c in classes}
    total_spare = sum(spare.values())
    quota = {c: left * spare[c] / total_spare if total_spare else 0.0 for c in classes}
    for c in classes:
        take[c] += int(quota[c])
    # Largest remainder; ties go to the larger class, then the smaller id, so the result is deterministic.
    order = sorted(classes, key=lambda c: (-(quota[c] - int(quota[c])), -counts[c], c))
    i = 0
    while sum(take.values()) < n_total:
        c = order[i % len(order)]
        if take[c] < counts[c]:
            take[c] += 1
        i += 1
    return take


def heldout_split(name: str) -> str:
    """The split that holds the real images used for evaluation: always the official ``"test"`` split."""
    del name  # the same rule for every dataset; the argument documents intent at call sites
    return "test"


def save_indices(path: str | os.PathLike, indices, meta: dict | None = None) -> Path:
    """Write indices (and provenance such as dataset, split, seed, n_per_class) to JSON atomically."""
    path = Path(path)
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    record = {"format": INDICES_FORMAT, "n": int(idx.size), "indices": idx.tolist(), "meta": dict(meta or {})}
    return write_json(path, record, indent=1)


def load_indices(path: str | os.PathLike) -> tuple[np.ndarray, dict]:
    """Read an index file written by :func:`save_indices`; returns ``(indices int64, meta)``."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise DataError(f"{path}: indices file not found") from exc
    except ValueError as exc:
        raise DataError(f"{path}: not valid JSON ({exc}); expected a {INDICES_FORMAT} file") from exc
    if not isinstance(record, dict) or record.get("format") != INDICES_FORMAT or "indices" not in record:
        raise DataError(f"{path}: expected a JSON object with format {INDICES_FORMAT!r} and an 'indices' list")
    idx = np.asarray(record["indices"], dtype=np.int64)
    if idx.ndim != 1 or idx.size != record.get("n", idx.size):
        raise DataError(f"{path}: 'indices' has {idx.size} entries but 'n' says {record.get('n')}")
    return idx, dict(record.get("meta") or {})


