"""QuantumLayer: weights, initialisation, gradients, shots, executor hook."""

from __future__ import annotations

import math

import pytest
import torch

from qmedgen.errors import ConfigError
from qmedgen.quantum import Ansatz, QuantumLayer, expval

A = Ansatz(4, 3, encoding="ry-rx", rotations=("ry",), entangler="cz-chain", observable="x")


def test_weights_shape_and_forward_matches_expval():
    torch.manual_seed(0)
    layer = QuantumLayer(A, batch_shape=(5,))
    assert layer.weight.shape == (5, 3, 1, 4) and layer.weights is layer.weight
    x = torch.rand(2, 5, 4)
    assert torch.allclose(layer(x), expval(A, x, layer.weight))


@pytest.mark.parametrize(
    "init,lo,hi",
    [("uniform", 0.0, 1.0), ("uniform-2pi", 0.0, 2 * math.pi), ("normal", -1.0, 1.0), ("small", -0.1, 0.1)],
)
def test_initialisations(init, lo, hi):
    torch.manual_seed(0)
    w = QuantumLayer(A, batch_shape=(50,), init=init).weight.detach()
    assert w.min() >= lo and w.max() < hi
    if init == "uniform-2pi":
        assert w.max() > 5.0
    if init == "small":
        assert w.std() < 0.02
    if init == "normal":
        assert 0.07 < w.std() < 0.13
    assert QuantumLayer(A, init="normal", std=2.0).weight.detach().std() > 1.0


def test_gradients_reach_weights_and_inputs():
    layer = QuantumLayer(A, batch_shape=(3,), dtype=torch.float64)
    x = torch.rand(4, 3, 4, dtype=torch.float64, requires_grad=True)
    layer(x).pow(2).sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_shots_attribute_and_repr_and_executor():
    layer = QuantumLayer(A, shots=64, generator=torch.Generator().manual_seed(0))
    text = repr(layer)
    assert "encoding='ry-rx'" in text and "entangler='cz-chain'" in text and "shots=64" in text
    x = torch.rand(4)
    est = layer(x)
    k = (est + 1) * 64 / 2
    assert torch.allclose(k, k.round(), atol=1e-5)
    layer.shots = None
    assert torch.allclose(layer(x), expval(A, x, layer.weight))
    calls = []
    layer.executor = lambda ansatz, inputs, weights, shots=None, generator=None: calls.append(1) or inputs * 0
    assert torch.equal(layer(x), torch.zeros(4)) and calls == [1]


def test_bad_init_is_rejected():
    with pytest.raises(ConfigError, match="init"):
        QuantumLayer(A, init="zeros")
    with pytest.raises(ConfigError, match="Ansatz"):
        QuantumLayer("ansatz")
