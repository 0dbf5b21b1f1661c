"""Quantum circuits: ansatz description, fast batched differentiable simulator, noise, layers and exporters.

Public API: ``Ansatz``, ``expval``, ``sample``, ``QuantumLayer`` (+ ``probabilities``, ``simulate``,
``NoiseModel``, ``estimate_bytes``). See :mod:`qmedgen.quantum.engine` for how the simulator works.
"""

from qmedgen.quantum.ansatz import Ansatz
from qmedgen.quantum.layer import QuantumLayer
from qmedgen.quantum.memory import estimate_bytes
from qmedgen.quantum.noise import NoiseModel
from qmedgen.quantum.simulator import expval, probabilities, sample, simulate

__all__ = [
    "Ansatz",
    "NoiseModel",
    "QuantumLayer",
    "estimate_bytes",
    "expval",
    "probabilities",
    "sample",
    "simulate",
]
