import numpy as np
import pytest
import torch

from qmedgen.analysis.geometry import (
    embedding_figures,
    local_isometry,
    pca_2d,
    perceptual_path_length,
    slerp,
    utilisation,
)


def _scaled_isometry(d=4, m=10, scale=2.0):
    q, _ = torch.linalg.qr(torch.randn(m, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    return lambda z: scale * z @ q.T


def test_local_isometry_of_a_scaled_isometry():
    f = _scaled_isometry()
    z = torch.randn(5, 4, dtype=torch.float64)
    res = local_isometry(f, z, n_dirs=6, generator=torch.Generator().manual_seed(1))
    assert res["stretch_mean"] == pytest.approx(2.0, rel=1e-6)
    assert res["stretch_cv"] < 1e-6 and res["anisotropy_mean"] == pytest.approx(1.0, rel=1e-6)
    # a map that ignores half of the latent is anisotropic
    res = local_isometry(lambda z: z[:, :2] * 3, z, n_dirs=16, generator=torch.Generator().manual_seed(1))
    assert res["anisotropy_mean"] > 2.0 and res["stretch_cv"] > 0.1


def test_ppl_of_a_linear_generator_is_the_squared_step_norm():
    f = _scaled_isometry()
    z0 = torch.randn(50, 4, dtype=torch.float64)
    z1 = torch.randn(50, 4, dtype=torch.float64)
    res = perceptual_path_length(f, lambda x: x, z0, z1, eps=1e-3, trim=0.0)
    expected = (4.0 * ((z1 - z0) ** 2).sum(-1)).mean().item()  # ||2 Q (z1 - z0)||^2
    assert res["ppl"] == pytest.approx(expected, rel=1e-6)


def test_slerp_endpoints_and_norm():
    a, b = torch.randn(3, 5, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)
    assert torch.allclose(slerp(a, b, torch.zeros(3)), a)
    assert torch.allclose(slerp(a, b, torch.ones(3)), b)
    au, bu = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    mid = slerp(au, bu, torch.full((3,), 0.5))
    assert torch.allclose(mid.norm(dim=1), torch.ones(3, dtype=torch.float64))


def test_utilisation_participation_ratio():
    rng = np.random.default_rng(0)
    x = np.zeros((4000, 10))
    x[:, :3] = rng.standard_normal((4000, 3))  # three equal-variance directions
    u = utilisation(x)
    assert u["participation_ratio"] == pytest.approx(3.0, rel=0.05)
    assert u["components_99"] == 3
    x[:, 0] *= 100  # one dominant direction
    assert utilisation(x)["participation_ratio"] == pytest.approx(1.0, rel=0.01)


def test_embeddings_figure(tmp_path):
    rng = np.random.default_rng(0)
    real, fake = rng.standard_normal((20, 6)), rng.standard_normal((12, 6)) + 1
    paths = embedding_figures(real, np.arange(20) % 2, fake, np.arange(12) % 2, tmp_path, class_names=["a", "b"])
    assert paths and all(p.is_file() for p in paths)
    assert pca_2d(real).shape == (20, 2)
