"""Quantum circuits: ansatz description, batched differentiable simulator, noise, layers and exporters."""

from qmedgen.quantum.ansatz import Ansatz
from qmedgen.quantum.simulator import expval, probabilities, sample, simulate

__all__ = ["Ansatz", "expval", "probabilities", "sample", "simulate"]
