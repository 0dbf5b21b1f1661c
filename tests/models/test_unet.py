"""Diffusion U-Nets: the paper's lightweight U-Net and the configurable one (shapes, sizes, conditioning)."""

from __future__ import annotations

import pytest
import torch

from qmedgen.errors import ConfigError
from qmedgen.models.bottleneck import GateSpec
from qmedgen.models.unet import LightUNet, UNet, timestep_embedding


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_light_unet_matches_the_papers_parameter_count():
    assert n_params(LightUNet(in_channels=1, gate=GateSpec(kind="none"))) == 445_985  # the paper: "about 446k"


@pytest.mark.parametrize(("channels", "gate"), [(1, "none"), (3, "quantum"), (1, "matched-se")])
def test_light_unet_shapes(channels, gate):
    torch.manual_seed(0)
    m = LightUNet(in_channels=channels, n_classes=3, gate=GateSpec(kind=gate, n_qubits=4, depth=2))
    x = torch.randn(2, channels, 28, 28)
    out = m(x, torch.tensor([0, 999]), torch.tensor([1, 3]))  # 3 = the null label
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert m(x, torch.tensor([5, 6])).shape == x.shape  # y=None means unconditional


@pytest.mark.parametrize("size", [28, 32])
def test_unet_shapes_at_several_sizes(size):
    torch.manual_seed(0)
    m = UNet(in_channels=3, image_size=size, n_classes=2, base_channels=8, channel_mults=(1, 2, 2),
             num_res_blocks=1, attention_resolutions=(7, 8), gate=GateSpec(kind="quantum", n_qubits=3, depth=1))
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
            out = m(x, torch.tensor([3, 400]), torch.tensor([0, 1]))
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_unet_128px_and_time_embedding_in_every_block():
    m = UNet(in_channels=1, image_size=128, base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
             attention_resolutions=())
    x = torch.randn(1, 1, 128, 128)
    blocks = [mod for mod in m.modules() if mod.__class__.__name__ == "_TimeResBlock"]
    assert blocks and all(hasattr(b, "emb") for b in blocks)
    with torch.no_grad():
        out = m(x, torch.tensor([10]))
        assert out.shape == x.shape
        # the output depends on t through the embedding
        assert not torch.allclose(out, m(x, torch.tensor([900])))


def test_class_conditioning_changes_the_output():
    torch.manual_seed(0)
    m = LightUNet(n_classes=4)
    x, t = torch.randn(1, 1, 28, 28), torch.tensor([100])
    assert not torch.allclose(m(x, t, torch.tensor([0])), m(x, t, torch.tensor([2])))


def test_bad_inputs_are_named():
    with pytest.raises(ConfigError, match="in_channels"):
        LightUNet(in_channels=2)
    with pytest.raises(ConfigError, match="multiple of 4"):
        UNet(image_size=30, channel_mults=(1, 2, 2))
    with pytest.raises(ConfigError, match="gate"):
        LightUNet(gate=GateSpec(kind="quantumm"))


def test_timestep_embedding_is_sinusoidal():
    e = timestep_embedding(torch.tensor([0.0, 5.0]), 8)
    assert e.shape == (2, 8)
    assert torch.allclose(e[0], torch.tensor([0.0] * 4 + [1.0] * 4))
