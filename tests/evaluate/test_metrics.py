import warnings

import numpy as np
import pytest
import torch

from qmedgen.errors import DataError
from qmedgen.evaluate import metrics as M


def _gauss(rng, n, mu, cov):
    return rng.multivariate_normal(mu, cov, size=n)


def test_frechet_distance_closed_form_known_gaussians():
    # FID between N(m1, S1) and N(m2, S2) with commuting diagonal covariances has a closed form.
    mu1, mu2 = np.zeros(4), np.array([1.0, -2.0, 0.5, 0.0])
    s1, s2 = np.diag([1.0, 2.0, 3.0, 4.0]), np.diag([4.0, 2.0, 1.0, 0.25])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(np.diag(s1) + np.diag(s2) - 2 * np.sqrt(np.diag(s1) * np.diag(s2)))
    assert M.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_non_commuting_matches_scipy_sqrtm():
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    s1, s2 = a @ a.T + 0.1 * np.eye(6), b @ b.T + 0.1 * np.eye(6)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    ref = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * np.real(sqrtm(s1 @ s2)))
    assert M.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-8)


def test_fid_on_large_gaussian_samples_approaches_closed_form():
    rng = np.random.default_rng(1)
    d = 3
    mu2 = np.array([0.5, 0.0, -0.5])
    s2 = np.diag([2.0, 1.0, 0.5])
    x = _gauss(rng, 40000, np.zeros(d), np.eye(d))
    y = _gauss(rng, 40000, mu2, s2)
    expected = 0.5 + np.sum(1 + np.diag(s2) - 2 * np.sqrt(np.diag(s2)))
    assert M.fid(x, y) == pytest.approx(expected, abs=0.03)


def test_fid_identical_sets_is_zero():
    x = np.random.default_rng(2).normal(size=(500, 8))
    assert M.fid(x, x) == pytest.approx(0.0, abs=1e-8)


def test_fid_small_sample_warns_and_flags():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(20, 64)), rng.normal(size=(20, 64))
    with pytest.warns(M.SmallSampleWarning, match="fewer samples"):
        M.fid(x, y)
    assert M.fid_flags(20, 20, 64) and not M.fid_flags(100, 100, 64)


def test_kid_is_unbiased_for_same_distribution():
    # Mean of many unbiased MMD^2 estimates on samples from one distribution is ~0 (a biased estimator is > 0).
    rng = np.random.default_rng(4)
    vals = [M.kid(rng.normal(size=(30, 16)), rng.normal(size=(30, 16)), n_subsets=1).value for _ in range(300)]
    mean, se = np.mean(vals), np.std(vals) / np.sqrt(len(vals))
    assert abs(mean) < 3 * se
    # The biased (V-statistic) estimate would be clearly positive: check that our test could tell.
    x, y = torch.tensor(rng.normal(size=(30, 16))), torch.tensor(rng.normal(size=(30, 16)))
    k = lambda a, b: (a @ b.T / 16 + 1) ** 3  # noqa: E731
    biased = float(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean())
    assert biased > 3 * se


def test_kid_detects_shift_and_adapts_subset_size():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(50, 8)), rng.normal(loc=1.0, size=(40, 8))
    res = M.kid(x, y, n_subsets=20)
    assert res.subset_size == 40 and res.n_subsets == 20
    assert res.value > 10 * max(res.stderr, 1e-6)
    assert M.kid_subset_size(5000, 3000) == 1000


def test_kid_deterministic_given_seed():
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(60, 8)), rng.normal(size=(70, 8))
    assert M.kid(x, y, seed=3).value == M.kid(x, y, seed=3).value


def test_prdc_identical_sets_near_one_and_disjoint_near_zero():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(200, 5))
    res = M.prdc(x, x.copy(), k=5)
    assert res["precision"] == pytest.approx(1.0) and res["recall"] == pytest.approx(1.0)
    assert res["coverage"] == pytest.approx(1.0)
    far = M.prdc(x, x + 100.0, k=5)
    assert far["precision"] == 0 and far["recall"] == 0 and far["coverage"] == 0


def test_prdc_mode_collapse_lowers_recall_not_precision():
    rng = np.random.default_rng(8)
    x = rng.normal(size=(300, 4))
    collapsed = x[:300][np.argsort(x[:, 0])[:60]]  # only one tail of the distribution
    res = M.prdc(x, collapsed, k=5)
    assert res["precision"] > 0.9 and res["recall"] < 0.5


def test_knn_radius_ignores_duplicates_of_self():
    d = torch.tensor([[0.0, 1.0, 2.0], [1.0, 0.0, 3.0], [2.0, 3.0, 0.0]], dtype=torch.float64)
    w = torch.tensor([3.0, 1.0, 1.0])  # point 0 drawn three times: its copies are not its neighbours
    r = M.knn_radius(d, w, k=1)
    assert r.tolist() == [1.0, 1.0, 2.0]
    assert M.knn_radius(d, w, k=2)[1] == 1.0  # point 1's two nearest (with multiplicity) are copies of point 0


def test_memorisation_detects_copies():
    rng = np.random.default_rng(9)
    train = rng.normal(size=(50, 16))
    heldout = rng.normal(size=(100, 16))
    copies = train[:20] + rng.normal(scale=1e-3, size=(20, 16))
    novel = rng.normal(size=(80, 16))
    res = M.memorisation(np.concatenate([copies, novel]), train, heldout)
    assert res["copy_fraction"] == pytest.approx(0.2, abs=0.03)
    assert res["heldout_copy_fraction"] < 0.05
    only_copies = M.memorisation(copies, train, heldout)
    assert only_copies["nn_distance_ratio"] < 0.01
    assert M.memorisation(novel, train, heldout)["nn_distance_ratio"] == pytest.approx(1.0, abs=0.3)


def test_feature_diversity_ratio():
    rng = np.random.default_rng(10)
    real = rng.normal(size=(100, 8))
    labels = np.repeat([0, 1], 50)
    same = M.feature_diversity(real, labels, rng.normal(size=(100, 8)), labels)
    collapsed = M.feature_diversity(real, labels, rng.normal(scale=0.1, size=(100, 8)), labels)
    assert same["value"] == pytest.approx(1.0, abs=0.15)
    assert collapsed["value"] < 0.2 and set(collapsed["per_class"]) == {0, 1}


def test_conditional_accuracy_and_class_weights():
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [1.0, 0.0]])
    res = M.conditional_accuracy(logits, np.array([0, 1, 1, 1]))
    assert res["value"] == 0.5 and res["per_class"] == {0: 1.0, 1: pytest.approx(1 / 3)}
    w = M.class_matching_weights(np.array([0, 0, 0, 1]), np.array([0, 1, 0, 1]))
    assert w[0] / w[1] == pytest.approx(3.0) and w.mean() == pytest.approx(1.0)


def test_bad_shapes_raise_data_error():
    with pytest.raises(DataError, match="dimensions differ"):
        M.fid(np.zeros((10, 3)), np.zeros((10, 4)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataError, match="at least 2"):
            M.kid(np.zeros((1, 3)), np.zeros((10, 3)))


def test_truncated_knn_index_matches_full_sort():
    rng = np.random.default_rng(11)
    x = torch.tensor(rng.normal(size=(80, 3)))
    d = torch.cdist(x, x)
    w = torch.tensor(rng.multinomial(80, np.ones(80) / 80), dtype=torch.float64)
    full = M.KnnIndex(d).radius(w, 5)
    narrow = M.KnnIndex(d, width=6).radius(w, 5)  # forces the fallback for rows with absent neighbours
    torch.testing.assert_close(full, narrow)
