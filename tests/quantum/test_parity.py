"""Parity with PennyLane default.qubit and Qiskit Statevector for EVERY option combination (values + gradients)."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch

from qmedgen.quantum import Ansatz, expval, simulate

from ._circuits import ALL_OPTIONS, grads, option_id, random_params

N, DEPTH = 3, 2


@pytest.fixture(scope="module")
def qml():
    return pytest.importorskip("pennylane")


@pytest.mark.parametrize("opts", ALL_OPTIONS, ids=option_id)
def test_matches_pennylane_values_and_gradients(qml, opts):
    a = Ansatz(N, DEPTH, *opts)
    dev = qml.device("default.qubit", wires=N)
    qnode = qml.QNode(a.to_pennylane(), dev, interface="torch", diff_method="backprop")
    x, w = random_params(a, seed=zlib.crc32(option_id(opts).encode()))  # stable across runs
    cot = torch.linspace(-1, 1, N, dtype=torch.float64)
    ref = torch.stack(list(qnode(x, w)))
    ref_g = grads(ref, (x, w), cot)
    ours = expval(a, x, w)
    assert torch.allclose(ours, ref, atol=1e-10, rtol=0)
    for g, r in zip(grads(ours, (x, w), cot), ref_g):
        assert torch.allclose(g, r, atol=1e-10, rtol=0)
    # float32: same circuit, 1e-5
    x32, w32 = x.detach().float().requires_grad_(), w.detach().float().requires_grad_()
    ours32 = expval(a, x32, w32)
    assert ours32.dtype == torch.float32
    assert torch.allclose(ours32.double(), ref, atol=1e-5, rtol=0)
    for g, r in zip(grads(ours32, (x32, w32), cot.float()), ref_g):
        assert torch.allclose(g.double(), r, atol=1e-5, rtol=0)


@pytest.mark.parametrize("opts", ALL_OPTIONS, ids=option_id)
def test_matches_qiskit_statevector(opts):
    pytest.importorskip("qiskit")
    from qiskit.quantum_info import SparsePauliOp, Statevector

    a = Ansatz(N, DEPTH, *opts)
    x, w = random_params(a, seed=7, requires_grad=False)
    sv = Statevector(a.to_qiskit(x, w))
    ours = simulate(a, x, w).numpy()
    assert np.allclose(sv.reverse_qargs().data, ours, atol=1e-10, rtol=0)
    # expectation values: Qiskit labels are little-endian (qubit 0 is the rightmost character)
    labels = ["I" * (N - 1 - i) + a.observable.upper() + "I" * i for i in range(N)]
    ref = [sv.expectation_value(SparsePauliOp(lbl)).real for lbl in labels]
    assert np.allclose(expval(a, x, w).numpy(), ref, atol=1e-10, rtol=0)


def test_pennylane_parameter_broadcasting_matches(qml):
    a = Ansatz(4, 2, "ry-rx", ("ry",), "cz-chain", "x")
    dev = qml.device("default.qubit", wires=4)
    qnode = qml.QNode(a.to_pennylane(), dev, interface="torch")
    x, w = random_params(a, batch=(3,), requires_grad=False)
    ref = torch.stack(list(qnode(x, w)), dim=-1)
    assert torch.allclose(expval(a, x, w), ref, atol=1e-10)
