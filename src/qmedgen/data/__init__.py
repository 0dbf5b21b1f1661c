"""Dataset loaders (MedMNIST, MNIST, image folders), transforms, few-shot subsets and embedded data.

>>> from qmedgen.data import load_dataset, few_shot_subset
>>> ds = load_dataset("embedded-retinamnist", split="train")
>>> idx = few_shot_subset(ds.labels, n_per_class=5, seed=0)
>>> x, y = ds.tensors(idx)  # float32 [25, 3, 28, 28] in [-1, 1], int64 [25]
"""

from qmedgen.data.dataset import DatasetInfo, ImageDataset
from qmedgen.data.fewshot import few_shot_subset, heldout_split, load_indices, primary_labels, save_indices
from qmedgen.data.loader import known_datasets, load_dataset
from qmedgen.data.locations import default_root

__all__ = [
    "DatasetInfo",
    "ImageDataset",
    "default_root",
    "few_shot_subset",
    "heldout_split",
    "known_datasets",
    "load_dataset",
    "load_indices",
    "primary_labels",
    "save_indices",
]
