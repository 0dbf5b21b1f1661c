"""A tiny model family used to test the shared training infrastructure independently of the real models."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from qmedgen.config import option
from qmedgen.train.loop import Family, Trainer
from qmedgen.train.sections import DataConfig, TrainConfig


@dataclass
class ToyModelConfig:
    hidden: int = option(16, min=1, help="hidden width")
    lr: float = option(1e-2, min=0.0)
    noise_dim: int = option(4, min=1)


@dataclass
class Config:
    data: DataConfig = option(default_factory=DataConfig)
    train: TrainConfig = option(default_factory=lambda: TrainConfig(batch_size=8, steps=6, log_every=1))
    model: ToyModelConfig = option(default_factory=ToyModelConfig)


class ToyTrainer(Trainer):
    family = "toy"
    kill_at: int | None = None  # raise KeyboardInterrupt at this step (simulates a kill)
    nan_at: int | None = None

    def __init__(self, config, spec, device, dist=None, data=None):
        super().__init__(config, spec, device, dist, data)
        m = config.model
        out = spec.channels * spec.size * spec.size
        self.net = nn.Sequential(
            nn.Linear(m.noise_dim + spec.n_classes, m.hidden), nn.Tanh(), nn.Linear(m.hidden, out)
        ).to(device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=m.lr)

    def modules(self):
        return {"net": self.net}

    def optimizers(self):
        return {"net": self.opt}

    def _forward(self, z, labels):
        onehot = nn.functional.one_hot(labels, self.spec.n_classes).float()
        x = self.net(torch.cat([z, onehot], dim=1))
        return torch.tanh(x).view(-1, self.spec.channels, self.spec.size, self.spec.size)

    def train_step(self, step):
        if self.kill_at is not None and step == self.kill_at:
            raise KeyboardInterrupt
        x, y = self.data.next_batch(self.config.train.batch_size)
        z = self.local_randn(len(y), self.config.model.noise_dim)
        loss = ((self._forward(z, y) - x) ** 2).mean()
        self.optimize(loss, self.opt)
        value = float("nan") if self.nan_at is not None and step == self.nan_at else loss.item()
        return {"loss": value}

    def sample(self, labels, generator=None, **opts):
        z = torch.randn(len(labels), self.config.model.noise_dim, generator=generator, device=self.device)
        return self._forward(z, labels)


Trainer = ToyTrainer
FAMILY = Family(name="toy", config_cls=Config, trainer_cls=ToyTrainer)
