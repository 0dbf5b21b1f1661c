"""A lightweight FastGAN-style GAN (Liu et al., "Towards faster and stabilized GAN training for high-fidelity
few-shot image synthesis", ICLR 2021), scaled to 28 - 128 px.

Kept from the paper: the generator's up-sampling blocks (nearest up-sampling, 3x3 conv, BatchNorm, GLU) and
**skip-layer excitation** (SLE: a low-resolution feature map is pooled to 4x4, turned into per-channel gates by a
4x4 conv, LeakyReLU, 1x1 conv and a sigmoid, and multiplies a feature map two resolutions higher); the
**self-supervised discriminator** (spectral-normalised convs) whose last feature map must also be decoded back into
a down-sampled copy of the *real* input by a small decoder (the reconstruction loss regularises the discriminator
on few images); hinge loss and DiffAugment in the trainer.
Changed for small images and offline use: SLE spans x4 in resolution instead of x16 (there are only 3 - 6 levels),
the reconstruction loss is L1 instead of LPIPS (no pretrained network needed), there is one decoder (no random-crop
decoder), and both networks are class-conditional (label embedding concatenated to z; class projection in D).
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from qmedgen.errors import ConfigError
from qmedgen.models.baselines.dcgan import n_doublings, start_size


def _width(base: int, level: int, n_levels: int) -> int:
    """Channels at ``level`` (0 = coarsest): halve per level from 8 * base at most, never below base // 2."""
    return max(base // 2, base * min(2 ** (n_levels - 1 - level), 8))


class _Up(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, 2 * c_out, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(2 * c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.glu(self.norm(self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))), dim=1)


class SkipLayerExcitation(nn.Module):
    """Channel gates for a high-resolution map computed from a low-resolution one."""

    def __init__(self, c_low: int, c_high: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.AdaptiveAvgPool2d(4), nn.Conv2d(c_low, c_high, 4), nn.LeakyReLU(0.1),
            nn.Conv2d(c_high, c_high, 1), nn.Sigmoid(),
        )

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        return high * self.net(low)


class FastGANGenerator(nn.Module):
    """``G(z [B, latent_dim], y [B]) -> [B, C, S, S]`` in [-1, 1]."""

    def __init__(self, n_classes: int, image_size: int = 64, channels: int = 3, latent_dim: int = 128,
                 width: int = 32, embed_dim: int = 32) -> None:
        super().__init__()
        if n_classes < 1 or channels not in (1, 3) or width < 2 or latent_dim < 1 or embed_dim < 1:
            raise ConfigError(
                f"FastGAN generator: need n_classes >= 1, channels 1|3, width >= 2, latent_dim/embed_dim >= 1; got "
                f"{n_classes}, {channels}, {width}, {latent_dim}, {embed_dim}"
            )
        s0, n_up = start_size(image_size), n_doublings(image_size)
        n_levels = n_up + 1
        chans = [_width(width, i, n_levels) for i in range(n_levels)]
        self.latent_dim = latent_dim
        self.embed = nn.Embedding(n_classes, embed_dim)
        self.init = nn.Sequential(
            nn.ConvTranspose2d(latent_dim + embed_dim, 2 * chans[0], s0, bias=False), nn.BatchNorm2d(2 * chans[0]),
            nn.GLU(dim=1),
        )
        self.ups = nn.ModuleList(_Up(chans[i], chans[i + 1]) for i in range(n_up))
        # SLE from level j - 2 to level j (x4 in resolution) for every level that has one
        self.sle = nn.ModuleDict({str(j): SkipLayerExcitation(chans[j - 2], chans[j]) for j in range(2, n_levels)})
        self.to_image = nn.Conv2d(chans[-1], channels, 3, padding=1)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.init(torch.cat([z, self.embed(y).to(z.dtype)], dim=1)[:, :, None, None])
        feats = [h]
        for j, up in enumerate(self.ups, start=1):
            h = up(h)
            if str(j) in self.sle:
                h = self.sle[str(j)](feats[j - 2], h)
            feats.append(h)
        return torch.tanh(self.to_image(h))


class FastGANDiscriminator(nn.Module):
    """``D(x, y) -> [B]`` logits; ``D(x, y, reconstruct=True)`` also returns (decoded image, its target)."""

    def __init__(self, n_classes: int, image_size: int = 64, channels: int = 3, width: int = 32,
                 decoder_width: int = 32) -> None:
        super().__init__()
        if n_classes < 1 or channels not in (1, 3) or width < 1 or decoder_width < 1:
            raise ConfigError(
                f"FastGAN discriminator: need n_classes >= 1, channels 1|3, widths >= 1; got {n_classes}, "
                f"{channels}, {width}, {decoder_width}"
            )
        s0, n_down = start_size(image_size), n_doublings(image_size)
        chans = [width * min(2**i, 8) for i in range(n_down)]
        layers: list[nn.Module] = [spectral_norm(nn.Conv2d(channels, chans[0], 4, 2, 1)), nn.LeakyReLU(0.2)]
        for c_in, c_out in itertools.pairwise(chans):
            layers += [spectral_norm(nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False)), nn.BatchNorm2d(c_out),
                       nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        self.score = spectral_norm(nn.Conv2d(chans[-1], 1, s0))
        self.embed = nn.Embedding(n_classes, chans[-1])
        n_dec = min(3, n_down)
        self.recon_size = s0 * 2**n_dec
        dec: list[nn.Module] = []
        c = chans[-1]
        for _ in range(n_dec):
            dec.append(_Up(c, decoder_width))
            c = decoder_width
        dec += [nn.Conv2d(c, channels, 3, padding=1), nn.Tanh()]
        self.decoder = nn.Sequential(*dec)

    def forward(self, x: torch.Tensor, y: torch.Tensor, reconstruct: bool = False):
        h = self.features(x)
        logits = self.score(h).flatten() + (self.embed(y).to(h.dtype) * h.mean(dim=(2, 3))).sum(-1)
        if not reconstruct:
            return logits
        target = x if x.shape[-1] == self.recon_size else F.interpolate(x, size=self.recon_size, mode="area")
        return logits, self.decoder(h), target
