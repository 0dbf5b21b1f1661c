"""``qmedgen train wgan-gp``: conditional WGAN-GP with DiffAugment, the strong small-data classical GAN recipe.

* Loss: Wasserstein critic with gradient penalty (Gulrajani et al. 2017): lambda 10, 5 critic updates per
  generator update (each on a fresh real batch), Adam lr 1e-4, betas (0, 0.9) - the paper's defaults.
* Critic: :class:`qmedgen.models.critic.ConditionalCritic` (no BatchNorm, class projection) - the same network
  MediQ-GAN is trained against, so the comparison isolates the generator. Generator: the DCGAN generator.
* DiffAugment (Zhao et al., NeurIPS 2020) on real and fake batches, policy ``translation,cutout,color``, which is
  what makes GANs trainable on a few hundred images; an EMA generator (decay 0.999) is used for sampling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from qmedgen.config import option
from qmedgen.models.baselines.dcgan import NORMS, DCGANGenerator
from qmedgen.models.critic import ConditionalCritic
from qmedgen.train.gan import GANConfig, GANFamilyConfig, GANOptimConfig, GANTrainer
from qmedgen.train.sections import DataConfig, TrainConfig


@dataclass
class ModelConfig:
    latent_dim: int = option(128, min=1, help="dimension of z ~ N(0, I)")
    embed_dim: int = option(50, min=1, help="label embedding concatenated to z")
    g_width: int = option(64, min=1, help="generator channels at full resolution (x2 per halving, at most x8)")
    g_norm: str = option("batch", choices=NORMS, help="normalisation in the generator (the critic has none)")
    critic_channels: list[int] = option([64, 128, 256, 512], help="critic conv widths")
    critic_embed_dim: int = option(128, min=1, help="critic class-projection dimension")


@dataclass
class Config(GANFamilyConfig):
    data: DataConfig = option(default_factory=lambda: DataConfig(size=64))
    train: TrainConfig = option(default_factory=lambda: TrainConfig(batch_size=32))
    model: ModelConfig = option(default_factory=ModelConfig)
    optim: GANOptimConfig = option(
        default_factory=lambda: GANOptimConfig(lr_g=1e-4, lr_d=1e-4, g_betas=[0.0, 0.9], d_betas=[0.0, 0.9])
    )
    gan: GANConfig = option(
        default_factory=lambda: GANConfig(n_critic=5, gp_weight=10.0, diffaugment="translation,cutout,color", ema=True)
    )
    sized_model: ClassVar[str | None] = "wgan-gp"


class Trainer(GANTrainer):
    family = "wgan-gp"
    loss = "wgan-gp"

    def build(self):
        m, s = self.config.model, self.spec
        g = DCGANGenerator(s.n_classes, s.size, s.channels, m.latent_dim, m.g_width, m.embed_dim, m.g_norm)
        d = ConditionalCritic(s.n_classes, s.size, s.channels, tuple(m.critic_channels), m.critic_embed_dim,
                              kind="wgan-gp")
        return g, d
