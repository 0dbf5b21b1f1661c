"""``qmedgen train ddpm``: the classical diffusion baseline - a standard DDPM U-Net without any gate.

Nothing is re-implemented: this is the ``qdiffusion`` family (:mod:`qmedgen.train.qdiffusion`) with the
configurable DDPM-style U-Net (:class:`qmedgen.models.unet.UNet`: residual blocks with GroupNorm, time and label
embedding in every block, self-attention at 7x7) and ``model.gate`` fixed to ``none``. The defaults (base 20
channels, multipliers 1-2-2, one residual block per level) give 437,743 parameters for RGB 28 px and 5 classes,
matched to the quantum-diffusion model (the paper's light U-Net: 448,483 without, 452,819 with its quantum gate).
The diffusion settings (cosine schedule, T = 1000, DDIM sampling, EMA) are qdiffusion's, so a comparison with it
isolates the network; ``diffusion.schedule=linear --set diffusion.sampler=ddpm`` gives Ho et al.'s original recipe.
"""

from __future__ import annotations

from dataclasses import dataclass

from qmedgen.config import option
from qmedgen.errors import ConfigError
from qmedgen.train import qdiffusion


@dataclass
class ModelConfig(qdiffusion.ModelConfig):
    arch: str = option("unet", choices=("unet",), help="the configurable DDPM U-Net")
    gate: str = option("none", choices=("none",), help="no bottleneck gate (use qdiffusion for gated U-Nets)")
    base_channels: int = option(20, min=8, help="channels at full resolution")
    channel_mults: list[int] = option([1, 2, 2], help="channel multiplier per resolution level")
    num_res_blocks: int = option(1, min=1, max=8, help="residual blocks per level")
    attention_resolutions: list[int] = option([7], help="feature-map sides that get self-attention")

    def validate(self) -> None:
        if self.arch != "unet" or self.gate != "none":
            raise ConfigError("ddpm is the classical U-Net baseline (arch unet, gate none); use qdiffusion otherwise")


@dataclass
class Config(qdiffusion.Config):
    model: ModelConfig = option(default_factory=ModelConfig)


class Trainer(qdiffusion.Trainer):
    family = "ddpm"
