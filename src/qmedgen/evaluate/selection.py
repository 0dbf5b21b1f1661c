"""Filtering synthetic images before they are used to augment a few-shot training set.

A generator trained on tens of images makes two kinds of images that hurt a downstream classifier rather than
help it, and this module flags both:

- **Off-class images** (``"low-confidence"``): the image does not look like its intended class. A classifier
  trained on the *real* few-shot set (the same images the generator saw, and nothing else, so no held-out data
  leaks into the selection) scores every synthetic image; an image whose probability of its intended label is
  below ``min_confidence`` is rejected. Adding such an image teaches the classifier a wrong label.
- **Near copies** (``"near-copy"``): the image is (almost) one of the training images. It adds no information,
  only over-weights that image, and a copied patient image must not be released as "synthetic". The distance is
  the RMS pixel distance (pixels scaled to [0, 1]) to the nearest *real training* image of any class. What counts
  as "near" depends on the data, so the threshold is calibrated on the real images themselves: the
  ``min_nn_quantile`` quantile of the real-to-real leave-one-out nearest-neighbour distances. A synthetic image
  closer to a training image than almost every real image is to its nearest *other* real image is a copy. An
  exact copy (distance 0) is always a near copy, even when the real set itself holds duplicates (threshold 0).

Rule: an image is kept when ``confidence >= min_confidence`` and it is not a near copy.

**A class never ends up empty silently.** If every synthetic image of a class fails the rule, the generator has
failed on that class (or the few-shot classifier is too weak to recognise it); dropping the class would silently
unbalance the augmented set. Instead its ``floor_per_class`` highest-confidence images that are *not* near copies
are kept anyway and reported (``Selection.floored``, ``summary()["floored"]``), so that the user sees the
problem. Near copies are never kept, not even by the floor; a class left with nothing (all near copies, or
``floor_per_class=0``) is listed in ``summary()["empty_classes"]`` and a warning is issued. We chose this over
raising an error because the weak class is usually still usable and the decision belongs to the user, who sees
it in the summary (and in ``qmedgen augment``'s manifest).

Pixel-space distance is a deliberately simple memorisation test: it catches copies and near copies (small
shifts in intensity or noise), not semantic copies; blurry "average" images can also sit closer to the real
images than real images sit to each other and then count as copies, which is the conservative direction.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qmedgen.errors import ConfigError, DataError

REASONS = ("low-confidence", "near-copy")


@dataclass
class Selection:
    """The outcome of :func:`select_synthetic`, one entry per synthetic image (in input order).

    ``keep``: bool mask of images to use; ``confidence``: probability of the intended label under the real-data
    classifier (NaN when it was not computed); ``nn_distance``: RMS pixel distance in [0, 1] to the nearest real
    training image, ``nn_index`` its position in the real set; ``threshold``: the near-copy threshold used;
    ``reasons``: per image, the rules it failed (empty when it passed; images kept by the class floor still show
    their reason). ``floored``: class -> images kept by the floor; ``empty_classes``: classes keeping nothing.
    """

    keep: np.ndarray
    confidence: np.ndarray
    nn_distance: np.ndarray
    nn_index: np.ndarray
    threshold: float
    reasons: list[tuple[str, ...]]
    labels: np.ndarray
    n_classes: int
    min_confidence: float
    min_nn_quantile: float
    floor_per_class: int
    floored: dict[int, int] = field(default_factory=dict)
    empty_classes: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.keep)

    def reason_text(self, i: int) -> str | None:
        """The reasons of image ``i`` as one string (``"low-confidence,near-copy"``), ``None`` when it passed."""
        return ",".join(self.reasons[i]) or None

    def summary(self) -> dict:
        """Counts for humans and manifests: kept / rejected overall, per class and per reason.

        Reason counts count images *with* that reason, so an image failing both rules is counted under both
        (``rejected`` counts it once). ``kept_by_floor`` images are included in ``kept``.
        """
        per_class = {}
        for c in sorted(int(c) for c in np.unique(self.labels)):
            m = self.labels == c
            row = {"n": int(m.sum()), "kept": int((self.keep & m).sum()), "rejected": int((~self.keep & m).sum())}
            for r in REASONS:
                row[r] = sum(1 for i in np.flatnonzero(m) if r in self.reasons[i])
            row["kept_by_floor"] = int(self.floored.get(c, 0))
            per_class[c] = row
        return {
            "n": len(self),
            "kept": int(self.keep.sum()),
            "rejected": int((~self.keep).sum()),
            "per_reason": {r: sum(1 for rs in self.reasons if r in rs) for r in REASONS},
            "per_class": per_class,
            "min_confidence": self.min_confidence,
            "min_nn_quantile": self.min_nn_quantile,
            "near_copy_threshold": self.threshold,
            "floor_per_class": self.floor_per_class,
            "floored": {int(c): int(n) for c, n in self.floored.items()},
            "empty_classes": list(self.empty_classes),
        }


def _flat(images: np.ndarray) -> np.ndarray:
    return np.asarray(images, dtype=np.float64).reshape(len(images), -1)


def nearest_real(query: np.ndarray, reference: np.ndarray, exclude_self: bool = False,
                 chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """RMS pixel distance (pixels scaled to [0, 1]) from each query image to its nearest reference image, and
    that image's index. ``exclude_self``: query and reference are the same set; each image's own entry is
    skipped (leave-one-out).

    Computed as ``|q|^2 + |r|^2 - 2 q.r`` on the raw 0..255 values in float64: every term is an integer below
    2^53, so the result is exact and an exact copy gets distance exactly 0 (not a rounding residue)."""
    if query.shape[1:] != reference.shape[1:]:
        raise DataError(f"image shapes differ: synthetic {list(query.shape[1:])}, real {list(reference.shape[1:])}")
    if len(reference) == 0 or (exclude_self and len(reference) < 2):
        raise DataError("nearest-neighbour distances need at least 2 real images (1 with exclude_self=False)")
    r = _flat(reference)
    rn = (r * r).sum(1)
    dim = r.shape[1]
    dist = np.empty(len(query))
    index = np.empty(len(query), dtype=np.int64)
    for start in range(0, len(query), chunk):
        q = _flat(query[start:start + chunk])
        d2 = (q * q).sum(1)[:, None] + rn[None, :] - 2.0 * (q @ r.T)
        if exclude_self:
            rows = np.arange(len(q))
            d2[rows, start + rows] = np.inf
        j = d2.argmin(1)
        index[start:start + len(q)] = j
        dist[start:start + len(q)] = np.sqrt(np.maximum(d2[np.arange(len(q)), j], 0.0) / dim) / 255.0
    return dist, index


def near_copy_threshold(real_images: np.ndarray, quantile: float = 0.05) -> float:
    """The ``quantile`` quantile (NumPy's default linear interpolation) of the real-to-real leave-one-out
    nearest-neighbour distances: how close real images of this dataset come to one another. Needs >= 2 images."""
    if not 0.0 <= quantile <= 1.0:
        raise ConfigError(f"min_nn_quantile must be in [0, 1], got {quantile}")
    loo, _ = nearest_real(real_images, real_images, exclude_self=True)
    return float(np.quantile(loo, quantile))


def _confidence(classifier, syn_images: np.ndarray, syn_labels: np.ndarray, n_classes: int) -> np.ndarray:
    from torch import nn

    from qmedgen.evaluate.utility import predict_proba

    probs = predict_proba(classifier, syn_images) if isinstance(classifier, nn.Module) else np.asarray(
        classifier(syn_images), dtype=np.float64)
    if probs.shape != (len(syn_images), n_classes):
        raise DataError(f"classifier returned probabilities of shape {list(probs.shape)}, expected "
                        f"[{len(syn_images)}, {n_classes}]")
    return probs[np.arange(len(syn_labels)), syn_labels]


def select_synthetic(real_images: np.ndarray, real_labels: np.ndarray, syn_images: np.ndarray,
                     syn_labels: np.ndarray, n_classes: int, *, min_confidence: float = 0.5,
                     min_nn_quantile: float = 0.05, seed: int = 0, device=None,
                     classifier: Any = None, progress: bool = False,
                     classifier_epochs: float = 100, classifier_policy: tuple[str, ...] = ("crop",),
                     floor_per_class: int = 5, filter_confidence: bool = True) -> Selection:
    """Flag off-class synthetic images and near copies of the real training images (see the module docstring).

    Images are uint8 NHWC arrays of the same size and channel count; labels are class ids in ``0..n_classes-1``.
    ``real_*`` must be the generator's *training* images (the near-copy test is about them; held-out images must
    not be passed, or they would leak into the selection).

    ``classifier``: a trained ``torch.nn.Module`` taking [-1, 1] NCHW batches (scored with
    :func:`qmedgen.evaluate.utility.predict_proba`), or a callable mapping uint8 NHWC images to ``[N, n_classes]``
    probabilities; by default a :class:`~qmedgen.evaluate.utility.SmallResNet` is trained on the real images with
    :func:`~qmedgen.evaluate.utility.train_classifier` (``classifier_epochs``, ``classifier_policy``, ``seed``,
    ``device``). ``filter_confidence=False`` skips the classifier entirely (confidence NaN, only the near-copy rule
    applies). ``floor_per_class``: images kept anyway in a class that would keep none (module docstring).
    """
    real_images, syn_images = np.asarray(real_images), np.asarray(syn_images)
    real_labels = np.asarray(real_labels, dtype=np.int64).reshape(-1)
    syn_labels = np.asarray(syn_labels, dtype=np.int64).reshape(-1)
    for name, x, y in (("real", real_images, real_labels), ("synthetic", syn_images, syn_labels)):
        if x.dtype != np.uint8 or x.ndim != 4:
            raise DataError(f"{name} images must be uint8 [N, H, W, C], got {x.dtype} {list(x.shape)}")
        if len(y) != len(x):
            raise DataError(f"{name}: {len(x)} images but {len(y)} labels")
        bad = sorted(set(np.unique(y).tolist()) - set(range(n_classes)))
        if bad:
            raise DataError(f"{name} labels {bad} are outside the classes 0..{n_classes - 1}")
    if not 0.0 <= min_confidence <= 1.0:
        raise ConfigError(f"min_confidence must be in [0, 1], got {min_confidence}")
    if floor_per_class < 0:
        raise ConfigError(f"floor_per_class must be >= 0, got {floor_per_class}")
    if len(real_images) < 2:
        raise DataError(f"the near-copy threshold needs at least 2 real training images, got {len(real_images)}")

    threshold = near_copy_threshold(real_images, min_nn_quantile)
    nn_dist, nn_idx = nearest_real(syn_images, real_images) if len(syn_images) else (np.zeros(0), np.zeros(0, int))
    copy = (nn_dist < threshold) | (nn_dist == 0.0)

    if not filter_confidence:
        conf = np.full(len(syn_images), np.nan)
        low = np.zeros(len(syn_images), dtype=bool)
    else:
        if classifier is None:
            from qmedgen.evaluate.utility import train_classifier

            classifier = train_classifier(real_images, real_labels, n_classes, epochs=classifier_epochs,
                                          policy=tuple(classifier_policy), seed=seed, device=device,
                                          progress=progress, desc="selection classifier")
        conf = _confidence(classifier, syn_images, syn_labels, n_classes) if len(syn_images) else np.zeros(0)
        low = conf < min_confidence

    reasons = [tuple(r for r, bad in zip(REASONS, (lo, cp)) if bad) for lo, cp in zip(low, copy)]
    keep = ~(low | copy)
    floored: dict[int, int] = {}
    empty: list[int] = []
    for c in sorted(int(c) for c in np.unique(syn_labels)):
        m = syn_labels == c
        if keep[m].any():
            continue
        candidates = np.flatnonzero(m & ~copy)
        if len(candidates) and floor_per_class > 0:
            order = candidates[np.argsort(-np.nan_to_num(conf[candidates], nan=0.0), kind="stable")]
            chosen = order[:floor_per_class]
            keep[chosen] = True
            floored[c] = len(chosen)
        else:
            empty.append(c)
    if empty:
        warnings.warn(f"synthetic selection: class(es) {empty} keep no image (every candidate is a near copy of a "
                      "training image, or the class floor is 0)", UserWarning, stacklevel=2)
    return Selection(keep=keep, confidence=conf, nn_distance=nn_dist, nn_index=np.asarray(nn_idx, dtype=np.int64),
                     threshold=threshold, reasons=reasons, labels=syn_labels, n_classes=n_classes,
                     min_confidence=float(min_confidence), min_nn_quantile=float(min_nn_quantile),
                     floor_per_class=int(floor_per_class), floored=floored, empty_classes=empty)
