"""Statistics for reporting: percentile bootstrap, t-intervals over seeds, paired comparisons."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats as sps


def stratified_counts(labels: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap multiplicities ``[n_boot, N]``: resampling with replacement *within* each class.

    Stratifying keeps the class counts of every replicate equal to the original ones, which is right for
    class-conditional samples (the number of images per class is a design choice, not a random outcome).
    """
    labels = np.asarray(labels)
    counts = np.zeros((n_boot, len(labels)), dtype=np.float64)
    keys = labels if labels.ndim == 1 else np.zeros(len(labels), dtype=np.int64)
    for c in np.unique(keys):
        idx = np.flatnonzero(keys == c)
        draws = rng.integers(0, len(idx), size=(n_boot, len(idx)))
        for b in range(n_boot):
            counts[b, idx] = np.bincount(draws[b], minlength=len(idx))
    return counts


def percentile_ci(replicates: Sequence[float], alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap interval (NaN replicates ignored)."""
    r = np.asarray(replicates, dtype=np.float64)
    r = r[np.isfinite(r)]
    if len(r) == 0:
        return float("nan"), float("nan")
    return float(np.quantile(r, alpha / 2)), float(np.quantile(r, 1 - alpha / 2))


def bootstrap(stat: Callable[[np.ndarray], float], labels: np.ndarray, n_boot: int = 200, seed: int = 0,
              alpha: float = 0.05) -> dict[str, float]:
    """Percentile bootstrap of ``stat(weights)`` where weights are stratified multiplicities over ``labels``."""
    rng = np.random.default_rng(seed)
    reps = [stat(w) for w in stratified_counts(labels, n_boot, rng)]
    lo, hi = percentile_ci(reps, alpha)
    finite = np.asarray(reps, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    return {"ci_low": lo, "ci_high": hi, "se": float(finite.std(ddof=1)) if len(finite) > 1 else float("nan"),
            "n_boot": n_boot}


def t_interval(values: Sequence[float], confidence: float = 0.95) -> dict[str, float]:
    """Mean and Student-t confidence interval over independent runs (seeds)."""
    x = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    n = len(x)
    if n == 0:
        return {"mean": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": 0, "std": float("nan")}
    mean = float(x.mean())
    if n == 1:
        return {"mean": mean, "ci_low": float("nan"), "ci_high": float("nan"), "n": 1, "std": float("nan")}
    sd = float(x.std(ddof=1))
    half = float(sps.t.ppf((1 + confidence) / 2, n - 1)) * sd / math.sqrt(n)
    return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half, "n": n, "std": sd}


def paired_comparison(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> dict[str, float]:
    """Paired comparison of ``a`` vs ``b`` over matched seeds: mean difference a-b with t-interval,
    paired t-test and Wilcoxon signed-rank p-values (NaN where undefined, e.g. all differences zero)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired comparison needs equal-length sequences, got {len(a)} and {len(b)}")
    ok = np.isfinite(a) & np.isfinite(b)
    d = a[ok] - b[ok]
    out = {f"diff_{k}": v for k, v in t_interval(d, confidence).items() if k != "n"}
    out["n"] = len(d)
    out["t_pvalue"] = float("nan")
    out["wilcoxon_pvalue"] = float("nan")
    if len(d) >= 2 and np.any(d != 0):
        if d.std(ddof=1) > 0:
            out["t_pvalue"] = float(sps.ttest_rel(a[ok], b[ok]).pvalue)
        with contextlib.suppress(ValueError):  # e.g. too few non-zero differences
            out["wilcoxon_pvalue"] = float(sps.wilcoxon(d).pvalue)
    return out
