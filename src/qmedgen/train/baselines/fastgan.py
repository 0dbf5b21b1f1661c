"""``qmedgen train fastgan``: a lightweight FastGAN-style GAN (Liu et al., ICLR 2021) for few-shot data.

Networks: :mod:`qmedgen.models.baselines.fastgan` (skip-layer excitation in the generator; a self-supervised
discriminator that also reconstructs the real input from its last feature map). Loss: hinge, plus the L1
reconstruction loss on real images in the discriminator update (``gan.recon_weight``). As in the paper: Adam lr
2e-4, betas (0.5, 0.999), DiffAugment ``color,translation`` on real and fake, an EMA generator for sampling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from qmedgen.config import option
from qmedgen.models.baselines.fastgan import FastGANDiscriminator, FastGANGenerator
from qmedgen.train.gan import GANConfig, GANFamilyConfig, GANTrainer
from qmedgen.train.sections import DataConfig, TrainConfig


@dataclass
class ModelConfig:
    latent_dim: int = option(128, min=1, help="dimension of z ~ N(0, I)")
    embed_dim: int = option(32, min=1, help="label embedding concatenated to z")
    g_width: int = option(32, min=2, help="generator channels at full resolution (x2 per halving, at most x8)")
    d_width: int = option(32, min=1, help="discriminator channels after the first convolution")
    decoder_width: int = option(32, min=1, help="channels of the discriminator's reconstruction decoder")


@dataclass
class FastGANConfig(GANConfig):
    recon_weight: float = option(1.0, min=0.0, help="weight of the discriminator's reconstruction loss on reals")


@dataclass
class Config(GANFamilyConfig):
    data: DataConfig = option(default_factory=lambda: DataConfig(size=64))
    train: TrainConfig = option(default_factory=lambda: TrainConfig(batch_size=8))
    model: ModelConfig = option(default_factory=ModelConfig)
    gan: FastGANConfig = option(default_factory=lambda: FastGANConfig(diffaugment="color,translation", ema=True))
    sized_model: ClassVar[str | None] = "fastgan"


class Trainer(GANTrainer):
    family = "fastgan"
    loss = "hinge"

    def build(self):
        m, s = self.config.model, self.spec
        g = FastGANGenerator(s.n_classes, s.size, s.channels, m.latent_dim, m.g_width, m.embed_dim)
        d = FastGANDiscriminator(s.n_classes, s.size, s.channels, m.d_width, m.decoder_width)
        return g, d

    def discriminate(self, x: torch.Tensor, y: torch.Tensor, real: bool) -> tuple[torch.Tensor, torch.Tensor]:
        weight = self.config.gan.recon_weight
        if not (real and weight > 0):
            return self.discriminator(x, y).float(), x.new_zeros((), dtype=torch.float32)
        logits, decoded, target = self.discriminator(x, y, reconstruct=True)
        return logits.float(), weight * F.l1_loss(decoded.float(), target.float())
