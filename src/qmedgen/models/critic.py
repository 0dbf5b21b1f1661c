"""Conditional critic (WGAN-GP) and discriminator (BCE) with class projection, for MediQ-GAN.

As in the MediQ-GAN code: stride-2 4x4 convolutions 64 -> 128 -> 256 -> 512 with LeakyReLU(0.2), global average
pooling, a linear score plus a class-projection term ``<W h, embed(y)>`` (Miyato & Koyama 2018). No batch
normalisation: the gradient penalty is taken per sample, and batch statistics would couple samples.

Adapted to the input size: 28/32 px use 3 down-sampling convolutions (28 -> 14 -> 7 -> 3, 32 -> 16 -> 8 -> 4),
64 px the paper's 4, 128 px 5 (the extra one keeps 512 channels), so the last map is at most 4x4 before pooling.
The same network serves both losses; ``kind`` only records which loss it is trained with (``"wgan-gp"`` returns an
unbounded score, ``"bce"`` a logit).

The activations are :class:`PenaltyLeakyReLU`: the same function and gradient as ``nn.LeakyReLU``, with a cheaper
double backward (see there), which the gradient penalty needs every critic update.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from qmedgen.errors import ConfigError

CRITIC_KINDS = ("wgan-gp", "bce")
_DOWNS = {28: 3, 32: 3, 64: 4, 128: 5}


class _LeakyReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, slope: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.slope = slope
        ctx.set_materialize_grads(False)  # "no gradient" must stay None, not become a pass over zeros
        return torch.nn.functional.leaky_relu(x, slope)

    @staticmethod
    def backward(ctx, grad: torch.Tensor | None) -> tuple[torch.Tensor | None, None]:  # type: ignore[override]
        if grad is None:
            return None, None
        (x,) = ctx.saved_tensors
        # differentiable in ``grad`` only: the input enters through its sign, whose derivative is zero
        return torch.ops.aten.leaky_relu_backward(grad, x.detach(), ctx.slope, False), None


class PenaltyLeakyReLU(nn.Module):
    """LeakyReLU whose backward is differentiable in the incoming gradient only.

    Why: the gradient penalty differentiates ``grad_x D`` with respect to the weights. In a network of convolutions,
    linear maps and LeakyReLUs, ``grad_x D`` depends on the activations only through their signs (derivative zero),
    but ``nn.LeakyReLU``'s double backward still sends a zero tensor back into the forward graph of the
    interpolates, and autograd then runs a full backward pass of zeros through it. Cutting that edge gives the
    same values and gradients (bit for bit, tested) without the wasted pass: the penalty and its weight gradient
    take ~40 % less time (64 px critic, benchmarks/RESULTS.md).
    """

    def __init__(self, negative_slope: float = 0.2) -> None:
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _LeakyReLU.apply(x, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class ConditionalCritic(nn.Module):
    """``critic(x, y) -> [B]`` scores; x ``[B, C, S, S]`` in ``[-1, 1]``, y int64 ``[B]``."""

    def __init__(
        self,
        n_classes: int,
        image_size: int = 64,
        channels: int = 3,
        widths: tuple[int, ...] = (64, 128, 256, 512),
        embed_dim: int = 128,
        kind: str = "wgan-gp",
    ) -> None:
        super().__init__()
        if kind not in CRITIC_KINDS:
            raise ConfigError(f"model.critic must be one of {CRITIC_KINDS}, got {kind!r}")
        if image_size not in _DOWNS:
            raise ConfigError(f"critic: image size must be one of {sorted(_DOWNS)}, got {image_size}")
        if n_classes < 1:
            raise ConfigError(f"critic: n_classes must be >= 1, got {n_classes}")
        if not widths or any(w < 1 for w in widths):
            raise ConfigError(f"model.critic_channels must be positive integers, got {widths}")
        self.kind, self.n_classes, self.image_size = kind, n_classes, image_size
        n_down = _DOWNS[image_size]
        chans = [widths[min(i, len(widths) - 1)] for i in range(n_down)]
        layers: list[nn.Module] = []
        c_in = channels
        for c_out in chans:
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=False), PenaltyLeakyReLU(0.2)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.score = nn.Linear(c_in, 1)
        self.project = nn.Linear(c_in, embed_dim, bias=False)
        self.embed = nn.Embedding(n_classes, embed_dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.features(x).mean(dim=(2, 3))
        return self.score(h).squeeze(-1) + (self.project(h) * self.embed(y)).sum(-1)


def gradient_penalty(
    critic: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    y: torch.Tensor,
    generator: torch.Generator | None = None,
    in_autocast: bool = False,
) -> torch.Tensor:
    """WGAN-GP penalty ``E[(||grad_x D(x_hat, y)||_2 - 1)^2]`` on random interpolates (Gulrajani et al. 2017).

    Computed in float32 outside autocast by default (the double backward is sensitive to float16).
    ``in_autocast=True`` keeps the caller's autocast region instead: with bfloat16 (what ``train.amp`` uses) the
    penalty agreed with float32 within 0.1 % and its weight gradient within 1.0-1.6 % on the 64 px critic (the
    bfloat16 error of the adversarial term's gradient is 1.5 %), and a critic update took a third less time.
    """
    alpha = torch.rand(real.shape[0], 1, 1, 1, generator=generator, device=real.device, dtype=torch.float32)
    x_hat = (alpha * real.float() + (1 - alpha) * fake.float()).requires_grad_(True)
    region = contextlib.nullcontext() if in_autocast else torch.autocast(device_type=real.device.type, enabled=False)
    with region:
        score = critic(x_hat, y)
        (grad,) = torch.autograd.grad(score.float().sum(), x_hat, create_graph=True)
    return ((grad.float().flatten(1).norm(2, dim=1) - 1) ** 2).mean()
