"""Circuit description: a layered VQC ansatz, the one object every simulator, exporter and model shares."""

from __future__ import annotations

from dataclasses import dataclass

from qmedgen.errors import ConfigError

ENCODINGS = ("ry", "rx", "ry-rx", "none")
ROTATIONS = ("rx", "ry", "rz")
ENTANGLERS = ("cz-chain", "cnot-chain", "cnot-ring", "none")
OBSERVABLES = ("x", "y", "z")


@dataclass(frozen=True)
class Ansatz:
    """A hardware-efficient ansatz, gate for gate as in PennyLane.

    Per qubit i, the encoding applies ``ry`` = RY(x_i), ``rx`` = RX(x_i), ``ry-rx`` = RY(x_i) then RX(x_i),
    or nothing. Each of ``depth`` layers applies, for each name r in ``rotations`` (in order), r(w[l, r, i]) on
    every qubit i, then the entangler: ``cz-chain`` = CZ(i, i+1) for i = 0..n-2; ``cnot-chain`` = CNOT(i -> i+1)
    in that order; ``cnot-ring`` = cnot-chain then CNOT(n-1 -> 0); ``none``. The readout is <P_i> for the
    Pauli ``observable`` P on every qubit. Wire 0 is the most significant bit of a basis index (PennyLane order).
    """

    n_qubits: int
    depth: int
    encoding: str = "ry"
    rotations: tuple[str, ...] = ("ry",)
    entangler: str = "cz-chain"
    observable: str = "z"

    def __post_init__(self) -> None:
        if not isinstance(self.n_qubits, int) or self.n_qubits < 1:
            raise ConfigError(f"Ansatz.n_qubits must be a positive integer, got {self.n_qubits!r}")
        if not isinstance(self.depth, int) or self.depth < 0:
            raise ConfigError(f"Ansatz.depth must be a non-negative integer, got {self.depth!r}")
        if self.encoding not in ENCODINGS:
            raise ConfigError(f"Ansatz.encoding must be one of {ENCODINGS}, got {self.encoding!r}")
        rotations = (self.rotations,) if isinstance(self.rotations, str) else tuple(self.rotations)
        object.__setattr__(self, "rotations", rotations)
        bad = [r for r in rotations if r not in ROTATIONS]
        if bad or not rotations:
            raise ConfigError(f"Ansatz.rotations must be a non-empty tuple of {ROTATIONS}, got {self.rotations!r}")
        if self.entangler not in ENTANGLERS:
            raise ConfigError(f"Ansatz.entangler must be one of {ENTANGLERS}, got {self.entangler!r}")
        if self.observable not in OBSERVABLES:
            raise ConfigError(f"Ansatz.observable must be one of {OBSERVABLES}, got {self.observable!r}")

    @property
    def weight_shape(self) -> tuple[int, int, int]:
        """Shape of one circuit's trainable weights: (depth, len(rotations), n_qubits)."""
        return (self.depth, len(self.rotations), self.n_qubits)

    @property
    def n_weights(self) -> int:
        return self.depth * len(self.rotations) * self.n_qubits

    def to_qiskit(self, inputs=None, weights=None, measure: bool = False):
        """A ``qiskit.QuantumCircuit`` (bound angles, or ParameterVectors where None); see :mod:`.export`."""
        from qmedgen.quantum.export import to_qiskit

        return to_qiskit(self, inputs, weights, measure=measure)

    def to_pennylane(self, measure: bool = True):
        """A function ``f(inputs, weights, wires=None)`` usable inside a QNode; see :mod:`.export`."""
        from qmedgen.quantum.export import to_pennylane

        return to_pennylane(self, measure=measure)

    def entangling_pairs(self) -> list[tuple[int, int]]:
        """(control, target) pairs of the entangler, in application order."""
        n = self.n_qubits
        if self.entangler == "none" or n < 2:
            return []
        pairs = [(i, i + 1) for i in range(n - 1)]
        if self.entangler == "cnot-ring":
            pairs.append((n - 1, 0))
        return pairs
