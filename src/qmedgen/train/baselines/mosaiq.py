"""``qmedgen train mosaiq``: MosaiQ (Silver et al., ICCV 2023), quantum sub-generators in a PCA space.

Generator: :class:`qmedgen.models.baselines.mosaiq.MosaiQGenerator` - K sub-generators of n qubits give
K * n expectation values, read as (redistributed, scaled) PCA coefficients and decoded by the PCA fitted on the
training images when the run starts (the PCA lives in buffers, so it is checkpointed and sampling needs no data).
Discriminator: the fully connected :class:`qmedgen.models.baselines.mlp.MLPDiscriminator` on the decoded images.
Loss: the standard GAN loss (BCE). Latent angles z ~ U(0, ub) with MosaiQ's adaptive input-noise bound
``ub = pi/8 + (5 pi / 8) * ReLU(tanh(R - R0))``, ``R = |L_D| / |L_G|`` (smoothed by ``gan.noise_ratio_momentum``;
:class:`qmedgen.train.gan.AdaptiveNoiseBound`, the rule MediQ-GAN borrows), updated every step.
Optimiser defaults as the patch QGAN baseline (SGD, lr 0.3 / 0.01), so the two quantum GANs differ only in design.
Defaults: 5 sub-generators of 8 qubits (40 principal components), depth 6.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from qmedgen.config import option
from qmedgen.models.baselines.mlp import MLPDiscriminator
from qmedgen.models.baselines.mosaiq import MosaiQGenerator
from qmedgen.models.baselines.patch_qgan import CONDITIONING
from qmedgen.train.baselines import patch_qgan
from qmedgen.train.gan import AdaptiveNoiseBound, GANConfig, GANTrainer
from qmedgen.train.loop import DataSpec


@dataclass
class ModelConfig:
    n_subgenerators: int = option(5, min=1, help="quantum sub-generators (K)")
    n_qubits: int = option(8, min=1, max=20, help="qubits per sub-generator; K * n_qubits PCA components")
    depth: int = option(6, min=0, max=50, help="layers of [RY on every qubit, CZ chain]")
    conditional: str = option("weights", choices=CONDITIONING, help=patch_qgan.CONDITIONING_HELP)
    disc_hidden: list[int] = option([256, 64], help="hidden widths of the fully connected discriminator")


@dataclass
class MosaiQGANConfig(GANConfig):
    noise_bound_r0: float = option(1.0, help="R0 of the adaptive noise bound")
    noise_ratio_momentum: float = option(0.9, min=0.0, max=0.999, help="smoothing of R = |L_D| / |L_G| (0 = none)")


@dataclass
class Config(patch_qgan.Config):  # the patch QGAN's optimiser defaults
    model: ModelConfig = option(default_factory=ModelConfig)
    gan: MosaiQGANConfig = option(default_factory=MosaiQGANConfig)


class Trainer(GANTrainer):
    family = "mosaiq"
    loss = "bce"

    def __init__(self, config: Config, spec: DataSpec, device: torch.device, dist=None, data=None) -> None:
        super().__init__(config, spec, device, dist, data)
        g = config.gan
        self.noise_rule = AdaptiveNoiseBound(g.noise_bound_r0, g.noise_ratio_momentum, checkpoint_r0=False)

    def build(self):
        m, s = self.config.model, self.spec
        g = MosaiQGenerator(s.n_classes, s.size, s.channels, m.n_subgenerators, m.n_qubits, m.depth, m.conditional)
        if self.data is not None:  # rebuilt for sampling: the checkpoint holds the fitted PCA
            g.pca.fit(self.data.images)
        d = MLPDiscriminator(s.n_classes, s.channels * s.size * s.size, tuple(m.disc_hidden))
        return g, d

    def latent_spec(self) -> tuple[str, int]:
        return "uniform", self.config.model.n_qubits

    def latent_from_noise(self, noise: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return noise * float(self.generator.noise_bound)

    def after_step(self, metrics: dict[str, float]) -> None:
        metrics["noise_bound"] = float(self.generator.noise_bound)  # the bound this step's latents used
        self.update_noise_bound(metrics["loss_d"], metrics["loss_g"])

    def parameter_counts(self) -> dict[str, int]:
        counts = super().parameter_counts()
        counts["pca_components"] = self.generator.pca.n_components
        return counts
