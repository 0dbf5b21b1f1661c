import numpy as np
import pytest
import torch

from qmedgen.evaluate.msssim import ms_ssim, msssim_settings, pair_msssim, random_pairs
from qmedgen.evaluate.stats import bootstrap, paired_comparison, percentile_ci, stratified_counts, t_interval


def test_msssim_settings_for_small_images():
    assert msssim_settings(28) == (3, 7, 1.0)
    assert msssim_settings(64)[0] == 3 and msssim_settings(128)[0] == 4
    assert msssim_settings(256) == (5, 11, 1.5)


@pytest.mark.parametrize("size,channels", [(28, 1), (28, 3), (64, 3)])
def test_msssim_identical_is_one_and_noise_lowers_it(size, channels):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, channels, size, size, generator=g) * 255
    assert torch.allclose(ms_ssim(x, x), torch.ones(4), atol=1e-5)
    y = (x + torch.randn(x.shape, generator=g) * 40).clamp(0, 255)
    z = torch.rand(4, channels, size, size, generator=g) * 255
    s_noisy, s_other = ms_ssim(x, y), ms_ssim(x, z)
    assert (s_noisy < 1).all() and (s_other < s_noisy).all() and (s_other >= 0).all()


def test_pair_msssim_uint8_and_pairs():
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(6, 28, 28, 3), dtype=np.uint8)
    imgs[1] = imgs[0]
    pairs = np.array([[0, 1], [0, 2]])
    vals = pair_msssim(imgs, pairs)
    assert vals[0] == pytest.approx(1.0) and vals[1] < 0.5
    p = random_pairs(100, 50, rng)
    assert p.shape == (50, 2) and (p[:, 0] != p[:, 1]).all()
    assert len(random_pairs(4, 50, rng)) == 6 and len(random_pairs(1, 5, rng)) == 0


def test_stratified_counts_keep_class_sizes():
    labels = np.array([0, 0, 0, 1, 1, 2])
    c = stratified_counts(labels, 50, np.random.default_rng(0))
    assert c.shape == (50, 6)
    assert (c[:, :3].sum(1) == 3).all() and (c[:, 3:5].sum(1) == 2).all() and (c[:, 5] == 1).all()


def test_bootstrap_ci_contains_point_and_is_seeded():
    rng = np.random.default_rng(1)
    x = rng.normal(loc=2.0, size=200)
    labels = np.zeros(200, dtype=np.int64)
    stat = lambda w: float((w * x).sum() / w.sum())  # noqa: E731
    a = bootstrap(stat, labels, n_boot=300, seed=5)
    b = bootstrap(stat, labels, n_boot=300, seed=5)
    assert a == b
    assert a["ci_low"] <= x.mean() <= a["ci_high"]
    assert a["se"] == pytest.approx(x.std() / np.sqrt(200), rel=0.25)
    assert percentile_ci([1.0, float("nan"), 3.0]) == (1.05, 2.95)


def test_t_interval_and_paired_comparison():
    r = t_interval([1.0, 2.0, 3.0])
    assert r["mean"] == 2.0 and r["ci_low"] == pytest.approx(2 - 4.302653 / np.sqrt(3), rel=1e-5)
    assert np.isnan(t_interval([1.0])["ci_low"])
    a, b = [0.8, 0.82, 0.79, 0.85, 0.81, 0.83], [0.7, 0.71, 0.72, 0.74, 0.7, 0.73]
    p = paired_comparison(a, b)
    assert p["diff_mean"] == pytest.approx(np.mean(np.subtract(a, b)))
    assert p["t_pvalue"] < 0.01 and p["wilcoxon_pvalue"] < 0.05 and p["diff_ci_low"] > 0
    same = paired_comparison([1.0, 2.0], [1.0, 2.0])
    assert np.isnan(same["t_pvalue"]) and same["diff_mean"] == 0
