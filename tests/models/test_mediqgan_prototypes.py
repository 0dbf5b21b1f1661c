"""Class prototypes: latent sampling, sigma clamp, separation regulariser, warm-start features, files."""

from __future__ import annotations

import math

import pytest
import torch

from qmedgen.errors import ConfigError, DataError, UserError
from qmedgen.models.prototypes import (
    PrototypeBank,
    class_mean_features,
    load_prototypes,
    resolve_extractor,
    save_prototypes,
)


def test_latent_is_mu_plus_sigma_eps():
    torch.manual_seed(0)
    bank = PrototypeBank(3, 6, 4, hidden=8)
    y = torch.tensor([2, 0])
    z = bank.sample(y, generator=torch.Generator().manual_seed(1))
    eps = torch.randn(2, 4, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(z, bank.mu(y) + 0.5 * eps)
    assert bank.mu().shape == (3, 4)


def test_sigma_is_clamped():
    bank = PrototypeBank(2, 4, 4, sigma_min=0.2, sigma_max=0.8)
    with torch.no_grad():
        bank.sigma_raw.copy_(torch.tensor([-10.0, 10.0]))
    torch.testing.assert_close(bank.sigma(), torch.tensor([0.2, 0.8]))


def test_separation_loss_values():
    bank = PrototypeBank(2, 3, 4)
    bank.load_prototypes(torch.tensor([[1.0, 0, 0], [0, 5.0, 0]]))  # normalised distance sqrt(2) > margin
    assert bank.separation_loss(weight=1.0, margin=1.0).item() == 0.0
    bank.load_prototypes(torch.tensor([[1.0, 0, 0], [2.0, 0, 0]]))  # same direction: distance 0
    assert bank.separation_loss(weight=5e-3, margin=1.0).item() == pytest.approx(5e-3, rel=1e-5)
    bank.load_prototypes(torch.tensor([[1.0, 0, 0], [1.0, 1.0, 0]]))  # 45 degrees apart
    d = math.sqrt(2 - 2 * math.cos(math.pi / 4))
    assert bank.separation_loss(weight=1.0, margin=1.0).item() == pytest.approx(1 - d, rel=1e-5)
    loss = bank.separation_loss()
    loss.backward()
    assert torch.isfinite(bank.prototypes.grad).all() and bank.prototypes.grad.abs().sum() > 0


def test_bad_bank_arguments():
    with pytest.raises(ConfigError, match="sigma"):
        PrototypeBank(2, 4, 4, sigma_min=0.9, sigma_max=0.5)
    with pytest.raises(ConfigError, match="shape"):
        PrototypeBank(2, 4, 4, init=torch.zeros(3, 4))


def test_class_mean_features():
    images = torch.arange(6 * 3 * 2 * 2, dtype=torch.float32).view(6, 3, 2, 2)
    labels = torch.tensor([0, 1, 0, 2, 1, 2])

    def extractor(x):
        return x.mean(dim=(2, 3))

    means = class_mean_features(extractor, images, labels, 3, batch_size=4)
    feats = images.mean(dim=(2, 3))
    for c in range(3):
        torch.testing.assert_close(means[c], feats[labels == c].mean(0))
    with pytest.raises(DataError, match="class"):
        class_mean_features(extractor, images, torch.tensor([0, 0, 0, 1, 1, 1]), 3)


def test_prototype_file_round_trip(tmp_path):
    values = torch.randn(4, 7)
    path = save_prototypes(tmp_path / "p.safetensors", values, {"dataset": "x"})
    loaded, meta = load_prototypes(path)
    torch.testing.assert_close(loaded, values)
    assert meta["dataset"] == "x" and meta["n_classes"] == "4"
    with pytest.raises(ConfigError, match="not found"):
        load_prototypes(tmp_path / "missing.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"bad\.safetensors"):
        load_prototypes(tmp_path / "bad.safetensors")
    with pytest.raises(ConfigError, match="safetensors"):
        save_prototypes(tmp_path / "p.pt", values)


class _TinyExtractor(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean(dim=(2, 3))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_extractor_goes_through_metrics_stack(tmp_path):
    torch.manual_seed(0)
    module = _TinyExtractor()
    path = tmp_path / "ext.pt"
    torch.jit.script(module).save(str(path))
    ext = resolve_extractor(str(path), "cpu")
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    quantised = ((x + 1) / 2).clamp(0, 1).mul(255).round() / 127.5 - 1  # the metrics stack's uint8 path
    torch.testing.assert_close(ext(x), module(quantised), atol=1e-5, rtol=1e-5)
    (tmp_path / "bad.pt").write_bytes(b"nope")
    with pytest.raises(UserError, match="init=random"):
        resolve_extractor(str(tmp_path / "bad.pt"), "cpu")
    with pytest.raises(UserError, match="init=random"):
        resolve_extractor(str(tmp_path / "none.pt"), "cpu")
