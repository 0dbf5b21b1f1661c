"""``qmedgen train patch-qgan``: the patch quantum GAN of Huang et al. (Phys. Rev. Applied 16, 024051, 2021).

Generator: :class:`qmedgen.models.baselines.patch_qgan.PatchQuantumGenerator` (K sub-generators of n data + n_a
ancilla qubits, partial measurement post-selected on the ancillas, one patch each; all circuits batched).
Discriminator: the fully connected :class:`qmedgen.models.baselines.mlp.MLPDiscriminator` on flattened images.
Loss: the standard GAN loss (BCE, non-saturating generator loss). Latent angles z ~ U(0, pi/2).
Optimiser defaults: SGD, generator lr 0.3, discriminator lr 0.01 (the settings of the widely used PennyLane
reimplementation of the paper's patch GAN). Defaults: 5 qubits (4 data + 1 ancilla = 16-pixel patches), depth 6.
At 28x28 RGB that is K = 147 sub-generators; the pixel count grows K linearly, so this baseline is for small images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from qmedgen.config import option
from qmedgen.models.baselines.mlp import MLPDiscriminator
from qmedgen.models.baselines.patch_qgan import CONDITIONING, PatchQuantumGenerator
from qmedgen.train.gan import GANFamilyConfig, GANOptimConfig, GANTrainer

CONDITIONING_HELP = ("weights: circuits per class (= one model per class); angles: shared circuits + learned class "
                     "offsets of the encoding angles")


@dataclass
class ModelConfig:
    n_qubits: int = option(5, min=1, max=16, help="qubits per sub-generator (data + ancilla)")
    n_ancilla: int = option(1, min=0, max=15, help="ancilla qubits post-selected on |0> (partial measurement)")
    depth: int = option(6, min=0, max=50, help="layers of [RY on every qubit, CZ chain]")
    conditional: str = option("weights", choices=CONDITIONING, help=CONDITIONING_HELP)
    disc_hidden: list[int] = option([256, 64], help="hidden widths of the fully connected discriminator")


@dataclass
class Config(GANFamilyConfig):
    model: ModelConfig = option(default_factory=ModelConfig)
    optim: GANOptimConfig = option(default_factory=lambda: GANOptimConfig(optimizer="sgd", lr_g=0.3, lr_d=0.01))


class Trainer(GANTrainer):
    family = "patch-qgan"
    loss = "bce"

    def build(self):
        m, s = self.config.model, self.spec
        g = PatchQuantumGenerator(s.n_classes, s.size, s.channels, m.n_qubits, m.n_ancilla, m.depth, m.conditional)
        d = MLPDiscriminator(s.n_classes, s.channels * s.size * s.size, tuple(m.disc_hidden))
        return g, d

    def latent_spec(self) -> tuple[str, int]:
        return "uniform", self.config.model.n_qubits

    def latent_from_noise(self, noise: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return noise * (math.pi / 2)
