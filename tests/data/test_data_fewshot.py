"""Few-shot protocol: stratified, reproducible subsets, clear shortfall errors, recorded index files."""

from __future__ import annotations

import numpy as np
import pytest

from qmedgen.data import few_shot_subset, heldout_split, load_dataset, load_indices, primary_labels, save_indices
from qmedgen.errors import DataError

LABELS = np.repeat(np.arange(4), [50, 20, 10, 5])


def test_n_per_class_is_exact_sorted_and_reproducible():
    idx = few_shot_subset(LABELS, n_per_class=5, seed=3)
    assert idx.dtype == np.int64 and np.all(np.diff(idx) > 0)
    assert np.bincount(LABELS[idx]).tolist() == [5, 5, 5, 5]
    assert np.array_equal(idx, few_shot_subset(LABELS, n_per_class=5, seed=3))
    assert not np.array_equal(idx, few_shot_subset(LABELS, n_per_class=5, seed=4))
    assert set(LABELS[few_shot_subset(LABELS, n_per_class=2, classes=[1, 3])]) == {1, 3}


def test_shortfall_names_class_and_availability():
    with pytest.raises(DataError, match="class 3 has only 5 images available, 6 requested"):
        few_shot_subset(LABELS, n_per_class=6)
    with pytest.raises(DataError, match=r"class\(es\) \[7\] have no images"):
        few_shot_subset(LABELS, n_per_class=1, classes=[0, 7])
    with pytest.raises(DataError, match="exactly one"):
        few_shot_subset(LABELS)
    with pytest.raises(DataError, match="exactly one"):
        few_shot_subset(LABELS, n_per_class=1, n_total=4)
    with pytest.raises(DataError, match=r"n_total must be in \[1, 85\]"):
        few_shot_subset(LABELS, n_total=86)


def test_n_total_is_proportional_with_one_per_class():
    idx = few_shot_subset(LABELS, n_total=17, seed=0)
    counts = np.bincount(LABELS[idx], minlength=4)
    assert counts.sum() == 17 and counts.min() >= 1
    assert counts[0] > counts[1] > counts[2] >= counts[3]
    assert np.array_equal(idx, few_shot_subset(LABELS, n_total=17, seed=0))
    assert len(few_shot_subset(LABELS, n_total=85)) == 85


def test_multilabel_uses_first_positive_and_no_finding_group():
    y = np.array([[0, 1, 1], [1, 0, 0], [0, 0, 0], [0, 0, 1], [0, 0, 0]])
    assert primary_labels(y).tolist() == [1, 0, 3, 2, 3]
    assert few_shot_subset(y, n_per_class=1, classes=[3], seed=0).tolist()[0] in (2, 4)


def test_index_files_round_trip(tmp_path):
    ds = load_dataset("embedded-retinamnist")
    idx = few_shot_subset(ds.labels, n_per_class=8, seed=1)
    meta = {"dataset": ds.info.name, "split": ds.info.split, "seed": 1, "n_per_class": 8, "labels": ds.labels[idx]}
    path = save_indices(tmp_path / "run" / "indices.json", idx, meta)
    back, meta_back = load_indices(path)
    assert np.array_equal(back, idx) and meta_back["seed"] == 1 and meta_back["labels"] == ds.labels[idx].tolist()
    path.write_text('{"indices": [1]}')
    with pytest.raises(DataError, match="qmedgen-indices/1"):
        load_indices(path)
    with pytest.raises(DataError, match="not found"):
        load_indices(tmp_path / "none.json")


def test_heldout_is_the_official_test_split():
    assert heldout_split("retinamnist") == "test" and heldout_split("embedded-bloodmnist") == "test"
    train = load_dataset("embedded-bloodmnist", split="train")
    test = load_dataset("embedded-bloodmnist", split=heldout_split("embedded-bloodmnist"))
    assert set(train.info.extra["source_splits"]) == {"train"} and set(test.info.extra["source_splits"]) == {"test"}
