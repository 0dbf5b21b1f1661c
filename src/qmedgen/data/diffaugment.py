"""Differentiable augmentation for GANs trained on few images (the DiffAugment idea of Zhao et al., NeurIPS 2020).

The same random transform family is applied to real *and* generated batches before the critic, so the critic
cannot memorise the few real images while the generator still receives gradients through the augmentation. Every
operation here is differentiable with respect to the input and works batched on any device. Randomness comes from
``generator`` (a ``torch.Generator`` on any device) or, when it is None, the global RNG of the input's device.

Policy names: ``translation`` (integer shifts up to ``translation_ratio`` of the size, zero fill), ``cutout`` (one
zeroed square of ``cutout_ratio`` of the size per image), ``color`` (= ``brightness,saturation,contrast``) or any of
those three alone. Inputs are expected in [-1, 1]; zero fill therefore means mid-grey.
"""

from __future__ import annotations

import torch
from torch import nn

from qmedgen.errors import ConfigError

_COLOR = ("brightness", "saturation", "contrast")
KNOWN_OPS = ("translation", "cutout", "color", *_COLOR)


def _rand(shape: tuple[int, ...], x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    device = generator.device if generator is not None else x.device
    return torch.rand(shape, generator=generator, device=device, dtype=torch.float32).to(x.device)


def _randint(low: int, high: int, shape: tuple[int, ...], x: torch.Tensor,
             generator: torch.Generator | None) -> torch.Tensor:
    device = generator.device if generator is not None else x.device
    return torch.randint(low, high, shape, generator=generator, device=device).to(x.device)


def brightness(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Add one offset in [-0.5, 0.5) per image."""
    return x + (_rand((x.shape[0], 1, 1, 1), x, generator).to(x.dtype) - 0.5)


def saturation(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Scale each pixel's deviation from its channel mean by a factor in [0, 2) per image."""
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (_rand((x.shape[0], 1, 1, 1), x, generator).to(x.dtype) * 2) + mean


def contrast(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Scale each image's deviation from its global mean by a factor in [0.5, 1.5)."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_rand((x.shape[0], 1, 1, 1), x, generator).to(x.dtype) + 0.5) + mean


def translation(x: torch.Tensor, ratio: float = 0.125, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shift each image by whole pixels, up to ``ratio`` of its height/width, filling with zeros."""
    n, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = _randint(-sy, sy + 1, (n, 1, 1), x, generator)
    dx = _randint(-sx, sx + 1, (n, 1, 1), x, generator)
    rows = torch.arange(h, device=x.device).view(1, h, 1) - dy  # source row of each output row
    cols = torch.arange(w, device=x.device).view(1, 1, w) - dx
    # Index into a zero-padded copy: out-of-range sources land on the zero border.
    padded = nn.functional.pad(x, (1, 1, 1, 1))
    rows = (rows + 1).clamp(0, h + 1).expand(n, h, w)
    cols = (cols + 1).clamp(0, w + 1).expand(n, h, w)
    batch = torch.arange(n, device=x.device).view(n, 1, 1).expand(n, h, w)
    out = padded.permute(0, 2, 3, 1)[batch, rows, cols]  # [N, H, W, C]
    return out.permute(0, 3, 1, 2).contiguous()


def cutout(x: torch.Tensor, ratio: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero one ``ratio``-sized square per image at a random position (it may be clipped by the border)."""
    n, _, h, w = x.shape
    ch, cw = max(1, int(h * ratio + 0.5)), max(1, int(w * ratio + 0.5))
    top = _randint(0, h + 1 - ch % 2, (n, 1, 1), x, generator) - ch // 2
    left = _randint(0, w + 1 - cw % 2, (n, 1, 1), x, generator) - cw // 2
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (ys >= top) & (ys < top + ch) & (xs >= left) & (xs < left + cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


def parse_policy(policy: str) -> list[str]:
    """Expand a comma-separated policy into primitive ops, rejecting unknown names with a clear error."""
    ops: list[str] = []
    for name in (p.strip().lower() for p in policy.split(",")):
        if not name:
            continue
        if name not in KNOWN_OPS:
            raise ConfigError(f"unknown DiffAugment op {name!r} in policy {policy!r}; known: {', '.join(KNOWN_OPS)}")
        ops.extend(_COLOR if name == "color" else (name,))
    return ops


def diff_augment(x: torch.Tensor, policy: str = "translation,cutout,color", generator: torch.Generator | None = None,
                 translation_ratio: float = 0.125, cutout_ratio: float = 0.5, p: float = 1.0) -> torch.Tensor:
    """Augment a batch ``[N, C, H, W]`` differentiably; colour ops first, then translation, then cutout.

    ``p`` < 1 applies each op to each image independently with probability ``p`` (the adaptive-augmentation
    scheme of Karras et al., NeurIPS 2020, where ``p`` is tuned during training); ``p`` = 1 is plain DiffAugment."""
    if x.dim() != 4:
        raise ConfigError(f"diff_augment expects a batch [N, C, H, W], got shape {list(x.shape)}")
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"diff_augment: p must be in [0, 1], got {p}")
    ops = parse_policy(policy)
    order = [*_COLOR, "translation", "cutout"]
    for op in sorted(ops, key=order.index):
        if op == "brightness":
            out = brightness(x, generator)
        elif op == "saturation":
            out = saturation(x, generator)
        elif op == "contrast":
            out = contrast(x, generator)
        elif op == "translation":
            out = translation(x, translation_ratio, generator)
        else:
            out = cutout(x, cutout_ratio, generator)
        if p < 1.0:
            keep = _rand((x.shape[0], 1, 1, 1), x, generator) >= p  # this image skips this op
            out = torch.where(keep, x, out)
        x = out
    return x


class DiffAugment(nn.Module):
    """Module form of :func:`diff_augment` (identity in eval mode only when ``train_only=True``)."""

    def __init__(self, policy: str = "translation,cutout,color", translation_ratio: float = 0.125,
                 cutout_ratio: float = 0.5, train_only: bool = False) -> None:
        super().__init__()
        parse_policy(policy)
        self.policy, self.translation_ratio, self.cutout_ratio = policy, translation_ratio, cutout_ratio
        self.train_only = train_only

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.train_only and not self.training:
            return x
        return diff_augment(x, self.policy, generator, self.translation_ratio, self.cutout_ratio)
