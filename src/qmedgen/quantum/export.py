"""Exporters: an :class:`Ansatz` as a Qiskit circuit, a PennyLane template, or OpenQASM 3 text.

Qiskit and PennyLane are optional (the ``quantum`` extra) and imported only when an exporter is called.
Conventions (identical to the simulator): RX/RY/RZ(theta) = exp(-i theta P / 2); CZ; CNOT(control, target);
wire i of the ansatz = Qiskit qubit i = PennyLane wire i. Qiskit's ``Statevector`` is little-endian (qubit 0 is
the least significant bit), ours and PennyLane's are big-endian: compare with ``Statevector(qc).reverse_qargs()``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence

import numpy as np

from qmedgen.errors import ConfigError, UserError
from qmedgen.quantum.ansatz import Ansatz
from qmedgen.quantum.gates import ENCODING_GATES


class MissingDependencyError(UserError, ImportError):
    """An exporter needs an optional package that is not installed."""


def _require(module: str):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"this exporter needs the optional package {module.split('.')[0]!r} ({exc}); "
            "install the quantum extra: pip install 'qmedgen[quantum]'"
        ) from exc


def _values(t, shape: tuple[int, ...], what: str) -> np.ndarray:
    a = np.asarray(t.detach().cpu() if hasattr(t, "detach") else t, dtype=np.float64)
    if a.shape != shape:
        raise ConfigError(f"{what} must have shape {shape} (one circuit), got {a.shape}")
    return a


def to_qiskit(ansatz: Ansatz, inputs=None, weights=None, measure: bool = False):
    """A ``qiskit.QuantumCircuit`` of one circuit of the ansatz.

    ``inputs [n]`` / ``weights [depth, R, n]`` bind the angles; when None, they are ``ParameterVector("x", n)`` /
    ``ParameterVector("w", depth * R * n)`` (row-major over [layer, rotation, qubit]) for later binding.
    ``measure=True`` appends the change to the observable's basis (H for X; S^dagger then H for Y) and measures
    qubit i into classical bit i.
    """
    qiskit = _require("qiskit")
    from qiskit.circuit import ParameterVector

    n = ansatz.n_qubits
    if inputs is None:
        x: Sequence = ParameterVector("x", n) if ansatz.encoding != "none" else [0.0] * n
    else:
        x = [float(v) for v in _values(inputs, (n,), "inputs")]
    if weights is None:
        w = np.array(list(ParameterVector("w", ansatz.n_weights)), dtype=object).reshape(ansatz.weight_shape)
    else:
        w = _values(weights, ansatz.weight_shape, "weights")
    qc = qiskit.QuantumCircuit(n, n if measure else 0, name=f"qmedgen_{n}q_{ansatz.depth}l")
    for gate in ENCODING_GATES[ansatz.encoding]:
        for i in range(n):
            getattr(qc, gate)(x[i], i)
    for layer in range(ansatz.depth):
        for r, gate in enumerate(ansatz.rotations):
            for i in range(n):
                value = w[layer, r, i]
                getattr(qc, gate)(value if weights is None else float(value), i)
        for c, t in ansatz.entangling_pairs():
            (qc.cz if ansatz.entangler == "cz-chain" else qc.cx)(c, t)
    if measure:
        for i in range(n):
            if ansatz.observable == "y":
                qc.sdg(i)
            if ansatz.observable in ("x", "y"):
                qc.h(i)
        qc.measure(range(n), range(n))
    return qc


def to_pennylane(ansatz: Ansatz, measure: bool = True) -> Callable:
    """A function ``f(inputs, weights, wires=None)`` that applies the ansatz's gates inside a QNode.

    With ``measure=True`` (default) it returns ``[qml.expval(P(i)) for i in wires]``, so it can be the whole body
    of a QNode; with ``measure=False`` it is a template that only queues the gates (returns None). Angles are read
    as ``inputs[..., i]`` and ``weights[..., l, r, i]``, so PennyLane parameter broadcasting works with batched
    arrays or tensors.
    """
    qml = _require("pennylane")
    gates = {"rx": qml.RX, "ry": qml.RY, "rz": qml.RZ}
    paulis = {"x": qml.PauliX, "y": qml.PauliY, "z": qml.PauliZ}

    def apply(inputs, weights, wires=None):
        wires = list(range(ansatz.n_qubits)) if wires is None else list(wires)
        if len(wires) != ansatz.n_qubits:
            raise ConfigError(f"to_pennylane: expected {ansatz.n_qubits} wires, got {len(wires)}")
        for name in ENCODING_GATES[ansatz.encoding]:
            for i, wire in enumerate(wires):
                gates[name](inputs[..., i], wires=wire)
        for layer in range(ansatz.depth):
            for r, name in enumerate(ansatz.rotations):
                for i, wire in enumerate(wires):
                    gates[name](weights[..., layer, r, i], wires=wire)
            for c, t in ansatz.entangling_pairs():
                (qml.CZ if ansatz.entangler == "cz-chain" else qml.CNOT)(wires=[wires[c], wires[t]])
        if measure:
            return [qml.expval(paulis[ansatz.observable](wire)) for wire in wires]
        return None

    apply.__doc__ = f"Apply {ansatz!r} (PennyLane gates){'; returns the expval list' if measure else ''}."
    return apply


def to_qasm3(circuit, inputs=None, weights=None, measure: bool = False) -> str:
    """OpenQASM 3 text of a ``qiskit.QuantumCircuit``, or of an :class:`Ansatz` (built with :func:`to_qiskit`).

    Free parameters become QASM ``input float[64]`` declarations, so a parameterised circuit exports as a template.
    """
    _require("qiskit")
    from qiskit import qasm3

    if isinstance(circuit, Ansatz):
        circuit = to_qiskit(circuit, inputs, weights, measure=measure)
    return qasm3.dumps(circuit)
