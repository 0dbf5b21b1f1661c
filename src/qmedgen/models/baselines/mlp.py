"""The fully connected discriminator of the quantum GAN baselines (patch QGAN, MosaiQ).

Both papers pair their quantum generator with a small classical fully connected discriminator on flattened images
(Huang et al. 2021; Silver et al. 2023). Here: Linear + LeakyReLU(0.2) layers of the given widths, a linear logit,
and a class-projection term on the last hidden layer for class-conditional training (Miyato & Koyama 2018).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from qmedgen.errors import ConfigError


class MLPDiscriminator(nn.Module):
    """``D(x [B, ...], y [B]) -> [B]`` logits; ``x`` is flattened."""

    def __init__(self, n_classes: int, n_inputs: int, hidden: Sequence[int] = (256, 64)) -> None:
        super().__init__()
        hidden = tuple(hidden)
        if n_classes < 1 or n_inputs < 1:
            raise ConfigError(f"MLPDiscriminator needs n_classes >= 1 and n_inputs >= 1, got {n_classes}, {n_inputs}")
        if not hidden or any(h < 1 for h in hidden):
            raise ConfigError(f"model.disc_hidden must be positive widths, got {list(hidden)}")
        layers: list[nn.Module] = []
        c_in = n_inputs
        for c_out in hidden:
            layers += [nn.Linear(c_in, c_out), nn.LeakyReLU(0.2)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.score = nn.Linear(c_in, 1)
        self.embed = nn.Embedding(n_classes, c_in)
        nn.init.normal_(self.embed.weight, 0.0, 0.02)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.features(x.flatten(1))
        return self.score(h).squeeze(-1) + (self.embed(y).to(h.dtype) * h).sum(-1)
