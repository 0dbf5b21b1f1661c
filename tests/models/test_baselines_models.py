"""Baseline networks: shapes at every size, the patch QGAN's partial measurement, MosaiQ's PCA, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from qmedgen.errors import ConfigError
from qmedgen.models.baselines.dcgan import DCGANDiscriminator, DCGANGenerator
from qmedgen.models.baselines.fastgan import FastGANDiscriminator, FastGANGenerator
from qmedgen.models.baselines.mlp import MLPDiscriminator
from qmedgen.models.baselines.mosaiq import MosaiQGenerator, PCADecoder
from qmedgen.models.baselines.patch_qgan import PatchQuantumGenerator, basis_probabilities
from qmedgen.quantum import probabilities


@pytest.mark.parametrize("size", [28, 32, 64, 128])
def test_dcgan_shapes_every_size(size):
    torch.manual_seed(0)
    g = DCGANGenerator(3, size, 3, latent_dim=4, width=4, embed_dim=2)
    d = DCGANDiscriminator(3, size, 3, width=4)
    y = torch.tensor([0, 2])
    x = g(torch.randn(2, 4), y)
    assert x.shape == (2, 3, size, size) and x.abs().max() <= 1
    assert d(x, y).shape == (2,)


def test_dcgan_rejects_unsupported_size():
    with pytest.raises(ConfigError, match="28, 32, 64, 128"):
        DCGANGenerator(2, 48)


def test_dcgan_is_class_conditional():
    torch.manual_seed(0)
    g = DCGANGenerator(3, 28, 1, latent_dim=4, width=4, embed_dim=4).eval()
    z = torch.randn(1, 4).repeat(2, 1)
    a, b = g(z, torch.tensor([0, 1]))
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("size", [28, 64])
def test_fastgan_shapes_and_reconstruction(size):
    torch.manual_seed(0)
    g = FastGANGenerator(2, size, 3, latent_dim=4, width=4, embed_dim=2)
    d = FastGANDiscriminator(2, size, 3, width=4, decoder_width=4)
    y = torch.tensor([0, 1])
    x = g(torch.randn(2, 4), y)
    assert x.shape == (2, 3, size, size)
    logits, decoded, target = d(x, y, reconstruct=True)
    assert logits.shape == (2,) and decoded.shape == target.shape == (2, 3, d.recon_size, d.recon_size)
    assert len(g.sle) == len(g.ups) - 1  # one skip-layer excitation per level from the third on


def test_mlp_discriminator():
    d = MLPDiscriminator(3, 12, (8, 4))
    assert d(torch.randn(5, 3, 2, 2), torch.tensor([0, 1, 2, 0, 1])).shape == (5,)
    with pytest.raises(ConfigError):
        MLPDiscriminator(3, 12, ())


def test_patch_qgan_partial_measurement_matches_reference():
    """Each patch = p(data | ancillas = 0) of its own circuit, rescaled by its max; patches tile the image."""
    torch.manual_seed(0)
    g = PatchQuantumGenerator(2, image_size=28, channels=1, n_qubits=4, n_ancilla=1, depth=2)
    assert g.patch == 8 and g.n_sub == math.ceil(784 / 8)
    z = torch.rand(3, 4) * math.pi / 2
    y = torch.tensor([0, 1, 1])
    img = g(z, y)
    assert img.shape == (3, 1, 28, 28) and img.min() >= -1 and img.max() <= 1
    for b, k in [(0, 0), (1, 5), (2, g.n_sub - 1)]:
        p = probabilities(g.ansatz, z[b], g.weights.detach()[y[b], k])  # one circuit, forward-only reference
        cond = p[:8] / p[:8].sum()  # ancilla = wire 0 = most significant bit -> the first half of the outcomes
        expect = (cond / cond.max() * 2 - 1)[: 784 - k * 8]
        got = img[b].flatten()[k * 8 : k * 8 + 8][: len(expect)]
        torch.testing.assert_close(got, expect, atol=1e-5, rtol=1e-5)


def test_patch_qgan_gradients_reach_circuit_weights():
    torch.manual_seed(0)
    for conditional in ("weights", "angles"):
        g = PatchQuantumGenerator(3, image_size=28, channels=1, n_qubits=4, n_ancilla=1, depth=2,
                                  conditional=conditional)
        y = torch.tensor([0, 2])
        g(torch.rand(2, 4), y).sum().backward()
        grad = g.weights.grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
        if conditional == "weights":  # only the classes in the batch get gradient
            assert grad[1].abs().sum() == 0 and grad[0].abs().sum() > 0
        else:
            assert g.class_angles.grad[[0, 2]].abs().sum() > 0


def test_basis_probabilities_differentiable_and_normalised():
    g = PatchQuantumGenerator(1, 28, 1, n_qubits=3, n_ancilla=1, depth=1)
    w = g.weights[0].detach().clone().requires_grad_(True)
    p = basis_probabilities(g.ansatz, torch.rand(2, 1, 3), w)
    torch.testing.assert_close(p.sum(-1), torch.ones(2, g.n_sub))
    p[..., 0].sum().backward()
    assert w.grad.abs().sum() > 0


def test_patch_qgan_bad_ancilla_count():
    with pytest.raises(ConfigError, match="n_ancilla"):
        PatchQuantumGenerator(2, 28, 1, n_qubits=3, n_ancilla=3)


def test_pca_decoder_fit_encode_decode():
    torch.manual_seed(0)
    x = torch.rand(6, 1, 4, 4) * 2 - 1
    pca = PCADecoder(16, 5).fit(x)  # rank of 6 centred images is 5: exact reconstruction
    coeffs = pca.encode(x)
    assert coeffs.abs().amax(0).allclose(torch.ones(5), atol=1e-5)  # scaled per component to [-1, 1]
    torch.testing.assert_close(pca.decode(coeffs).view_as(x), x, atol=1e-4, rtol=1e-4)
    assert bool(pca.fitted) and pca.explained.sum() <= 1 + 1e-5
    torch.testing.assert_close(pca.components @ pca.components.T, torch.eye(5), atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigError, match="more training images"):
        PCADecoder(16, 6).fit(x)


def test_mosaiq_features_redistribution_and_gradients():
    torch.manual_seed(0)
    g = MosaiQGenerator(2, image_size=28, channels=1, n_subgenerators=2, n_qubits=3, depth=2)
    with pytest.raises(ConfigError, match="not fitted"):
        g(torch.rand(1, 3), torch.tensor([0]))
    g.pca.fit(torch.rand(10, 1, 28, 28) * 2 - 1)
    z, y = torch.rand(2, 3), torch.tensor([0, 1])
    from qmedgen.quantum import expval

    raw = expval(g.ansatz, z[:, None, :], g.weights[y].detach())  # [B, K, n]
    f = g.features(z, y).detach()
    for j in range(6):  # component j comes from sub-generator j mod K, qubit j div K
        torch.testing.assert_close(f[:, j], raw[:, j % 2, j // 2])
    img = g(z, y)
    assert img.shape == (2, 1, 28, 28) and img.abs().max() <= 1
    img.sum().backward()
    assert g.weights.grad is not None and g.weights.grad.abs().sum() > 0
    g.set_noise_bound(0.5)
    assert float(g.noise_bound) == 0.5 and "noise_bound" in g.state_dict()


def test_mosaiq_adaptive_noise_bound():
    from qmedgen.train.gan import adaptive_noise_bound

    assert adaptive_noise_bound(0.5, 1.0) == pytest.approx(math.pi / 8)  # critic not losing: narrow inputs
    assert adaptive_noise_bound(1.0, 1.0) == pytest.approx(math.pi / 8)
    wide = adaptive_noise_bound(10.0, 1.0)
    assert 3 * math.pi / 4 - 1e-6 < wide <= 3 * math.pi / 4  # saturates at pi/8 + 5 pi/8
    assert math.pi / 8 < adaptive_noise_bound(1.5, 1.0) < wide
