"""Per-time-step weights of the epsilon-prediction loss: the "tailored" half that changes *what* is learned.

* ``none``: the plain objective ||eps - eps_theta||^2 (Ho et al. 2020), every noise level counts the same;
* ``min-snr``: min-SNR-gamma (Hang et al. 2023): w(t) = min(SNR(t), gamma) / SNR(t) for epsilon prediction,
  SNR(t) = abar_t / (1 - abar_t). Low-noise steps (SNR > gamma), whose tiny-detail denoising dominates the gradient
  and conflicts with the coarse steps, are down-weighted; steps with SNR <= gamma keep weight 1. gamma = 5 is the
  paper's default; this matters most when data are scarce and the model should spend its capacity on structure.
"""

from __future__ import annotations

import torch

from qmedgen.diffusion.schedules import NoiseSchedule
from qmedgen.errors import ConfigError

WEIGHTINGS = ("none", "min-snr")


def loss_weights(name: str, schedule: NoiseSchedule, t: torch.Tensor, gamma: float = 5.0) -> torch.Tensor:
    """Weights ``[B]`` (float32, on ``t``'s device) of the per-example epsilon MSE at steps ``t``."""
    if name == "none":
        return torch.ones(t.shape[0], device=t.device)
    if name == "min-snr":
        if gamma <= 0:
            raise ConfigError(f"diffusion.min_snr_gamma must be > 0, got {gamma}")
        snr = schedule.snr(t)
        return (snr.clamp(max=gamma) / snr).float()
    raise ConfigError(f"diffusion.loss_weighting must be one of {(*WEIGHTINGS, 'auto')}, got {name!r}")
