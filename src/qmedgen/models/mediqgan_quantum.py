"""MediQ-GAN's quantum stream pieces: sub-generator sites, the K-circuit layer, and its matched classical MLP.

The K sub-generators' circuits share one :class:`~qmedgen.quantum.Ansatz` (RY-RX angle encoding, ``depth`` layers
of RY rotations + CZ chain, <X_i> readout) and are run as ONE batched call: weights ``[K, depth, 1, n]`` broadcast
against angles ``[B, K, n]``. The engine's ``QuantumLayer`` owns the weights and the executor (so the hardware
tools can swap the executor for noisy or IBM inference); :func:`make_quantum_layer` builds it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from qmedgen.quantum import Ansatz, QuantumLayer


def mediqgan_ansatz(n_qubits: int, depth: int) -> Ansatz:
    """The MediQ-GAN circuit: RY(x_i) RX(x_i); depth x [RY(theta_{l,i}) on all qubits, CZ(i, i+1)]; <X_i>."""
    return Ansatz(n_qubits=n_qubits, depth=depth, encoding="ry-rx", rotations=("ry",), entangler="cz-chain",
                  observable="x")


def subgenerator_sites(k: int) -> torch.Tensor:
    """Site (of the 16 on the 4x4 grid, row-major) read by each sub-generator: ``round(linspace(0, 15, K))``.

    Rounding is half-to-even as in NumPy (K=3 -> [0, 8, 15], K=5 -> [0, 4, 8, 11, 15]); distinct for K <= 16.
    """
    if k < 1:
        return torch.zeros(0, dtype=torch.long)
    return torch.round(torch.linspace(0, 15, k, dtype=torch.float64)).long()


def make_quantum_layer(k: int, n_qubits: int, depth: int, init: str = "uniform", std: float | None = None) -> nn.Module:
    """K circuits of the MediQ-GAN ansatz in one engine ``QuantumLayer`` (weights ``[K, depth, 1, n]``).

    ``init="uniform"`` is U[0, 1) as in the authors' code; see :class:`~qmedgen.quantum.QuantumLayer` for the others.
    """
    return QuantumLayer(mediqgan_ansatz(n_qubits, depth), batch_shape=(k,), init=init, std=std)


class MatchedMLP(nn.Module):
    """Classical stand-in for the K circuits: same [B, K, n] -> [B, K, n] map, ~same parameter count.

    Per sub-generator k: ``tanh(W2_k tanh(W1_k x + b1_k))`` (outputs in [-1, 1] like <X>), with
    ``h (2n + 1)`` parameters; ``h`` is the hidden width closest to ``target_params / (2n + 1)`` (at least 1).
    """

    def __init__(self, k: int, n: int, target_params: int) -> None:
        super().__init__()
        self.hidden = max(1, round(target_params / (2 * n + 1)))
        h = self.hidden
        self.w1 = nn.Parameter(torch.empty(k, h, n).uniform_(-1 / math.sqrt(n), 1 / math.sqrt(n)))
        self.b1 = nn.Parameter(torch.empty(k, h).uniform_(-1 / math.sqrt(n), 1 / math.sqrt(n)))
        self.w2 = nn.Parameter(torch.empty(k, n, h).uniform_(-1 / math.sqrt(h), 1 / math.sqrt(h)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = torch.tanh(torch.einsum("bkn,khn->bkh", x, self.w1) + self.b1)
        return torch.tanh(torch.einsum("bkh,knh->bkn", hidden, self.w2))
