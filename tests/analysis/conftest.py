"""Synthetic generators for the analysis tests: a tiny MediQ-GAN-shaped generator and a trainer-like wrapper."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qmedgen.quantum import Ansatz, QuantumLayer
from qmedgen.train.loop import DataSpec

K, N_QUBITS, LATENT = 2, 3, 6


class TinyGAN(nn.Module):
    """latent 6 -> (classical [5], K=2 three-qubit circuits averaged -> quantum [4]) -> 8x8 image."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.K = K
        self.embed = nn.Embedding(2, LATENT)
        self.enc = nn.Linear(LATENT, 8)
        self.to_classical = nn.Linear(8, 5)
        self.to_angles = nn.Linear(8, K * N_QUBITS)
        self.quantum_layer = QuantumLayer(
            Ansatz(N_QUBITS, 2, encoding="ry-rx", rotations=("ry",), entangler="cz-chain", observable="x"),
            batch_shape=(K,),
        )
        self.quantum_proj = nn.Linear(K, 4)
        self.decoder = nn.Linear(9, 64)

    def sample_latent(self, y, generator=None):
        return torch.randn(len(y), LATENT, generator=generator)

    def _f(self, z, y):
        return torch.tanh(self.enc(z + self.embed(y)))

    def circuit_inputs(self, z, y):
        return 2.0 * self.to_angles(self._f(z, y)).view(-1, K, N_QUBITS)

    def circuit_map(self, angles):
        return self.quantum_layer(angles)

    def streams(self, z, y):
        f = self._f(z, y)
        classical = torch.tanh(self.to_classical(f))
        e = self.circuit_map(2.0 * self.to_angles(f).view(-1, K, N_QUBITS)).mean(-1)  # [B, K] (rank <= K)
        quantum = self.quantum_proj(e.to(f.dtype))
        return {"classical": classical, "quantum": quantum, "fused": torch.cat([classical, quantum], 1)}

    def forward(self, z, y, noise=True):
        return torch.tanh(self.decoder(self.streams(z, y)["fused"])).view(-1, 1, 8, 8)


TINY_SPEC = DataSpec(dataset="tiny", n_classes=2, channels=1, size=8, class_ids=(0, 1), class_names=("a", "b"))


class TinyTrainer:
    family = "tinygan"

    def __init__(self, seed: int = 0) -> None:
        self.spec = TINY_SPEC
        self.device = torch.device("cpu")
        self.generator = TinyGAN(seed).eval()

    def modules(self):
        return {"generator": self.generator}

    def sample(self, labels, generator=None, **opts):
        with torch.no_grad():
            return self.generator(self.generator.sample_latent(labels, generator), labels)


@pytest.fixture
def tiny_trainer():
    return TinyTrainer()


@pytest.fixture
def make_trainer():
    """The TinyTrainer class (seeded constructor), for tests that need several models."""
    return TinyTrainer


@pytest.fixture
def n_subgenerators():
    return K
