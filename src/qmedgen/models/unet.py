"""Noise-prediction U-Nets for diffusion: the paper's lightweight U-Net and a stronger configurable one.

Both map ``(x_t [B, C, H, W], t [B], y [B] | None) -> eps [B, C, H, W]`` and carry an optional bottleneck gate
(:mod:`qmedgen.models.bottleneck`), given as one :class:`~qmedgen.models.bottleneck.GateSpec` (``gate=``). Class
conditioning adds a learned label embedding to the time embedding; label index ``n_classes`` is the "no label" token
used for classifier-free guidance (labels are dropped to it during training, and the sampler mixes conditional and
unconditional predictions).

:class:`LightUNet` follows the architecture of arXiv 2504.00034 (public code, 28x28): conv C->32, conv 32->64
stride 2, conv 64->128 stride 2, a residual block at 128, transposed convs back up, one skip from the first level, an
output conv; a 128-d sinusoidal time embedding through one linear layer, added at the bottleneck only. With
grayscale input and no gate it has 445,985 parameters (the paper: about 446k).

:class:`UNet` is a DDPM-style U-Net: residual blocks with GroupNorm and the time (+ label) embedding injected in
every block, optional self-attention at chosen resolutions, configurable channel multipliers, 28 to 128 px.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from qmedgen.errors import ConfigError
from qmedgen.models.bottleneck import NO_GATE, GateSpec, QuantumGate, make_gate


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``[B, dim]`` of (possibly fractional) time steps ``t [B]`` (Vaswani et al. 2017)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


def _groups(channels: int) -> int:
    return next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0)


class _GatedMixin:
    """``bottleneck_shots``: shot noise on the quantum gate's readout (None = exact expectation values)."""

    gate: nn.Module | None

    @property
    def bottleneck_shots(self) -> int | None:
        return self.gate.shots if isinstance(self.gate, QuantumGate) else None

    @bottleneck_shots.setter
    def bottleneck_shots(self, value: int | None) -> None:
        if not isinstance(self.gate, QuantumGate):
            if value is None:
                return
            raise ConfigError("bottleneck_shots needs model.gate = 'quantum'")
        self.gate.shots = value


def _check_common(in_channels: int, image_size: int, n_classes: int, divisor: int) -> None:
    if in_channels not in (1, 3):
        raise ConfigError(f"model in_channels must be 1 (grayscale) or 3 (RGB), got {in_channels}")
    if image_size < divisor or image_size % divisor:
        raise ConfigError(f"image size must be a positive multiple of {divisor} for this U-Net, got {image_size}")
    if n_classes < 0:
        raise ConfigError(f"n_classes must be >= 0 (0 = unconditional), got {n_classes}")


class _ResBlock(nn.Module):
    """Two 3x3 convs with a skip (the lightweight U-Net's bottleneck block; no norm, like the paper)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.silu(self.conv1(F.silu(x))))


class LightUNet(_GatedMixin, nn.Module):
    """The paper's lightweight U-Net (32/64/128 channels, one skip, time embedding at the bottleneck only)."""

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        n_classes: int = 0,
        gate: GateSpec = NO_GATE,
        time_dim: int = 128,
    ) -> None:
        super().__init__()
        _check_common(in_channels, image_size, n_classes, 4)
        self.in_channels, self.image_size, self.n_classes, self.time_dim = in_channels, image_size, n_classes, time_dim
        self.conv_in = nn.Conv2d(in_channels, 32, 3, padding=1)
        self.down1 = nn.Conv2d(32, 64, 3, stride=2, padding=1)
        self.down2 = nn.Conv2d(64, 128, 3, stride=2, padding=1)
        self.time_proj = nn.Linear(time_dim, 128)
        self.label_emb = nn.Embedding(n_classes + 1, 128) if n_classes else None
        self.mid = _ResBlock(128)
        self.gate = make_gate(gate, 128)
        self.up1 = nn.ConvTranspose2d(128, 64, 2, stride=2)
        self.up2 = nn.ConvTranspose2d(64, 32, 2, stride=2)
        self.conv_out = nn.Conv2d(64, in_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h1 = F.silu(self.conv_in(x))
        h = F.silu(self.down1(h1))
        h = F.silu(self.down2(h))
        emb = self.time_proj(timestep_embedding(t, self.time_dim))
        if self.label_emb is not None:
            emb = emb + self.label_emb(_labels(y, self.n_classes, x))
        h = self.mid(h + emb.to(h.dtype)[:, :, None, None])
        if self.gate is not None:
            h = self.gate(h)
        h = F.silu(self.up1(h))
        h = F.silu(self.up2(h))
        return self.conv_out(torch.cat([h, h1], dim=1))


def _labels(y: torch.Tensor | None, n_classes: int, x: torch.Tensor) -> torch.Tensor:
    """Labels for a conditional model; None means "unconditional" (the null token ``n_classes``)."""
    if y is None:
        return torch.full((x.shape[0],), n_classes, dtype=torch.long, device=x.device)
    return y.long()


class _TimeResBlock(nn.Module):
    """GroupNorm-SiLU-conv residual block with the (time + label) embedding added after the first conv."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb)).to(h.dtype)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class _Attention(nn.Module):
    """Multi-head self-attention over the pixels of a feature map, with a residual connection."""

    def __init__(self, channels: int, heads: int = 4) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.attn = nn.MultiheadAttention(channels, heads if channels % heads == 0 else 1, batch_first=True)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        b, c, h, w = x.shape
        seq = self.norm(x).flatten(2).transpose(1, 2)
        out, _ = self.attn(seq, seq, seq, need_weights=False)
        return x + out.transpose(1, 2).reshape(b, c, h, w)


class UNet(_GatedMixin, nn.Module):
    """Configurable DDPM-style U-Net with the time embedding in every block and an optional bottleneck gate."""

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        n_classes: int = 0,
        base_channels: int = 64,
        channel_mults: Sequence[int] = (1, 2, 2),
        num_res_blocks: int = 2,
        attention_resolutions: Sequence[int] = (7,),
        dropout: float = 0.0,
        gate: GateSpec = NO_GATE,
    ) -> None:
        super().__init__()
        mults = tuple(channel_mults)
        if not mults or any(m < 1 for m in mults) or base_channels < 1 or num_res_blocks < 1:
            raise ConfigError(
                f"UNet needs channel_mults >= 1, base_channels >= 1, num_res_blocks >= 1; got {mults}, "
                f"{base_channels}, {num_res_blocks}"
            )
        _check_common(in_channels, image_size, n_classes, 2 ** (len(mults) - 1))
        self.in_channels, self.image_size, self.n_classes = in_channels, image_size, n_classes
        self.base_channels = base_channels
        emb_dim = 4 * base_channels
        self.time_mlp = nn.Sequential(nn.Linear(base_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.label_emb = nn.Embedding(n_classes + 1, emb_dim) if n_classes else None
        self.conv_in = nn.Conv2d(in_channels, base_channels, 3, padding=1)

        attn_at = set(attention_resolutions)
        self.down = nn.ModuleList()
        skips = [base_channels]
        ch, res = base_channels, image_size
        for level, mult in enumerate(mults):
            for _ in range(num_res_blocks):
                blocks = [_TimeResBlock(ch, base_channels * mult, emb_dim, dropout)]
                ch = base_channels * mult
                if res in attn_at:
                    blocks.append(_Attention(ch))
                self.down.append(nn.ModuleList(blocks))
                skips.append(ch)
            if level < len(mults) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(ch, ch, 3, stride=2, padding=1)]))
                skips.append(ch)
                res //= 2
        self.mid1 = _TimeResBlock(ch, ch, emb_dim, dropout)
        self.mid_attn = _Attention(ch) if attn_at else None
        self.mid2 = _TimeResBlock(ch, ch, emb_dim, dropout)
        self.gate = make_gate(gate, ch)

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(mults))):
            for _ in range(num_res_blocks + 1):
                blocks = [_TimeResBlock(ch + skips.pop(), base_channels * mult, emb_dim, dropout)]
                ch = base_channels * mult
                if res in attn_at:
                    blocks.append(_Attention(ch))
                self.up.append(nn.ModuleList(blocks))
            if level > 0:
                upsample = [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, ch, 3, padding=1)]
                self.up.append(nn.ModuleList(upsample))
                res *= 2
        self.norm_out = nn.GroupNorm(_groups(ch), ch)
        self.conv_out = nn.Conv2d(ch, in_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.base_channels))
        if self.label_emb is not None:
            emb = emb + self.label_emb(_labels(y, self.n_classes, x))
        h = self.conv_in(x)
        hs = [h]
        for blocks in self.down:
            h = _run(blocks, h, emb)
            hs.append(h)
        h = self.mid1(h, emb)
        if self.mid_attn is not None:
            h = self.mid_attn(h)
        h = self.mid2(h, emb)
        if self.gate is not None:
            h = self.gate(h)
        for blocks in self.up:
            if isinstance(blocks[0], _TimeResBlock):
                h = torch.cat([h, hs.pop()], dim=1)
            h = _run(blocks, h, emb)
        return self.conv_out(F.silu(self.norm_out(h)))


def _run(blocks: nn.ModuleList, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    for block in blocks:
        h = block(h, emb) if isinstance(block, (_TimeResBlock, _Attention)) else block(h)
    return h
