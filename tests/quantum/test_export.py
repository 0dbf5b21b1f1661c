"""Exporters: Qiskit circuits (bound and parameterised), PennyLane functions, OpenQASM 3."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

from qmedgen.quantum import Ansatz, expval, simulate
from qmedgen.quantum import export as export_mod
from qmedgen.quantum.export import MissingDependencyError, to_qasm3

from ._circuits import random_params

A = Ansatz(3, 2, encoding="ry-rx", rotations=("rz", "ry"), entangler="cnot-ring", observable="y")


def test_qiskit_bound_and_parameterised_circuits_reproduce_our_state():
    pytest.importorskip("qiskit")
    from qiskit.quantum_info import Statevector

    x, w = random_params(A, requires_grad=False)
    ours = simulate(A, x, w).numpy()
    bound = A.to_qiskit(x, w)
    assert not bound.parameters
    assert np.allclose(Statevector(bound).reverse_qargs().data, ours, atol=1e-10)
    free = A.to_qiskit()
    assert len(free.parameters) == A.n_qubits + A.n_weights
    values = {f"x[{i}]": float(x[i]) for i in range(3)}
    values.update({f"w[{j}]": float(v) for j, v in enumerate(w.reshape(-1))})
    bound2 = free.assign_parameters({p: values[p.name] for p in free.parameters})
    assert np.allclose(Statevector(bound2).reverse_qargs().data, ours, atol=1e-10)
    measured = A.to_qiskit(x, w, measure=True)
    ops = measured.count_ops()
    assert ops["measure"] == 3 and ops["h"] == 3 and ops["sdg"] == 3


def test_qasm3_text_contains_the_gates_and_parses_back():
    pytest.importorskip("qiskit")
    x, w = random_params(A, requires_grad=False)
    text = to_qasm3(A, x, w)
    assert text.startswith("OPENQASM 3")
    for gate in ("rz(", "ry(", "rx(", "cx "):
        assert gate in text
    template = to_qasm3(A.to_qiskit())
    assert "input float[64]" in template
    try:
        from qiskit import qasm3

        parsed = qasm3.loads(text)
    except Exception as exc:  # the optional qiskit-qasm3-import parser is not installed
        pytest.skip(f"no OpenQASM 3 parser: {exc}")
    from qiskit.quantum_info import Statevector

    ours = simulate(A, x, w).numpy()
    assert np.allclose(Statevector(parsed).reverse_qargs().data, ours, atol=1e-8)


def test_pennylane_function_inside_a_qnode():
    qml = pytest.importorskip("pennylane")
    x, w = random_params(A, requires_grad=False)
    dev = qml.device("default.qubit", wires=["a", "b", "c"])
    qnode = qml.QNode(lambda x, w: A.to_pennylane()(x, w, wires=["a", "b", "c"]), dev)
    assert np.allclose(np.array(qnode(x.numpy(), w.numpy())), expval(A, x, w).numpy(), atol=1e-10)

    template = A.to_pennylane(measure=False)

    @qml.qnode(qml.device("default.qubit", wires=3))
    def probs(x, w):
        assert template(x, w) is None
        return qml.probs(wires=[0, 1, 2])

    state = simulate(A, x, w).numpy()
    assert np.allclose(probs(x.numpy(), w.numpy()), np.abs(state) ** 2, atol=1e-10)


def test_missing_optional_package_names_the_quantum_extra(monkeypatch):
    real = importlib.import_module

    def fake(name, *args, **kwargs):
        if name.startswith(("qiskit", "pennylane")):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(export_mod.importlib, "import_module", fake)
    with pytest.raises(MissingDependencyError, match=r"qmedgen\[quantum\]"):
        A.to_qiskit()
    with pytest.raises(MissingDependencyError, match="pennylane"):
        A.to_pennylane()


def test_exporters_reject_batched_values():
    pytest.importorskip("qiskit")
    with pytest.raises(ValueError, match="one circuit"):
        A.to_qiskit(torch.zeros(2, 3), torch.zeros(2, 2, 3))
