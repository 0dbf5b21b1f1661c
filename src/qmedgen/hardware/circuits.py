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
    """The ansatz as a Qiskit circuit with free inputs; free weights unless ``weights [L, R, n]`` are given.

    The gates come from :func:`qmedgen.quantum.export.to_qiskit` (one definition of the circuit for every
    exporter); with ``measure`` the readout basis change is appended and ``measure_all`` adds the ``meas``
    register the Sampler results are read from.
    """
    require("qiskit")
    from qmedgen.quantum.export import to_qiskit

    qc = to_qiskit(ansatz, None, weights, measure=False)
    qc.name = name or f"vqc_{ansatz.n_qubits}q_{ansatz.depth}l"

    def vector(label: str) -> list:
        elements = [p for p in qc.parameters if p.vector.name == label]
        return sorted(elements, key=lambda p: p.index)

    if measure:
        for i in range(ansatz.n_qubits):
            if ansatz.observable == "y":
                qc.sdg(i)
            if ansatz.observable in ("x", "y"):
                qc.h(i)
        qc.measure_all()
    return ParameterisedCircuit(qc, ansatz, vector("x"), vector("w") if weights is None else [])


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
