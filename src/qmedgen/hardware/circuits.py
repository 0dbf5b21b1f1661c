"""Parameterised Qiskit circuits of an :class:`~qmedgen.quantum.Ansatz`, gate for gate as our simulator runs it.

One circuit per ansatz, with the data inputs as a ``ParameterVector("x", n)`` and the trainable weights either as a
``ParameterVector("w", depth * len(rotations) * n)`` (row-major over [layer, rotation, qubit]) or bound to numbers
(a trained circuit). Many images then run as many parameter bindings of ONE transpiled circuit.

Qubit order: wire i of the ansatz is Qiskit qubit i and is measured into classical bit i. (Qiskit prints
bitstrings little-endian; we never parse strings, only per-bit boolean arrays, so there is no reversal to get wrong.)
Readout basis: H before measuring for <X>, S^dagger then H for <Y>.
Gate conventions match: RX/RY/RZ(theta) = exp(-i theta P / 2), CZ, CX(control, target).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qmedgen.hardware._qiskit import require
from qmedgen.quantum import Ansatz

_ENCODING_GATES = {"ry": ("ry",), "rx": ("rx",), "ry-rx": ("ry", "rx"), "none": ()}


@dataclass
class ParameterisedCircuit:
    """A Qiskit circuit plus the order in which to put input and weight values into a binding array."""

    circuit: object  # qiskit.QuantumCircuit
    ansatz: Ansatz
    input_params: list
    weight_params: list  # empty when the weights are bound

    def binding_array(self, inputs: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Values ``[M, P]`` in ``circuit.parameters`` order for inputs ``[M, n]`` and weights ``[M, L, R, n]``."""
        columns = {p: inputs[:, i] for i, p in enumerate(self.input_params)}
        if self.weight_params:
            if weights is None:
                raise ValueError("this circuit has free weight parameters: pass weights")
            flat = weights.reshape(weights.shape[0], -1)
            columns.update({p: flat[:, j] for j, p in enumerate(self.weight_params)})
        order = list(self.circuit.parameters)
        return np.stack([np.asarray(columns[p], dtype=np.float64) for p in order], axis=-1)


def build_circuit(ansatz: Ansatz, weights=None, measure: bool = True, name: str | None = None) -> ParameterisedCircuit:
    """The ansatz as a Qiskit circuit with free inputs; free weights unless ``weights [L, R, n]`` are given."""
    qiskit = require("qiskit")
    from qiskit.circuit import ParameterVector

    n = ansatz.n_qubits
    qc = qiskit.QuantumCircuit(n, name=name or f"vqc_{n}q_{ansatz.depth}l")
    x = ParameterVector("x", n) if ansatz.encoding != "none" else []
    if weights is None:
        wvec = ParameterVector("w", ansatz.n_weights)
        w = np.array(list(wvec), dtype=object).reshape(ansatz.weight_shape)
        weight_params = list(wvec)
    else:
        w = np.asarray(weights.detach().cpu() if hasattr(weights, "detach") else weights, dtype=np.float64)
        if w.shape != ansatz.weight_shape:
            raise ValueError(f"weights must have shape {ansatz.weight_shape}, got {w.shape}")
        weight_params = []
    for gate in _ENCODING_GATES[ansatz.encoding]:
        for i in range(n):
            getattr(qc, gate)(x[i], i)
    for layer in range(ansatz.depth):
        for r, gate in enumerate(ansatz.rotations):
            for i in range(n):
                value = w[layer, r, i]
                getattr(qc, gate)(value if weight_params else float(value), i)
        for c, t in ansatz.entangling_pairs():
            if ansatz.entangler == "cz-chain":
                qc.cz(c, t)
            else:
                qc.cx(c, t)
    if measure:
        if ansatz.observable in ("x", "y"):
            for i in range(n):
                if ansatz.observable == "y":
                    qc.sdg(i)
                qc.h(i)
        qc.measure_all()
    return ParameterisedCircuit(qc, ansatz, list(x), weight_params)


def pauli_observables(ansatz: Ansatz, layout=None) -> list:
    """One ``SparsePauliOp`` per wire (P on wire i, identity elsewhere), mapped onto ``layout`` when given."""
    require("qiskit")
    from qiskit.quantum_info import SparsePauliOp

    n = ansatz.n_qubits
    ops = []
    for i in range(n):
        label = ["I"] * n
        label[n - 1 - i] = ansatz.observable.upper()  # Pauli labels are little-endian: qubit 0 is rightmost
        op = SparsePauliOp("".join(label))
        ops.append(op.apply_layout(layout) if layout is not None else op)
    return ops
