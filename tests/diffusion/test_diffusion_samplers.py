"""DDPM and DDIM samplers: finite images of the right shape, guidance, determinism, EMA."""

from __future__ import annotations

import pytest
import torch

from qmedgen.diffusion import make_noise, make_schedule, sample
from qmedgen.diffusion.samplers import timestep_subsequence
from qmedgen.errors import ConfigError
from qmedgen.models.bottleneck import GateSpec
from qmedgen.models.unet import LightUNet
from qmedgen.train.ema import ema_copy, ema_update


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return LightUNet(in_channels=3, n_classes=2, gate=GateSpec(kind="quantum", n_qubits=3, depth=1)).eval()


@pytest.mark.parametrize(("sampler", "steps", "eta", "noise"), [
    ("ddim", 4, 0.0, "gaussian"),
    ("ddim", 3, 1.0, "quantum"),
    ("ddpm", 5, 0.0, "hybrid"),
    ("ddpm", None, 0.0, "gaussian"),
])
def test_samplers_give_finite_images(model, sampler, steps, eta, noise):
    schedule = make_schedule("cosine", 8 if steps is None else 1000)
    noise_source = make_noise(noise, n_qubits=6, seed=0)
    out = sample(model, schedule, (3, 3, 28, 28), sampler=sampler, steps=steps, eta=eta,
                 labels=torch.tensor([0, 1, 1]), guidance=2.0, null_label=2, noise=noise_source)
    assert out.shape == (3, 3, 28, 28) and torch.isfinite(out).all()
    assert out.min() >= -1 and out.max() <= 1


def test_ddim_eta0_is_deterministic_given_the_generator(model):
    s = make_schedule("linear", 100)
    a = sample(model, s, (2, 3, 28, 28), steps=3, generator=torch.Generator().manual_seed(5))
    b = sample(model, s, (2, 3, 28, 28), steps=3, generator=torch.Generator().manual_seed(5))
    c = sample(model, s, (2, 3, 28, 28), steps=3, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_timestep_subsequence():
    assert timestep_subsequence(1000, 50)[0] == 999 and timestep_subsequence(1000, 50)[-1] == 0
    assert len(timestep_subsequence(1000, 50)) == 50
    assert timestep_subsequence(10, 10) == list(range(9, -1, -1))
    with pytest.raises(ConfigError):
        timestep_subsequence(10, 11)
    with pytest.raises(ConfigError):
        sample(lambda x, t, y: x, make_schedule("cosine", 10), (1, 1, 4, 4), sampler="plms")


def test_ema_tracks_the_model():
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    ema = ema_copy(net)
    assert not any(p.requires_grad for p in ema.parameters())
    with torch.no_grad():
        net.weight.add_(1.0)
    d = ema_update(ema, net, 0.999, step=0)
    assert d == pytest.approx(0.1)  # warm-up: min(0.999, 1/10)
    expected = 0.1 * (net.weight - 1.0) + 0.9 * net.weight
    assert torch.allclose(ema.weight, expected)
