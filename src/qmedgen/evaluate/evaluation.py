"""All sample-quality metrics for one set of generated images against a real reference set, with bootstrap CIs.

Conventions (stated in every report):
- Generated images are compared with the *held-out* real split (default: test), never with the training images;
  training images are used only for memorisation.
- Generated images are reweighted so that their class proportions match the real set (``class_weighting="real"``),
  so a class-balanced generator is not penalised on an imbalanced dataset such as RetinaMNIST.
- Kernel and k-NN metrics use at most ``max_real`` real images (a seeded random subset) to bound memory.
- Confidence intervals: percentile bootstrap, resampling real and generated images within each class (seeded).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from qmedgen.errors import DataError
from qmedgen.evaluate import metrics as M
from qmedgen.evaluate.cache import cached_features, content_hash
from qmedgen.evaluate.features import Extractor, extract_features, extract_logits
from qmedgen.evaluate.msssim import msssim_settings, pair_msssim, random_pairs
from qmedgen.evaluate.stats import bootstrap, percentile_ci, stratified_counts

#: Metrics whose ideal value is 1 (as real as real data); more is not better.
IDEAL_ONE = {"density", "feature_diversity", "msssim_diversity", "nn_distance_ratio"}
HIGHER_IS_BETTER = {"fid": False, "kid": False, "precision": True, "recall": True, "density": True,
                    "coverage": True, "conditional_accuracy": True, "feature_diversity": True,
                    "msssim_diversity": True, "copy_fraction": False, "nn_distance_ratio": True}


@dataclass
class EvalConfig:
    """Options of :func:`evaluate_images` (defaults are the recommended settings)."""

    n_boot: int = 200
    fid_boot: int = 50          # FID replicates need two eigendecompositions each
    kid_subsets: int = 100
    k: int = 5
    max_real: int = 4000
    msssim_pairs: int = 200     # random pairs per class
    class_weighting: str = "real"  # "real" | "none"
    seed: int = 0
    batch_size: int = 64
    progress: bool = True
    cache_real: bool = True


@dataclass
class MetricValue:
    value: float
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    se: float = float("nan")
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high, "se": self.se, **self.extra}


def real_features(extractor: Extractor, images: np.ndarray, cfg: EvalConfig, desc: str = "real features"):
    """Features of a real image set, cached under the content hash of the images and the extractor identity."""
    def compute():
        return extract_features(extractor, images, cfg.batch_size, cfg.progress, desc)
    if not cfg.cache_real or not extractor.identity:
        return compute()
    return cached_features(content_hash(images, extractor.identity, "features-v1"), compute)


def _ci(stat, labels_r, labels_f, n_boot, seed):
    """Bootstrap over real (w) and fake (v) multiplicities, each stratified by class."""
    if n_boot <= 0:
        return {}
    rng = np.random.default_rng(seed)
    wr = stratified_counts(labels_r, n_boot, rng)
    wf = stratified_counts(labels_f, n_boot, rng)
    reps = [stat(torch.from_numpy(a), torch.from_numpy(b)) for a, b in zip(wr, wf)]
    lo, hi = percentile_ci(reps)
    arr = np.asarray(reps, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    return {"ci_low": lo, "ci_high": hi, "se": float(arr.std(ddof=1)) if len(arr) > 1 else float("nan")}


def evaluate_features(real: np.ndarray, real_labels: np.ndarray, fake: np.ndarray, fake_labels: np.ndarray,
                      cfg: EvalConfig, train: np.ndarray | None = None) -> tuple[dict[str, MetricValue], list[str]]:
    """FID, KID, PRDC, feature diversity and memorisation on precomputed features. Returns (metrics, flags)."""
    flags: list[str] = []
    real_labels, fake_labels = np.asarray(real_labels), np.asarray(fake_labels)
    single = real_labels.ndim == 1 and fake_labels.ndim == 1
    if cfg.class_weighting == "real" and single:
        fw = M.class_matching_weights(real_labels, fake_labels)
    else:
        fw = np.ones(len(fake))
    fw_t = torch.from_numpy(fw)
    out: dict[str, MetricValue] = {}
    strat_r = real_labels if single else np.zeros(len(real_labels), np.int64)
    strat_f = fake_labels if single else np.zeros(len(fake_labels), np.int64)

    # FID on all images
    flags += M.fid_flags(len(real), len(fake), real.shape[1])
    for msg in flags:
        warnings.warn(msg, M.SmallSampleWarning, stacklevel=2)
    rt, ft = torch.as_tensor(real, dtype=torch.float64), torch.as_tensor(fake, dtype=torch.float64)
    fid_value = M.frechet_distance(*M.weighted_stats(rt), *M.weighted_stats(ft, fw_t))
    fid_ci = _ci(lambda w, v: M.frechet_distance(*M.weighted_stats(rt, w), *M.weighted_stats(ft, v * fw_t)),
                 strat_r, strat_f, min(cfg.n_boot, cfg.fid_boot), cfg.seed)
    out["fid"] = MetricValue(fid_value, **fid_ci, extra={"reliable": not flags})

    # kernel / k-NN metrics on a bounded real subset
    rng = np.random.default_rng(cfg.seed)
    keep = np.arange(len(real))
    if len(real) > cfg.max_real:
        keep = np.sort(rng.choice(len(real), cfg.max_real, replace=False))
        flags.append(f"kid/prdc/diversity use a random subset of {cfg.max_real} of {len(real)} real images")
    r_sub, yr_sub = real[keep], strat_r[keep]
    geo = M.FeatureGeometry(r_sub, fake)
    k_res = M.kid(r_sub, fake, n_subsets=cfg.kid_subsets, seed=cfg.seed, fake_weights=fw)
    kid_ci = _ci(lambda w, v: float(geo.mmd2(w[None], (v * fw_t)[None])[0]), yr_sub, strat_f, cfg.n_boot,
                 cfg.seed + 1)
    out["kid"] = MetricValue(k_res.value, **kid_ci, extra={"subset_std": k_res.std, "subset_stderr": k_res.stderr,
                                                           "subset_size": k_res.subset_size,
                                                           "n_subsets": k_res.n_subsets})
    if min(len(r_sub), len(fake)) > cfg.k:
        d_rr, d_ff, d_rf = geo.distances
        ones_r = torch.ones(len(r_sub), dtype=torch.float64)
        point = M.prdc_weighted(d_rr, d_ff, d_rf, ones_r, fw_t, cfg.k)
        rng_b = np.random.default_rng(cfg.seed + 2)
        wr = stratified_counts(yr_sub, cfg.n_boot, rng_b)
        wf = stratified_counts(strat_f, cfg.n_boot, rng_b)
        width = max(16 * cfg.k, 64)
        idx_r, idx_f = M.KnnIndex(d_rr, width), M.KnnIndex(d_ff, width)
        reps = [M.prdc_weighted(idx_r, idx_f, d_rf, torch.from_numpy(a), torch.from_numpy(b) * fw_t, cfg.k)
                for a, b in zip(wr, wf)]
        for name, value in point.items():
            r = [x[name] for x in reps]
            lo, hi = percentile_ci(r) if reps else (float("nan"), float("nan"))
            se = float(np.std(r, ddof=1)) if len(r) > 1 else float("nan")
            out[name] = MetricValue(value, lo, hi, se, extra={"k": cfg.k})
    else:
        flags.append(f"precision/recall/density/coverage skipped: need more than k={cfg.k} images per set")

    if single:
        d_rr, d_ff, _ = geo.distances
        yr_t, yf_t = torch.from_numpy(yr_sub).long(), torch.from_numpy(strat_f).long()
        div = M.diversity_weighted(d_rr, d_ff, yr_t, yf_t, torch.ones(len(r_sub), dtype=torch.float64),
                                   torch.ones(len(fake), dtype=torch.float64))
        div_ci = _ci(lambda w, v: M.diversity_weighted(d_rr, d_ff, yr_t, yf_t, w, v)["value"], yr_sub, strat_f,
                     cfg.n_boot, cfg.seed + 3)
        out["feature_diversity"] = MetricValue(div["value"], **div_ci, extra={"per_class": div["per_class"]})

    if train is not None:
        if len(train) < 2:
            raise DataError(f"memorisation needs at least 2 training images; got {len(train)}")
        d1, d2 = M.nearest_two(fake, train)
        h1, h2 = M.nearest_two(real, train)
        thr = M.COPY_RATIO_THRESHOLD
        copies = (d1 < thr * d2).astype(np.float64)
        cf_ci = bootstrap(lambda v: float((v * copies).sum() / v.sum()), strat_f, cfg.n_boot, cfg.seed + 4)
        extra = {"threshold": thr, "heldout_copy_fraction": float(np.mean(h1 < thr * h2)), "n_train": len(train)}
        out["copy_fraction"] = MetricValue(float(copies.mean()), cf_ci["ci_low"], cf_ci["ci_high"], cf_ci["se"],
                                           extra=extra)

        def ratio(w, v):
            return _weighted_median(d1, v.numpy()) / max(_weighted_median(h1, w.numpy()), 1e-12)
        nn_ci = _ci(ratio, strat_r, strat_f, cfg.n_boot, cfg.seed + 5)
        out["nn_distance_ratio"] = MetricValue(float(np.median(d1) / max(np.median(h1), 1e-12)), **nn_ci)
    return out, flags


def _weighted_median(x: np.ndarray, w: np.ndarray) -> float:
    order = np.argsort(x)
    cw = np.cumsum(w[order])
    return float(x[order][np.searchsorted(cw, cw[-1] / 2)])


def msssim_diversity(real_images: np.ndarray, real_labels: np.ndarray, fake_images: np.ndarray,
                     fake_labels: np.ndarray, cfg: EvalConfig) -> MetricValue | None:
    """(1 - mean MS-SSIM of random same-class fake pairs) / (same for real pairs), averaged over classes.

    1 = as diverse as real images of the class; near 0 = near-identical generated images. Pairs are bootstrapped.
    """
    rng = np.random.default_rng(cfg.seed + 6)
    per_class_pairs = []
    for c in sorted(set(np.unique(real_labels)) & set(np.unique(fake_labels))):
        ir, jf = np.flatnonzero(real_labels == c), np.flatnonzero(fake_labels == c)
        pr, pf = random_pairs(len(ir), cfg.msssim_pairs, rng), random_pairs(len(jf), cfg.msssim_pairs, rng)
        if len(pr) == 0 or len(pf) == 0:
            continue
        per_class_pairs.append((int(c), pair_msssim(real_images[ir], pr), pair_msssim(fake_images[jf], pf)))
    if not per_class_pairs:
        return None

    def stat(sel):
        ratios = []
        for (_, sr, sf), (ir, jf) in zip(per_class_pairs, sel):
            real_div = 1 - sr[ir].mean()
            if real_div > 1e-9:
                ratios.append((1 - sf[jf].mean()) / real_div)
        return float(np.mean(ratios)) if ratios else float("nan")

    ident = [(np.arange(len(sr)), np.arange(len(sf))) for _, sr, sf in per_class_pairs]
    point = stat(ident)
    reps = []
    for _ in range(cfg.n_boot):
        reps.append(stat([(rng.integers(0, len(sr), len(sr)), rng.integers(0, len(sf), len(sf)))
                          for _, sr, sf in per_class_pairs]))
    lo, hi = percentile_ci(reps)
    scales, win, _ = msssim_settings(min(real_images.shape[1:3]))
    per_class = {c: float((1 - sf.mean()) / max(1 - sr.mean(), 1e-9)) for c, sr, sf in per_class_pairs}
    finite = [r for r in reps if math.isfinite(r)]
    return MetricValue(point, lo, hi, float(np.std(finite, ddof=1)) if len(finite) > 1 else float("nan"),
                       extra={"per_class": per_class, "scales": scales, "window": win,
                              "pairs_per_class": cfg.msssim_pairs})


def conditional_accuracy_metric(extractor: Extractor, fake_images: np.ndarray, fake_labels: np.ndarray,
                                cfg: EvalConfig, real_images: np.ndarray | None = None,
                                real_labels: np.ndarray | None = None) -> MetricValue:
    """Accuracy of the domain classifier on generated images w.r.t. the class they were generated for,
    with the same classifier's accuracy on the real reference images as the ceiling."""
    logits = extract_logits(extractor, fake_images, progress=cfg.progress)
    res = M.conditional_accuracy(logits, fake_labels, logits.shape[1])
    correct = (logits.argmax(1) == fake_labels).astype(np.float64)
    ci = bootstrap(lambda v: float((v * correct).sum() / v.sum()), fake_labels, cfg.n_boot, cfg.seed + 7)
    extra = {"per_class": res["per_class"]}
    if real_images is not None and real_labels is not None and np.asarray(real_labels).ndim == 1:
        real_logits = extract_logits(extractor, real_images, progress=cfg.progress)
        extra["real_accuracy"] = float((real_logits.argmax(1) == real_labels).mean())
    return MetricValue(res["value"], ci["ci_low"], ci["ci_high"], ci["se"], extra=extra)


def check_compatible(real_images: np.ndarray, fake_images: np.ndarray, real_name: str = "real set",
                     fake_name: str = "samples") -> None:
    """Generated and real images must have the same size and channel count (both are named in the error)."""
    if real_images.shape[1:] != fake_images.shape[1:]:
        rh, rw, rc = real_images.shape[1:]
        fh, fw, fc = fake_images.shape[1:]
        what = "channel counts" if (rh, rw) == (fh, fw) else "image sizes"
        raise DataError(f"{what} differ: {fake_name} are {fh}x{fw} with {fc} channel(s), {real_name} is "
                        f"{rh}x{rw} with {rc} channel(s); sample at the dataset's size or pass --size")


def evaluate_images(real_images: np.ndarray, real_labels: np.ndarray, fake_images: np.ndarray,
                    fake_labels: np.ndarray, extractor: Extractor, cfg: EvalConfig | None = None,
                    train_images: np.ndarray | None = None, domain: Extractor | None = None) -> dict:
    """Every metric for uint8 NHWC image sets; returns a JSON-ready dict ``{"metrics": ..., "flags": ...}``."""
    cfg = cfg or EvalConfig()
    if len(fake_images) == 0:
        raise DataError("no generated images to evaluate")
    check_compatible(real_images, fake_images)
    if train_images is not None:
        check_compatible(train_images, fake_images, real_name="training set")
    if np.asarray(real_labels).ndim == 1:
        unknown = sorted(set(np.unique(fake_labels).tolist()) - set(np.unique(real_labels).tolist()))
        if unknown:
            raise DataError(f"generated images have class labels {unknown} that do not occur in the real set "
                            f"(real classes: {sorted(np.unique(real_labels).tolist())})")
    feats_real = real_features(extractor, real_images, cfg)
    feats_fake = extract_features(extractor, fake_images, cfg.batch_size, cfg.progress, "generated features")
    feats_train = real_features(extractor, train_images, cfg, "training features") if train_images is not None \
        else None
    metrics, flags = evaluate_features(feats_real, real_labels, feats_fake, fake_labels, cfg, feats_train)
    if np.asarray(real_labels).ndim == 1:
        ms = msssim_diversity(real_images, np.asarray(real_labels), fake_images, np.asarray(fake_labels), cfg)
        if ms is not None:
            metrics["msssim_diversity"] = ms
    if domain is not None and domain.has_logits and np.asarray(fake_labels).ndim == 1:
        metrics["conditional_accuracy"] = conditional_accuracy_metric(domain, fake_images, fake_labels, cfg,
                                                                      real_images, real_labels)
    return {
        "metrics": {k: v.as_dict() for k, v in metrics.items()},
        "flags": flags,
        "n_real": len(real_images), "n_fake": len(fake_images),
        "n_train": None if train_images is None else len(train_images),
        "extractor": extractor.name, "extractor_identity": extractor.identity, "feature_dim": int(feats_real.shape[1]),
        "domain_classifier": getattr(domain, "meta", None),
        "settings": {"n_boot": cfg.n_boot, "fid_boot": min(cfg.n_boot, cfg.fid_boot), "kid_subsets": cfg.kid_subsets,
                     "k": cfg.k, "class_weighting": cfg.class_weighting, "max_real": cfg.max_real, "seed": cfg.seed},
    }
