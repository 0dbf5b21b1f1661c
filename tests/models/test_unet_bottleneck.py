"""Bottleneck gates: the quantum gate trains end to end (no dead weights, no detach); the SE gate is matched."""

from __future__ import annotations

import pytest
import torch

from qmedgen.errors import ConfigError
from qmedgen.models.bottleneck import (
    GateSpec,
    QuantumGate,
    SEGate,
    make_gate,
    matched_hidden_width,
    quantum_gate_parameter_count,
)
from qmedgen.models.unet import LightUNet


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_gradients_reach_circuit_weights_and_input_projection():
    torch.manual_seed(0)
    model = LightUNet(gate=GateSpec(kind="quantum", n_qubits=4, depth=3))
    x = torch.randn(4, 1, 28, 28)
    loss = (model(x, torch.tensor([1, 200, 500, 900])) - x).pow(2).mean()
    loss.backward()
    gate = model.gate
    w, p_in = gate.circuit_weights.grad, gate.proj_in.weight.grad
    assert w is not None and p_in is not None
    assert w.shape == (3, 2, 4)  # depth x (rz, ry) x qubits
    assert float(w.abs().max()) > 1e-6 and float(p_in.abs().max()) > 1e-6
    assert int((w != 0).sum()) >= w.numel() // 2  # not just one live weight


def test_every_circuit_weight_moves_the_gate_output():
    """The reference code's RZ-only layers commute with <Z>; here every rotation changes the readout."""
    torch.manual_seed(1)
    gate = QuantumGate(channels=8, spec=GateSpec(kind="quantum", n_qubits=3, depth=2))
    h = torch.randn(5, 8, 4, 4)
    jac = torch.autograd.functional.jacobian(
        lambda w: _gate_with_weights(gate, h, w).sum(), gate.circuit_weights.detach().clone()
    )
    assert (jac.abs() > 1e-7).all(), jac


def _gate_with_weights(gate: QuantumGate, h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    from qmedgen.quantum import expval

    q = expval(gate.ansatz, gate.proj_in(h.mean(dim=(2, 3))), w)
    return gate._gate(h, gate.proj_out(q))


@pytest.mark.parametrize(("channels", "n_qubits", "depth"), [(128, 16, 3), (128, 4, 3), (64, 8, 2), (256, 10, 5)])
def test_matched_se_has_the_quantum_gates_parameter_count(channels, n_qubits, depth):
    q = make_gate(GateSpec("quantum", n_qubits, depth), channels) if n_qubits <= 8 else None
    target = quantum_gate_parameter_count(channels, n_qubits, depth)
    if q is not None:
        assert n_params(q) == target
    se = make_gate(GateSpec("matched-se", n_qubits, depth), channels)
    assert isinstance(se, SEGate)
    assert abs(n_params(se) - target) / target < 0.03
    assert se.proj_in.out_features == matched_hidden_width(channels, n_qubits, depth)


def test_none_gate_and_unet_counts():
    assert make_gate(GateSpec(kind="none"), 128) is None
    base = n_params(LightUNet(gate=GateSpec(kind="none")))
    quantum = n_params(LightUNet(gate=GateSpec(kind="quantum", n_qubits=4)))
    se = n_params(LightUNet(gate=GateSpec(kind="matched-se", n_qubits=4)))
    assert quantum - base == quantum_gate_parameter_count(128, 4, 3)
    assert abs(se - quantum) / (quantum - base) < 0.03


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
@pytest.mark.parametrize("residual", [False, True])
def test_gate_variants(activation, residual):
    torch.manual_seed(0)
    gate = make_gate(GateSpec(kind="quantum", n_qubits=3, depth=1, activation=activation, residual=residual), 8)
    h = torch.randn(2, 8, 3, 3)
    out = gate(h)
    assert out.shape == h.shape and torch.isfinite(out).all()
    ratio = (out / h).detach()
    low, high = (0.0, 2.0) if not residual else (1.0, 3.0)
    high = high if activation == "tanh" else (1.0 if not residual else 2.0)
    assert float(ratio.min()) >= low - 1e-5 and float(ratio.max()) <= high + 1e-5


def test_bottleneck_shots_add_readout_noise():
    torch.manual_seed(0)
    model = LightUNet(gate=GateSpec(kind="quantum", n_qubits=3, depth=1))
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([3, 4])
    exact = model(x, t)
    model.bottleneck_shots = 16
    assert model.bottleneck_shots == 16
    noisy = model(x, t)
    assert torch.isfinite(noisy).all() and not torch.allclose(exact, noisy)
    model.bottleneck_shots = None
    assert torch.allclose(model(x, t), exact)
    with pytest.raises(ConfigError):
        LightUNet(gate=GateSpec(kind="none")).bottleneck_shots = 10
    with pytest.raises(ConfigError):
        model.bottleneck_shots = 0


def test_circuit_runs_through_the_engines_quantum_layer():
    from qmedgen.quantum import QuantumLayer, expval

    gate = make_gate(GateSpec(kind="quantum", n_qubits=3, depth=1), 8)
    assert isinstance(gate.circuit, QuantumLayer) and gate.circuit.ansatz.rotations == ("rz", "ry")
    calls = []

    def executor(ansatz, inputs, weights, shots=None, generator=None):
        calls.append(inputs.shape)
        return expval(ansatz, inputs, weights)

    gate.circuit.executor = executor  # what qmedgen.hardware does for noisy inference
    gate(torch.randn(2, 8, 3, 3))
    assert calls == [torch.Size([2, 3])]
