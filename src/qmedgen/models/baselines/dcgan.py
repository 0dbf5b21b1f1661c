"""Conditional DCGAN (Radford et al., ICLR 2016) for 28, 32, 64 and 128 px images.

Generator: ``[z, embed(y)]`` is projected to an ``S0 x S0`` map by a transposed convolution (S0 = 7 for 28 px, else
4), then stride-2 4x4 transposed convolutions double the side until the image size (28: 7-14-28; 64: 4-8-16-32-64),
with BatchNorm + ReLU between them and tanh at the end. Channels halve at every doubling, from ``8 * width`` at
most down to ``width`` (the paper's 64 px generator: 512-256-128-64 for ``width=64``).

Discriminator: the mirror image - stride-2 4x4 convolutions with LeakyReLU(0.2) and BatchNorm (not on the first
layer), down to ``S0 x S0``; a convolution over the whole last map gives the logit (as in DCGAN), plus a
class-projection term ``<embed(y), mean-pooled features>`` for conditioning (Miyato & Koyama 2018).
Weights start from N(0, 0.02) (BatchNorm scales from N(1, 0.02)), as in the paper.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from qmedgen.data.catalog import GENERATED_SIZES
from qmedgen.errors import ConfigError

NORMS = ("batch", "none")


def start_size(image_size: int) -> int:
    """Side of the first (generator) / last (discriminator) feature map."""
    if image_size not in GENERATED_SIZES:
        raise ConfigError(f"DCGAN-style models generate {GENERATED_SIZES} px images, got {image_size}")
    return 7 if image_size == 28 else 4


def n_doublings(image_size: int) -> int:
    return round(math.log2(image_size // start_size(image_size)))


def _norm(kind: str, channels: int) -> nn.Module:
    if kind not in NORMS:
        raise ConfigError(f"norm must be one of {NORMS}, got {kind!r}")
    return nn.BatchNorm2d(channels) if kind == "batch" else nn.Identity()


def dcgan_init(module: nn.Module) -> None:
    """The DCGAN paper's initialisation: conv weights N(0, 0.02), BatchNorm scale N(1, 0.02) and bias 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def _check(n_classes: int, channels: int, width: int) -> None:
    if n_classes < 1:
        raise ConfigError(f"n_classes must be >= 1, got {n_classes}")
    if channels not in (1, 3):
        raise ConfigError(f"channels must be 1 or 3, got {channels}")
    if width < 1:
        raise ConfigError(f"model.width must be >= 1, got {width}")


class DCGANGenerator(nn.Module):
    """``G(z [B, latent_dim], y [B]) -> [B, C, S, S]`` in [-1, 1]."""

    def __init__(
        self,
        n_classes: int,
        image_size: int = 64,
        channels: int = 3,
        latent_dim: int = 100,
        width: int = 64,
        embed_dim: int = 50,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        _check(n_classes, channels, width)
        if latent_dim < 1 or embed_dim < 1:
            raise ConfigError(f"latent_dim and embed_dim must be >= 1, got {latent_dim}, {embed_dim}")
        s0, n_up = start_size(image_size), n_doublings(image_size)
        chans = [width * min(2 ** (n_up - 1 - i), 8) for i in range(n_up)]
        self.latent_dim, self.image_size, self.channels = latent_dim, image_size, channels
        self.embed = nn.Embedding(n_classes, embed_dim)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim + embed_dim, chans[0], s0, 1, 0, bias=False),
            _norm(norm, chans[0]),
            nn.ReLU(True),
        ]
        for c_in, c_out in itertools.pairwise(chans):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), _norm(norm, c_out), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(chans[-1], channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = torch.cat([z, self.embed(y).to(z.dtype)], dim=1)
        return self.net(h[:, :, None, None])


class DCGANDiscriminator(nn.Module):
    """``D(x [B, C, S, S], y [B]) -> [B]`` logits (real > 0)."""

    def __init__(
        self, n_classes: int, image_size: int = 64, channels: int = 3, width: int = 64, norm: str = "batch"
    ) -> None:
        super().__init__()
        _check(n_classes, channels, width)
        s0, n_down = start_size(image_size), n_doublings(image_size)
        chans = [width * min(2**i, 8) for i in range(n_down)]
        layers: list[nn.Module] = [nn.Conv2d(channels, chans[0], 4, 2, 1), nn.LeakyReLU(0.2, True)]
        for c_in, c_out in itertools.pairwise(chans):
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), _norm(norm, c_out), nn.LeakyReLU(0.2, True)]
        self.features = nn.Sequential(*layers)
        self.score = nn.Conv2d(chans[-1], 1, s0)
        self.embed = nn.Embedding(n_classes, chans[-1])
        dcgan_init(self)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        proj = (self.embed(y).to(h.dtype) * h.mean(dim=(2, 3))).sum(-1)
        return self.score(h).flatten() + proj
