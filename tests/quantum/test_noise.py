"""Noise channels: exact density matrix vs PennyLane default.mixed, trajectories vs exact, readout errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qmedgen.errors import ConfigError
from qmedgen.quantum import Ansatz, NoiseModel, expval, sample

from ._circuits import grads, random_params

CASES = [
    Ansatz(3, 2, encoding="ry-rx", rotations=("ry",), entangler="cz-chain", observable="x"),
    Ansatz(3, 2, encoding="ry", rotations=("rz", "ry"), entangler="cnot-ring", observable="y"),
    Ansatz(3, 1, encoding="none", rotations=("rx",), entangler="cnot-chain", observable="z"),
]


def _mixed_reference(qml, a: Ansatz, x, w, p: float):
    """The same channel placement written out gate by gate for PennyLane's density-matrix device."""
    dev = qml.device("default.mixed", wires=a.n_qubits)
    template = a.to_pennylane(measure=False)
    gates = {"rx": qml.RX, "ry": qml.RY, "rz": qml.RZ}
    paulis = {"x": qml.PauliX, "y": qml.PauliY, "z": qml.PauliZ}
    enc = {"ry": ("ry",), "rx": ("rx",), "ry-rx": ("ry", "rx"), "none": ()}[a.encoding]
    del template

    @qml.qnode(dev)
    def circuit():
        n = a.n_qubits
        for name in enc:
            for i in range(n):
                gates[name](x[i], wires=i)
        if enc:
            for i in range(n):
                qml.DepolarizingChannel(p, wires=i)
        for layer in range(a.depth):
            for r, name in enumerate(a.rotations):
                for i in range(n):
                    gates[name](w[layer, r, i], wires=i)
            for c, t in a.entangling_pairs():
                (qml.CZ if a.entangler == "cz-chain" else qml.CNOT)(wires=[c, t])
            for i in range(n):
                qml.DepolarizingChannel(p, wires=i)
        return [qml.expval(paulis[a.observable](i)) for i in range(n)]

    return np.array(circuit())


@pytest.mark.parametrize("a", CASES, ids=lambda a: f"{a.encoding}-{a.entangler}-{a.observable}")
def test_density_matrix_matches_pennylane_default_mixed(a):
    qml = pytest.importorskip("pennylane")
    x, w = random_params(a, requires_grad=False)
    ref = _mixed_reference(qml, a, x.numpy(), w.numpy(), 0.1)
    ours = expval(a, x, w, noise=NoiseModel(depolarizing=0.1, method="density"))
    assert np.allclose(ours.numpy(), ref, atol=1e-10)


@pytest.mark.parametrize("a", CASES, ids=lambda a: f"{a.encoding}-{a.entangler}-{a.observable}")
def test_trajectories_converge_to_the_exact_channel(a):
    x, w = random_params(a, requires_grad=False)
    exact = expval(a, x, w, noise=NoiseModel(depolarizing=0.15, method="density"))
    t = 4000
    est = expval(a, x, w, noise=NoiseModel(depolarizing=0.15, method="trajectories", trajectories=t),
                 generator=torch.Generator().manual_seed(0))
    assert (est - exact).abs().max() < 5 / np.sqrt(t)  # |<P>| <= 1, so the per-trajectory sd is <= 1
    assert not torch.allclose(exact, expval(a, x, w))  # the noise does something


def test_noise_gradients_flow_in_both_methods():
    a = CASES[0]
    x, w = random_params(a)
    cot = torch.ones(3, dtype=torch.float64)
    dens = expval(a, x, w, noise=NoiseModel(0.05, method="density"))
    traj = expval(a, x, w, noise=NoiseModel(0.05, method="trajectories", trajectories=3000),
                  generator=torch.Generator().manual_seed(2))
    gd, gt = grads(dens, (x, w), cot), grads(traj, (x, w), cot)
    for d, t in zip(gd, gt):
        assert torch.isfinite(d).all() and d.abs().sum() > 0
        assert (d - t).abs().max() < 0.15


def test_readout_error_is_the_affine_map_and_flips_samples():
    a = CASES[0]
    x, w = random_params(a, requires_grad=False)
    clean = expval(a, x, w)
    p01, p10 = 0.05, 0.2
    noisy = expval(a, x, w, noise=NoiseModel(readout=(p01, p10)))
    assert torch.allclose(noisy, (p10 - p01) + (1 - p01 - p10) * clean, atol=1e-12)
    gen = torch.Generator().manual_seed(4)
    bits = sample(a, x, w, shots=60000, noise=NoiseModel(readout=(p01, p10)), generator=gen)
    assert torch.allclose((1 - 2 * bits.double()).mean(0), noisy, atol=0.02)
    sym = expval(a, x, w, noise=NoiseModel(readout=0.1))
    assert torch.allclose(sym, 0.8 * clean, atol=1e-12)


def test_depolarising_samples_follow_the_noisy_distribution():
    a = CASES[1]
    x, w = random_params(a, requires_grad=False)
    noise_d = NoiseModel(0.2, method="density")
    exact = expval(a, x, w, noise=noise_d)
    g = torch.Generator().manual_seed(5)
    for noise in (noise_d, NoiseModel(0.2, method="trajectories", trajectories=2000)):
        bits = sample(a, x, w, shots=40000, noise=noise, generator=g)
        assert torch.allclose((1 - 2 * bits.double()).mean(0), exact, atol=0.03)
    est = expval(a, x, w, shots=40000, noise=noise_d, generator=g)
    assert torch.allclose(est, exact, atol=0.03)


def test_zero_noise_is_the_noiseless_circuit_and_bad_values_are_rejected():
    a = CASES[0]
    x, w = random_params(a, requires_grad=False)
    assert torch.equal(expval(a, x, w, noise=NoiseModel()), expval(a, x, w))
    with pytest.raises(ConfigError, match="depolarizing"):
        NoiseModel(depolarizing=1.5)
    with pytest.raises(ConfigError, match="readout"):
        NoiseModel(readout=(0.1, -0.1))
    with pytest.raises(ConfigError, match="method"):
        NoiseModel(method="exact")
    big = Ansatz(11, 1)
    with pytest.raises(ConfigError, match="at most 10 qubits"):
        expval(big, torch.zeros(11), torch.zeros(1, 1, 11), noise=NoiseModel(0.1, method="density"))
    # readout errors alone need no density matrix, whatever the method
    xb, wb = torch.rand(2, 11), torch.rand(1, 1, 11)
    readout_only = expval(big, xb, wb, noise=NoiseModel(readout=0.1, method="density"))
    assert torch.allclose(readout_only, 0.8 * expval(big, xb, wb), atol=1e-6)
