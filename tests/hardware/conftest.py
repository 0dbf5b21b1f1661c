"""A tiny trainer-like model with K=2 three-qubit circuits inside, shaped like the lead's trainers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qmedgen.quantum import Ansatz, QuantumLayer
from qmedgen.train.loop import DataSpec

ANSATZ = Ansatz(3, 2, encoding="ry-rx", rotations=("ry",), entangler="cz-chain", observable="x")


def make_layer(ansatz: Ansatz = ANSATZ, batch_shape=(2,)) -> nn.Module:
    layer = QuantumLayer(ansatz, batch_shape=batch_shape)
    assert hasattr(layer, "executor"), "QuantumLayer must expose the 'executor' hook"
    return layer


class TinyGenerator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(2, 4)
        self.to_angles = nn.Linear(4, 2 * 3)
        self.circuits = make_layer()
        self.decode = nn.Linear(6, 8 * 8)

    def forward(self, z, y):
        angles = self.to_angles(z + self.embed(y)).view(-1, 2, 3) * 3.0
        e = self.circuits(angles).reshape(-1, 6).float()
        return torch.tanh(3.0 * self.decode(e)).view(-1, 1, 8, 8)


TINY_SPEC = DataSpec(dataset="tiny", n_classes=2, channels=1, size=8, class_ids=(0, 1), class_names=("a", "b"))


class TinyTrainer:
    def __init__(self) -> None:
        self.spec = TINY_SPEC
        self.device = torch.device("cpu")
        self.generator = TinyGenerator().eval()

    def modules(self):
        return {"generator": self.generator}

    def sample(self, labels, generator=None, **opts):
        self.last_opts = opts
        z = torch.randn(len(labels), 4, generator=generator)
        return self.generator(z, labels)


@pytest.fixture
def tiny_trainer():
    return TinyTrainer()
