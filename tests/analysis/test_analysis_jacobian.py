import numpy as np
import pytest
import torch

from qmedgen.analysis.jacobian import condition_number, effective_rank, spectrum
from qmedgen.errors import ConfigError


def _linear_map(singular_values, m=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    d = len(singular_values)
    u, _ = torch.linalg.qr(torch.randn(m, d, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    a = u @ torch.diag(torch.tensor(singular_values, dtype=torch.float64)) @ v.T
    return lambda z: (z @ a.T).view(-1, 4, m // 4)  # non-flat outputs are flattened per sample


def test_effective_rank_and_condition_closed_forms():
    assert effective_rank(np.ones(4)) == pytest.approx(4.0)
    assert effective_rank(np.array([3.0, 0.0, 0.0])) == pytest.approx(1.0)
    assert effective_rank(np.zeros(3)) == 0.0
    assert condition_number(np.array([4.0, 2.0])) == pytest.approx(2.0)
    assert np.isinf(condition_number(np.array([1.0, 0.0])))


@pytest.mark.parametrize("method", ["exact", "randomized"])
def test_linear_map_with_chosen_singular_values(method):
    sv = [5.0, 3.0, 2.0, 1.0, 0.5, 0.0]
    f = _linear_map(sv)
    z = torch.randn(3, 6, dtype=torch.float64)
    sp = spectrum(f, z, method=method)
    np.testing.assert_allclose(sp.singular_values, np.tile(sv, (3, 1)), atol=1e-9)
    s = sp.summary()
    p = np.array(sv[:5]) / sum(sv)
    assert s["erank_mean"] == pytest.approx(np.exp(-(p * np.log(p)).sum()))
    assert s["numerical_rank_min"] == 5 and s["max_rank"] == 6 and s["log10_condition_median"] is None


def test_tiny_mlp_matches_autograd_jacobian():
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 300)).double()
    z = torch.randn(3, 5, dtype=torch.float64)
    ref = np.stack([torch.linalg.svdvals(torch.func.jacrev(lambda x: mlp(x[None])[0])(z[b])).detach().numpy()
                    for b in range(3)])
    np.testing.assert_allclose(spectrum(mlp, z, "exact").singular_values, ref, rtol=1e-10)
    top = spectrum(mlp, z, "randomized", k=3).singular_values
    np.testing.assert_allclose(top, ref[:, :3], rtol=1e-6)


def test_randomness_inside_the_map_is_frozen():
    torch.manual_seed(0)
    w = torch.randn(20, 4, dtype=torch.float64)

    def noisy(z):  # multiplicative noise, like decoder noise injection
        return (z @ w.T) * (1 + 0.1 * torch.randn(z.shape[0], 20, dtype=z.dtype))

    z = torch.randn(2, 4, dtype=torch.float64)
    a = spectrum(noisy, z, "exact").singular_values
    b = spectrum(noisy, z, "randomized").singular_values
    np.testing.assert_allclose(a, b, rtol=1e-8)


def test_bad_inputs():
    with pytest.raises(ConfigError, match="method"):
        spectrum(lambda z: z, torch.zeros(2, 3), method="lanczos2")
    with pytest.raises(ConfigError, match=r"\[B, d\]"):
        spectrum(lambda z: z, torch.zeros(3))
