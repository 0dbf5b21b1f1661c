"""Sample-quality metrics on feature vectors: FID, KID, precision/recall/density/coverage, diversity, memorisation.

Every metric is written for *weighted* sets: a weight vector per set (all ones by default). This one form gives
the plain estimate, KID's subsets (0/1 weights), class-prior matching (fake images reweighted so their class
proportions match the real set) and bootstrap replicates (multinomial counts) without copying feature matrices.
Pairs of copies of the same original sample (a bootstrap draw picking it twice) are always excluded from
within-set pair statistics, so resampling does not create artificial zero distances.

All computations run in float64 on the CPU (features are small; numerical care matters more than speed).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from qmedgen.errors import DataError

#: Yoon et al. (2023), "Diffusion probabilistic models generalize when they fail to memorize": a generated
#: sample is a likely copy when its nearest training neighbour is < 1/3 of the distance to the second nearest.
COPY_RATIO_THRESHOLD = 1.0 / 3.0


class SmallSampleWarning(UserWarning):
    """A metric was computed on too few samples to be trusted (e.g. FID with n < feature dimension)."""


def _t(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=torch.float64)


def _check_pair(real: np.ndarray, fake: np.ndarray) -> None:
    if real.ndim != 2 or fake.ndim != 2:
        raise DataError(f"features must be 2-D [N, D]; got real {list(real.shape)}, fake {list(fake.shape)}")
    if real.shape[1] != fake.shape[1]:
        raise DataError(f"feature dimensions differ: real {real.shape[1]}, fake {fake.shape[1]}")
    if len(real) < 2 or len(fake) < 2:
        raise DataError(f"need at least 2 real and 2 fake samples; got {len(real)} and {len(fake)}")


# ----------------------------------------------------------------------------------------------------- FID

def weighted_stats(x: torch.Tensor, w: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased covariance (reliability weights) of rows of ``x``."""
    if w is None:
        mu = x.mean(0)
        xc = x - mu
        return mu, xc.T @ xc / (len(x) - 1)
    s = w.sum()
    mu = (w[:, None] * x).sum(0) / s
    xc = x - mu
    return mu, (xc * w[:, None]).T @ xc / (s - (w * w).sum() / s)


def _sqrtm_psd(s: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh(s)
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)).

    The trace term uses tr((S1 S2)^(1/2)) = sum sqrt(eig(S1^(1/2) S2 S1^(1/2))), a symmetric PSD matrix, via two
    symmetric eigendecompositions: no complex parts and no ill-conditioned ``sqrtm`` iterations.
    """
    mu1, mu2, sigma1, sigma2 = _t(mu1), _t(mu2), _t(sigma1), _t(sigma2)
    r1 = _sqrtm_psd(sigma1)
    m = r1 @ sigma2 @ r1
    tr_sqrt = torch.linalg.eigvalsh((m + m.T) / 2).clamp_min(0).sqrt().sum()
    value = ((mu1 - mu2) ** 2).sum() + torch.trace(sigma1) + torch.trace(sigma2) - 2 * tr_sqrt
    return max(float(value), 0.0)


def fid_flags(n_real: int, n_fake: int, dim: int) -> list[str]:
    """Reasons why an FID on these sample sizes is unreliable (empty when it is fine)."""
    flags = []
    if min(n_real, n_fake) < dim:
        flags.append(f"fid: fewer samples (real {n_real}, fake {n_fake}) than feature dimensions ({dim}): the "
                     "covariance is rank-deficient and FID is strongly biased; compare KID instead")
    return flags


def fid(real: np.ndarray, fake: np.ndarray, fake_weights: np.ndarray | None = None, warn: bool = True) -> float:
    """Fréchet distance between Gaussian fits of two feature sets (warns when n < dimension)."""
    real, fake = np.asarray(real), np.asarray(fake)
    _check_pair(real, fake)
    if warn:
        for msg in fid_flags(len(real), len(fake), real.shape[1]):
            warnings.warn(msg, SmallSampleWarning, stacklevel=2)
    w = None if fake_weights is None else _t(fake_weights)
    return frechet_distance(*weighted_stats(_t(real)), *weighted_stats(_t(fake), w))


# ----------------------------------------------------------------------------------------------------- KID

def _poly_kernel(gram: torch.Tensor, dim: int) -> torch.Tensor:
    return (gram / dim + 1.0) ** 3


def _offdiag_mean(k: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """sum_{i != j} w_i w_j K_ij / sum_{i != j} w_i w_j for a batch of weight rows ``w`` [B, n]."""
    num = ((w @ k) * w).sum(1) - (w * w * torch.diagonal(k)).sum(1)
    den = w.sum(1) ** 2 - (w * w).sum(1)
    return num / den


def mmd2_unbiased(k_rr: torch.Tensor, k_ff: torch.Tensor, k_rf: torch.Tensor, w: torch.Tensor,
                  v: torch.Tensor) -> torch.Tensor:
    """Unbiased MMD^2 (U-statistic) for weight rows ``w`` [B, n_real] and ``v`` [B, n_fake]."""
    cross = ((w @ k_rf) * v).sum(1) / (w.sum(1) * v.sum(1))
    return _offdiag_mean(k_rr, w) + _offdiag_mean(k_ff, v) - 2 * cross


@dataclass
class KIDResult:
    """KID = mean over subsets of the unbiased MMD^2 (cubic polynomial kernel); std is across subsets."""

    value: float
    std: float
    subset_size: int
    n_subsets: int
    estimates: np.ndarray = field(repr=False)

    @property
    def stderr(self) -> float:
        """std / sqrt(n_subsets): the Monte-Carlo error of the subset average (not the sampling error; see the
        bootstrap CI for that, and note that subsets overlap when the sets are small)."""
        return self.std / math.sqrt(self.n_subsets)


def kid_subset_size(n_real: int, n_fake: int, cap: int = 1000) -> int:
    """min(cap, n_real, n_fake): small sets use all their samples in each subset."""
    return int(min(cap, n_real, n_fake))


def _subset_weights(n: int, m: int, count: int, rng: np.random.Generator, base: torch.Tensor | None) -> torch.Tensor:
    w = torch.zeros(count, n, dtype=torch.float64)
    for b in range(count):
        w[b, torch.from_numpy(rng.choice(n, size=m, replace=False))] = 1.0
    return w if base is None else w * base


def kid(real: np.ndarray, fake: np.ndarray, n_subsets: int = 100, subset_size: int | None = None, seed: int = 0,
        fake_weights: np.ndarray | None = None) -> KIDResult:
    """Kernel Inception Distance (Bińkowski et al., 2018), subset size ``min(1000, n_real, n_fake)`` by default."""
    real, fake = np.asarray(real), np.asarray(fake)
    _check_pair(real, fake)
    g = FeatureGeometry(real, fake)
    m = subset_size or kid_subset_size(len(real), len(fake))
    rng = np.random.default_rng(seed)
    base = None if fake_weights is None else _t(fake_weights)
    w = _subset_weights(len(real), m, n_subsets, rng, None)
    v = _subset_weights(len(fake), m, n_subsets, rng, base)
    est = g.mmd2(w, v).numpy()
    std = float(est.std(ddof=1)) if n_subsets > 1 else 0.0
    return KIDResult(float(est.mean()), std, m, n_subsets, est)


# ------------------------------------------------------------------------------------------- geometry / PRDC

class FeatureGeometry:
    """Gram matrices of a real and a fake feature set, reused by KID, PRDC and pairwise-distance statistics."""

    def __init__(self, real: np.ndarray, fake: np.ndarray) -> None:
        self.real, self.fake = _t(real), _t(fake)
        self.dim = self.real.shape[1]
        self.g_rr = self.real @ self.real.T
        self.g_ff = self.fake @ self.fake.T
        self.g_rf = self.real @ self.fake.T
        self.n_r, self.n_f = torch.diagonal(self.g_rr), torch.diagonal(self.g_ff)
        self._k = None
        self._d = None

    def mmd2(self, w: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self._k is None:
            self._k = tuple(_poly_kernel(g, self.dim) for g in (self.g_rr, self.g_ff, self.g_rf))
        return mmd2_unbiased(*self._k, w, v)

    @property
    def distances(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Euclidean distance matrices real-real, fake-fake, real-fake."""
        if self._d is None:
            def dist(na, nb, g):
                return (na[:, None] + nb[None, :] - 2 * g).clamp_min(0).sqrt()
            self._d = (dist(self.n_r, self.n_r, self.g_rr), dist(self.n_f, self.n_f, self.g_ff),
                       dist(self.n_r, self.n_f, self.g_rf))
        return self._d


class KnnIndex:
    """Neighbours of every point of one set, sorted by distance once, for repeated weighted k-NN radii.

    Only the nearest ``width`` neighbours are kept (bootstrap weights rarely need more to reach k); rows that do
    fall short are recomputed from the full distance matrix.
    """

    def __init__(self, d: torch.Tensor, width: int | None = None) -> None:
        d = d.clone()
        d.fill_diagonal_(float("inf"))
        self.d = d
        self.width = min(len(d), width or len(d))
        sorted_d, order = torch.sort(d, dim=1)
        self.sorted_d, self.order = sorted_d[:, :self.width], order[:, :self.width]

    def radius(self, w: torch.Tensor, k: int) -> torch.Tensor:
        """Distance to the k-th nearest *other* point, counting neighbour j with multiplicity w_j (0 = absent)."""
        r = _kth_from_sorted(self.sorted_d, w[self.order], k)
        short = ~torch.isfinite(r)
        if short.any() and self.width < len(self.d):
            rows = torch.nonzero(short).squeeze(1)
            sd, order = torch.sort(self.d[rows], dim=1)
            r[rows] = _kth_from_sorted(sd, w[order], k)
        return r


def _kth_from_sorted(sorted_d: torch.Tensor, weights: torch.Tensor, k: int) -> torch.Tensor:
    cw = torch.cumsum(weights, dim=1)
    pos = torch.searchsorted(cw, torch.full((len(cw), 1), float(k) - 1e-9, dtype=cw.dtype))
    found = pos < cw.shape[1]
    val = torch.gather(sorted_d, 1, pos.clamp_max(cw.shape[1] - 1)).squeeze(1)
    return torch.where(found.squeeze(1), val, torch.full_like(val, float("inf")))


def knn_radius(d: torch.Tensor, w: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each point to its k-th nearest *other* point, counting neighbour j with multiplicity w_j.

    ``d`` is a square within-set distance matrix; points with weight 0 are absent. Fractional weights (class-prior
    matching) are treated as multiplicities, which is what the weighted k-NN ball means.
    """
    return KnnIndex(d).radius(w, k)


def prdc_weighted(d_rr: torch.Tensor | KnnIndex, d_ff: torch.Tensor | KnnIndex, d_rf: torch.Tensor, w: torch.Tensor,
                  v: torch.Tensor, k: int = 5) -> dict[str, float]:
    """Precision, recall, density, coverage (Naeem et al., 2020) for weighted real (w) and fake (v) sets.

    ``d_rr``/``d_ff`` are within-set distance matrices or their precomputed :class:`KnnIndex`.
    """
    r_real = (d_rr if isinstance(d_rr, KnnIndex) else KnnIndex(d_rr)).radius(w, k)
    r_fake = (d_ff if isinstance(d_ff, KnnIndex) else KnnIndex(d_ff)).radius(v, k)
    present_r, present_f = w > 0, v > 0
    inside_real = (d_rf <= r_real[:, None]) & present_r[:, None]       # fake j inside real ball i
    inside_fake = (d_rf <= r_fake[None, :]) & present_f[None, :]       # real i inside fake ball j
    precision = (v * inside_real.any(0)).sum() / v.sum()
    recall = (w * inside_fake.any(1)).sum() / w.sum()
    density = (v * (w[:, None] * inside_real).sum(0)).sum() / (k * v.sum())
    nearest_fake = torch.where(present_f[None, :], d_rf, torch.full_like(d_rf, float("inf"))).min(1).values
    coverage = (w * (nearest_fake < r_real)).sum() / w.sum()
    return {"precision": float(precision), "recall": float(recall), "density": float(density),
            "coverage": float(coverage)}


def prdc(real: np.ndarray, fake: np.ndarray, k: int = 5, fake_weights: np.ndarray | None = None) -> dict[str, float]:
    """Precision/recall/density/coverage with k-nearest-neighbour balls (k = 5)."""
    real, fake = np.asarray(real), np.asarray(fake)
    _check_pair(real, fake)
    if min(len(real), len(fake)) <= k:
        raise DataError(f"PRDC with k={k} needs more than {k} real and fake samples; got {len(real)}, {len(fake)}")
    g = FeatureGeometry(real, fake)
    w = torch.ones(len(real), dtype=torch.float64)
    v = torch.ones(len(fake), dtype=torch.float64) if fake_weights is None else _t(fake_weights)
    return prdc_weighted(*g.distances, w, v, k)


# ----------------------------------------------------------------------------------------------- diversity

def mean_pairwise(d: torch.Tensor, w: torch.Tensor) -> float:
    """Weighted mean of d_ij over pairs of distinct original points (NaN with fewer than 2 points)."""
    num = (w @ d @ w) - (w * w * torch.diagonal(d)).sum()
    den = w.sum() ** 2 - (w * w).sum()
    return float(num / den) if den > 0 else float("nan")


def feature_diversity(real: np.ndarray, real_labels: np.ndarray, fake: np.ndarray, fake_labels: np.ndarray,
                      ) -> dict[str, float | dict]:
    """Intra-class mean pairwise feature distance of fake images divided by that of real images.

    1 means as diverse as real data; << 1 signals mode collapse; per-class ratios are averaged over the classes
    present in both sets (at least 2 images each).
    """
    g = FeatureGeometry(np.asarray(real), np.asarray(fake))
    return diversity_weighted(g.distances[0], g.distances[1], _t(real_labels).long(), _t(fake_labels).long(),
                              torch.ones(len(real), dtype=torch.float64), torch.ones(len(fake), dtype=torch.float64))


def diversity_weighted(d_rr, d_ff, yr, yf, w, v) -> dict[str, float | dict]:
    per_class = {}
    for c in sorted(set(yr.tolist()) & set(yf.tolist())):
        ir, jf = torch.nonzero(yr == c).squeeze(1), torch.nonzero(yf == c).squeeze(1)
        if len(ir) < 2 or len(jf) < 2:
            continue
        real_div = mean_pairwise(d_rr[ir][:, ir], w[ir])
        fake_div = mean_pairwise(d_ff[jf][:, jf], v[jf])
        if real_div > 0 and math.isfinite(real_div) and math.isfinite(fake_div):
            per_class[int(c)] = fake_div / real_div
    value = float(np.mean(list(per_class.values()))) if per_class else float("nan")
    return {"value": value, "per_class": per_class}


# -------------------------------------------------------------------------------------------- memorisation

def nearest_two(query: np.ndarray, reference: np.ndarray, chunk: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Distances from each query row to its nearest and second-nearest reference rows (chunked: ~160 MB)."""
    ref = _t(reference)
    nr = (ref * ref).sum(1)
    chunk = chunk or max(1, 20_000_000 // max(len(ref), 1))
    d1, d2 = [], []
    for start in range(0, len(query), chunk):
        q = _t(query[start:start + chunk])
        d = ((q * q).sum(1)[:, None] + nr[None, :] - 2 * q @ ref.T).clamp_min(0).sqrt()
        top = torch.topk(d, k=min(2, d.shape[1]), dim=1, largest=False).values
        d1.append(top[:, 0])
        d2.append(top[:, -1])
    return torch.cat(d1).numpy(), torch.cat(d2).numpy()


def memorisation(fake: np.ndarray, train: np.ndarray, heldout: np.ndarray | None = None,
                 threshold: float = COPY_RATIO_THRESHOLD) -> dict[str, float]:
    """Nearest-training-image statistics of generated images in feature space.

    - ``copy_fraction``: share of generated images whose nearest training image is closer than ``threshold``
      times the second nearest (Yoon et al., 2023 use 1/3): a near-duplicate of one specific training image.
    - ``nn_distance_ratio``: median distance of generated images to their nearest training image, divided by
      the same median for held-out real images (needs ``heldout``): ~1 is healthy, << 1 means copying.
    - ``heldout_copy_fraction``: the copy criterion applied to held-out real images (its false-positive level).
    """
    fake, train = np.asarray(fake), np.asarray(train)
    if len(train) < 2:
        raise DataError(f"memorisation needs at least 2 training images; got {len(train)}")
    d1, d2 = nearest_two(fake, train)
    out = {"copy_fraction": float(np.mean(d1 < threshold * d2)), "fake_nn_median": float(np.median(d1)),
           "threshold": threshold}
    if heldout is not None:
        h1, h2 = nearest_two(np.asarray(heldout), train)
        out["nn_distance_ratio"] = float(np.median(d1) / max(np.median(h1), 1e-12))
        out["heldout_copy_fraction"] = float(np.mean(h1 < threshold * h2))
    return out


# ------------------------------------------------------------------------------------ conditional accuracy

def conditional_accuracy(logits: np.ndarray, labels: np.ndarray, n_classes: int | None = None) -> dict:
    """Share of generated images that the domain classifier assigns to the class they were generated for."""
    logits, labels = np.asarray(logits), np.asarray(labels)
    if labels.ndim != 1:
        raise DataError("conditional accuracy needs single-label class labels")
    correct = logits.argmax(1) == labels
    n_classes = n_classes or logits.shape[1]
    per_class = {int(c): float(correct[labels == c].mean()) for c in range(n_classes) if (labels == c).any()}
    return {"value": float(correct.mean()), "per_class": per_class}


def class_matching_weights(real_labels: np.ndarray, fake_labels: np.ndarray) -> np.ndarray:
    """Weights for fake samples so that their weighted class proportions equal the real set's (mean weight 1).

    Classes absent from the real set get weight 0; a real class with no fake samples cannot be matched and is
    left out (the evaluation report records the classes used).
    """
    real_labels, fake_labels = np.asarray(real_labels), np.asarray(fake_labels)
    classes = np.union1d(real_labels, fake_labels)
    p_real = {c: float(np.mean(real_labels == c)) for c in classes}
    n_fake = {c: int(np.sum(fake_labels == c)) for c in classes}
    w = np.array([p_real[c] / n_fake[c] for c in fake_labels], dtype=np.float64)
    if w.sum() <= 0:
        raise DataError("no class of the generated images occurs in the real set")
    return w * len(w) / w.sum()
