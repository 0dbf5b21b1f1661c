"""Schedules, time-step samplers and loss weighting: invariants and the tailored scheme's behaviour."""

from __future__ import annotations

import pytest
import torch

from qmedgen.diffusion.schedules import make_schedule, training_policy
from qmedgen.diffusion.timesteps import ImportanceTimesteps, make_timestep_sampler
from qmedgen.diffusion.weighting import loss_weights
from qmedgen.errors import ConfigError


@pytest.mark.parametrize("name", ["linear", "cosine", "tailored"])
@pytest.mark.parametrize("T", [10, 1000])
def test_schedule_invariants(name, T):
    s = make_schedule(name, T)
    assert s.T == T and s.betas.shape == (T,)
    assert ((s.betas > 0) & (s.betas < 1)).all()
    a = s.alphas_cumprod
    assert ((a > 0) & (a <= 1)).all()
    assert (a[1:] < a[:-1]).all()  # strictly decreasing: every step adds noise
    assert (s.posterior_variance >= 0).all() and (s.posterior_variance <= s.betas + 1e-12).all()


def test_cosine_matches_its_closed_form_and_linear_its_end_points():
    T = 1000
    cos = make_schedule("cosine", T)
    f = lambda t: torch.cos(torch.tensor((t / T + 0.008) / 1.008 * torch.pi / 2, dtype=torch.float64)) ** 2  # noqa: E731
    assert torch.isclose(cos.alphas_cumprod[499], f(500) / f(0), rtol=1e-6)
    lin = make_schedule("linear", T)
    assert torch.isclose(lin.betas[0], torch.tensor(1e-4, dtype=torch.float64))
    assert torch.isclose(lin.betas[-1], torch.tensor(0.02, dtype=torch.float64))


def test_q_sample_and_predict_x0_are_inverse():
    s = make_schedule("cosine", 100)
    x0, eps, t = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4), torch.tensor([0, 50, 99])
    assert torch.allclose(s.predict_x0(s.q_sample(x0, t, eps), t, eps), x0, atol=1e-3)


def test_bad_schedule_config():
    with pytest.raises(ConfigError, match="schedule"):
        make_schedule("cosin", 100)
    with pytest.raises(ConfigError, match="timesteps"):
        make_schedule("cosine", 1)


def test_tailored_policy():
    assert training_policy("tailored", "auto", "auto") == ("importance", "min-snr")
    assert training_policy("cosine", "auto", "auto") == ("uniform", "none")
    assert training_policy("tailored", "uniform", "auto") == ("uniform", "min-snr")


def test_min_snr_weights():
    s = make_schedule("cosine", 1000)
    t = torch.arange(1000)
    w = loss_weights("min-snr", s, t, gamma=5.0)
    snr = s.snr(t)
    assert ((w > 0) & (w <= 1 + 1e-6)).all()
    assert torch.allclose(w[snr <= 5], torch.ones_like(w[snr <= 5]))
    assert (w[:10] < 0.1).all()  # the least noisy steps are strongly down-weighted
    assert (loss_weights("none", s, t) == 1).all()


def test_importance_sampler_warms_up_then_favours_high_loss_bins():
    torch.manual_seed(0)
    s = ImportanceTimesteps(100, n_bins=4, history=3, uniform_mix=0.1)
    t, w = s.sample(8, torch.device("cpu"))
    assert (w == 1).all() and not s.warm  # uniform until every bin has its history
    for _ in range(3):
        s.update(torch.tensor([0, 30, 60, 90]), torch.tensor([4.0, 1.0, 1.0, 1.0]))
    assert s.warm
    p = s.bin_probabilities()
    assert torch.isclose(p.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert p[0] > 2 * p[1] and torch.allclose(p[1:], p[1:2].expand(3))
    assert torch.isclose(s.probabilities().sum(), torch.tensor(1.0, dtype=torch.float64))
    t, w = s.sample(20000, torch.device("cpu"))
    assert ((t >= 0) & (t < 100)).all()
    assert abs(float((t < 25).double().mean()) - float(p[0])) < 0.02
    assert abs(float(w.double().mean()) - 1.0) < 0.03  # importance weights keep the objective unbiased


def test_importance_sampler_state_round_trip():
    s = ImportanceTimesteps(50, n_bins=5, history=2)
    s.update(torch.arange(0, 50, 5), torch.linspace(0.1, 1.0, 10))
    other = make_timestep_sampler("importance", 50, 5, 2)
    other.load_state_dict(s.state_dict())
    assert torch.equal(other.bin_probabilities(), s.bin_probabilities())
    with pytest.raises(ConfigError):
        make_timestep_sampler("loss-aware", 50)
