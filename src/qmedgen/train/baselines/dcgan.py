"""``qmedgen train dcgan``: conditional DCGAN (Radford et al. 2016) with the standard BCE loss.

Defaults follow the paper: Adam lr 2e-4, betas (0.5, 0.999), latent z ~ N(0, I) of 100 dimensions, BatchNorm in
both networks, one discriminator update per generator update. Class conditioning: label embedding concatenated
to z, class projection in the discriminator (see :mod:`qmedgen.models.baselines.dcgan`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from qmedgen.config import option
from qmedgen.models.baselines.dcgan import NORMS, DCGANDiscriminator, DCGANGenerator
from qmedgen.train.gan import GANFamilyConfig, GANTrainer
from qmedgen.train.sections import DataConfig, TrainConfig


@dataclass
class ModelConfig:
    latent_dim: int = option(100, min=1, help="dimension of z ~ N(0, I)")
    embed_dim: int = option(50, min=1, help="label embedding concatenated to z")
    g_width: int = option(64, min=1, help="generator channels at full resolution (x2 per halving, at most x8)")
    d_width: int = option(64, min=1, help="discriminator channels after the first convolution")
    norm: str = option("batch", choices=NORMS, help="normalisation in both networks")


@dataclass
class Config(GANFamilyConfig):
    data: DataConfig = option(default_factory=lambda: DataConfig(size=64))
    train: TrainConfig = option(default_factory=lambda: TrainConfig(batch_size=64))
    model: ModelConfig = option(default_factory=ModelConfig)
    sized_model: ClassVar[str | None] = "dcgan"


class Trainer(GANTrainer):
    family = "dcgan"
    loss = "bce"

    def build(self):
        m, s = self.config.model, self.spec
        g = DCGANGenerator(s.n_classes, s.size, s.channels, m.latent_dim, m.g_width, m.embed_dim, m.norm)
        d = DCGANDiscriminator(s.n_classes, s.size, s.channels, m.d_width, m.norm)
        return g, d
