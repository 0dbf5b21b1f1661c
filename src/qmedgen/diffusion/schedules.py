"""Noise schedules of the forward process q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I).

* ``linear``: betas evenly spaced from 1e-4 to 0.02 for T = 1000 (Ho et al. 2020), rescaled by 1000 / T so that
  other T keep the same end points of the signal-to-noise ratio;
* ``cosine``: abar_t = f(t) / f(0), f(t) = cos^2(((t / T) + s) / (1 + s) * pi / 2), s = 0.008, betas clipped at
  0.999 (Nichol & Dhariwal 2021) - the paper's schedule;
* ``tailored``: the cosine betas, plus a training-time policy that changes *which noise levels are trained and how
  much each counts* (see :mod:`qmedgen.diffusion.timesteps` and :mod:`qmedgen.diffusion.weighting`). The name
  only selects the betas here; :func:`training_policy` maps it to its sampler and weighting.

All tables are float64 on the CPU and moved to the data's device and dtype on use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from qmedgen.errors import ConfigError

SCHEDULES = ("linear", "cosine", "tailored")


def linear_betas(T: int) -> torch.Tensor:
    scale = 1000.0 / T
    return torch.linspace(scale * 1e-4, min(scale * 0.02, 0.999), T, dtype=torch.float64)


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    t = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    abar = f / f[0]
    return (1 - abar[1:] / abar[:-1]).clamp(min=1e-8, max=max_beta)


@dataclass
class NoiseSchedule:
    """Tables of a discrete-time Gaussian diffusion with T steps (t = 0 .. T-1, t = 0 is the least noisy)."""

    name: str
    betas: torch.Tensor

    def __post_init__(self) -> None:
        b = self.betas.to(torch.float64)
        if b.dim() != 1 or len(b) < 1 or not bool(((b > 0) & (b < 1)).all()):
            raise ConfigError("schedule betas must be a 1-D tensor with every value in (0, 1)")
        self.betas = b
        self.alphas = 1 - b
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        self.alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod[:-1]])
        # variance of q(x_{t-1} | x_t, x_0)
        self.posterior_variance = b * (1 - self.alphas_cumprod_prev) / (1 - self.alphas_cumprod)

    @property
    def T(self) -> int:
        return len(self.betas)

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """Signal-to-noise ratio abar_t / (1 - abar_t) at integer steps ``t``."""
        a = self.alphas_cumprod.to(t.device)[t.long()]
        return a / (1 - a)

    def _at(self, table: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``table[t]`` shaped [B, 1, 1, 1] on ``like``'s device and dtype."""
        return table.to(like.device)[t.long()].to(like.dtype).view(-1, *([1] * (like.dim() - 1)))

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps."""
        a = self._at(self.alphas_cumprod, t, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        a = self._at(self.alphas_cumprod, t, x_t)
        return (x_t - (1 - a).sqrt() * eps) / a.sqrt()


def make_schedule(name: str, T: int = 1000) -> NoiseSchedule:
    """``"linear"``, ``"cosine"`` or ``"tailored"`` (cosine betas) with ``T`` steps."""
    if name not in SCHEDULES:
        raise ConfigError(f"diffusion.schedule must be one of {SCHEDULES}, got {name!r}")
    if not isinstance(T, int) or T < 2:
        raise ConfigError(f"diffusion.timesteps must be an integer >= 2, got {T!r}")
    betas = linear_betas(T) if name == "linear" else cosine_betas(T)
    return NoiseSchedule(name, betas)


def training_policy(name: str, timestep_sampler: str, loss_weighting: str) -> tuple[str, str]:
    """(timestep sampler, loss weighting) to train with: ``tailored`` implies importance + min-SNR unless the
    config names them explicitly (anything other than ``"auto"``)."""
    default_sampler, default_weight = ("importance", "min-snr") if name == "tailored" else ("uniform", "none")
    return (
        default_sampler if timestep_sampler == "auto" else timestep_sampler,
        default_weight if loss_weighting == "auto" else loss_weighting,
    )
