import numpy as np
import pytest

from qmedgen.errors import ConfigError, DataError
from qmedgen.evaluate.selection import Selection, near_copy_threshold, nearest_real, select_synthetic


def toy(n_per_class: int, seed: int, noise: int = 0, size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Trivially separable: class 0 dark images (mean 10..70), class 1 bright ones (185..245). Each image is a
    flat grey level plus uniform +-``noise``: real sets use flat images (``noise=0``, a few levels apart, so their
    leave-one-out distances are small), synthetic ones noisy images (``noise=40``), far from every real image."""
    rng = np.random.default_rng(seed)
    level = np.concatenate([rng.uniform(10, 70, n_per_class), rng.uniform(185, 245, n_per_class)])
    x = level[:, None, None, None] + rng.uniform(-noise, noise, (2 * n_per_class, size, size, 1))
    return np.clip(np.round(x), 0, 255).astype(np.uint8), np.repeat([0, 1], n_per_class).astype(np.int64)


def brightness_classifier(images: np.ndarray) -> np.ndarray:
    """A passed-in classifier: P(bright) grows with the mean pixel value."""
    p1 = 1 / (1 + np.exp(-(images.reshape(len(images), -1).mean(1) - 127.5) / 10))
    return np.stack([1 - p1, p1], 1)


def test_nearest_real_is_exact_rms_in_unit_pixels():
    ref = np.array([[[[0]], [[255]]], [[[255]], [[255]]]], dtype=np.uint8)  # two 2x1x1 images
    q = np.array([[[[0]], [[255]]], [[[51]], [[0]]]], dtype=np.uint8)
    d, i = nearest_real(q, ref)
    assert d[0] == 0.0 and i[0] == 0                     # an exact copy: exactly 0, not a rounding residue
    assert d[1] == pytest.approx(np.sqrt((0.2 ** 2 + 1.0) / 2)) and i[1] == 0


def test_threshold_is_the_quantile_of_leave_one_out_distances():
    # 1x1 grey images 0, 51, 153, 255 -> [0, 0.2, 0.6, 1.0]; leave-one-out NN distances 0.2, 0.2, 0.4, 0.4.
    real = np.array([0, 51, 153, 255], dtype=np.uint8).reshape(4, 1, 1, 1)
    assert near_copy_threshold(real, 0.5) == pytest.approx(0.3)
    assert near_copy_threshold(real, 0.25) == pytest.approx(0.2)
    assert near_copy_threshold(real, 1.0) == pytest.approx(0.4)
    # 2x1x1 images: RMS over pixels. a=(0,0), b=(51,51) -> 0.2; c=(255,0) -> d(a,c)=sqrt(1/2)
    real2 = np.array([[0, 0], [51, 51], [255, 0]], dtype=np.uint8).reshape(3, 2, 1, 1)
    loo = sorted([0.2, 0.2, np.sqrt(((1.0 - 0.2) ** 2 + 0.2 ** 2) / 2)])
    assert near_copy_threshold(real2, 0.75) == pytest.approx(np.quantile(loo, 0.75))
    with pytest.raises(ConfigError, match="min_nn_quantile"):
        near_copy_threshold(real, 1.5)


def test_exact_duplicates_are_near_copies():
    real, y = toy(6, seed=0)
    syn, sy = toy(6, seed=1, noise=40)
    syn[[0, 7]] = real[[3, 9]]                            # two exact copies of training images
    sel = select_synthetic(real, y, syn, sy, 2, classifier=brightness_classifier)
    assert sel.reasons[0] == ("near-copy",) and sel.reasons[7] == ("near-copy",)
    assert not sel.keep[0] and not sel.keep[7]
    assert sel.nn_distance[0] == 0.0 and sel.nn_index[0] == 3 and sel.nn_index[7] == 9
    others = np.setdiff1d(np.arange(len(syn)), [0, 7])
    assert sel.keep[others].all() and (sel.nn_distance[others] >= sel.threshold).all()


def test_exact_copy_is_flagged_even_when_the_threshold_is_zero():
    real, y = toy(4, seed=0)
    real[1] = real[0]                                     # duplicated training images: many LOO distances of 0
    real[5] = real[4]
    with pytest.warns(UserWarning, match="keep no image"):
        sel = select_synthetic(real, y, real[[0]], y[[0]], 2, min_nn_quantile=0.0, classifier=brightness_classifier)
    assert sel.threshold == 0.0 and sel.reasons[0] == ("near-copy",)


def test_wrong_class_is_low_confidence_with_a_passed_classifier():
    real, y = toy(5, seed=0)
    syn, sy = toy(5, seed=2, noise=40)
    wrong = sy.copy()
    wrong[:2] = 1                                          # two dark images labelled "bright"
    sel = select_synthetic(real, y, syn, wrong, 2, classifier=brightness_classifier)
    assert sel.reasons[:2] == [("low-confidence",), ("low-confidence",)]
    assert sel.confidence[:2].max() < 0.01 and sel.confidence[2:].min() > 0.99
    assert sel.keep.tolist() == [False, False] + [True] * 8


def test_wrong_class_is_low_confidence_with_a_trained_classifier():
    real, y = toy(10, seed=0)
    syn, sy = toy(4, seed=3, noise=40)
    flipped = 1 - sy
    sel = select_synthetic(real, y, syn, np.concatenate([sy[:4], flipped[4:]]), 2, classifier_epochs=20, seed=0,
                           device="cpu")
    assert not sel.keep[4:].any() and all(r == ("low-confidence",) for r in sel.reasons[4:])
    assert sel.keep[:4].all() and sel.confidence[:4].min() > 0.5


def test_summary_counts_and_class_floor():
    real, y = toy(5, seed=0)
    syn, sy = toy(4, seed=4, noise=40)
    labels = sy.copy()
    labels[4:] = 0                # every bright image labelled dark: class 0 gets 4 good + 4 off-class images
    labels[[0]] = 1               # ...and class 1 has one dark image only: off-class, so the floor keeps it
    syn[2] = real[1]              # a near copy in class 0
    sel = select_synthetic(real, y, syn, labels, 2, classifier=brightness_classifier, floor_per_class=3)
    s = sel.summary()
    assert s["n"] == 8 and s["per_reason"] == {"low-confidence": 5, "near-copy": 1}
    assert s["per_class"][0] == {"n": 7, "kept": 2, "rejected": 5, "low-confidence": 4, "near-copy": 1,
                                 "kept_by_floor": 0}
    assert s["per_class"][1] == {"n": 1, "kept": 1, "rejected": 0, "low-confidence": 1, "near-copy": 0,
                                 "kept_by_floor": 1}
    assert s["kept"] == 3 and s["rejected"] == 5 and s["floored"] == {1: 1} and s["empty_classes"] == []
    assert s["near_copy_threshold"] == sel.threshold and sel.reason_text(0) == "low-confidence"
    assert sel.reason_text(1) is None


def test_floor_never_keeps_near_copies_and_reports_the_empty_class():
    real, y = toy(4, seed=0)
    syn = real[[4, 5]]                                     # bright copies labelled bright: copies only
    with pytest.warns(UserWarning, match=r"class\(es\) \[1\] keep no image"):
        sel = select_synthetic(real, y, syn, np.array([1, 1]), 2, classifier=brightness_classifier)
    assert not sel.keep.any() and sel.summary()["empty_classes"] == [1]


def test_no_confidence_filter_and_input_errors():
    real, y = toy(3, seed=0)
    syn, sy = toy(2, seed=5, noise=40)
    sel = select_synthetic(real, y, syn, 1 - sy, 2, filter_confidence=False)
    assert isinstance(sel, Selection) and sel.keep.all() and np.isnan(sel.confidence).all()
    with pytest.raises(DataError, match="outside the classes"):
        select_synthetic(real, y, syn, sy + 5, 2, filter_confidence=False)
    with pytest.raises(DataError, match="shapes differ"):
        select_synthetic(real, y, syn[:, :4], sy, 2, filter_confidence=False)
    with pytest.raises(DataError, match="probabilities of shape"):
        select_synthetic(real, y, syn, sy, 2, classifier=lambda x: np.ones((len(x), 3)))
    with pytest.raises(ConfigError, match="min_confidence"):
        select_synthetic(real, y, syn, sy, 2, min_confidence=2.0, filter_confidence=False)
