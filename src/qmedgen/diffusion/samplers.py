"""Reverse-process samplers: DDPM ancestral sampling and DDIM, batched, with any noise source.

Both work on the epsilon prediction of ``model(x_t, t, y)``. With classifier-free guidance (``guidance != 1`` and
labels given), the prediction is eps_u + s (eps_c - eps_u), s = ``guidance``: s = 1 is the plain conditional model,
s = 0 the unconditional one, s > 1 sharpens class fidelity. The conditional and unconditional passes share one
batched forward call.

* DDPM (Ho et al. 2020): x_{t-1} ~ q(x_{t-1} | x_t, x0_hat) with the posterior variance beta~_t, over all T steps
  (or an evenly spaced subset of ``steps``, using the respaced betas of Nichol & Dhariwal 2021).
* DDIM (Song et al. 2021): ``steps`` evenly spaced steps, x_{prev} = sqrt(abar_prev) x0_hat +
  sqrt(1 - abar_prev - sigma^2) eps + sigma z with sigma = eta sqrt((1 - abar_prev)/(1 - abar_t))
  sqrt(1 - abar_t/abar_prev); eta = 0 is deterministic given x_T, eta = 1 matches DDPM's variance.

x0_hat is clipped to [-1, 1] (``clip=True``) and eps recomputed from it, which keeps few-shot models in range.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from qmedgen.diffusion.noise import GaussianNoise, NoiseSource
from qmedgen.diffusion.schedules import NoiseSchedule
from qmedgen.errors import ConfigError

SAMPLERS = ("ddpm", "ddim")
Model = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


def guided_eps(
    model: Model, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None, guidance: float, null_label: int
) -> torch.Tensor:
    """Epsilon prediction with classifier-free guidance (one batched call for both branches)."""
    if labels is None or guidance == 1.0:
        return model(x, t, labels)
    null = torch.full_like(labels, null_label)
    eps = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, null]))
    cond, uncond = eps.chunk(2)
    return uncond + guidance * (cond - uncond)


def timestep_subsequence(T: int, steps: int) -> list[int]:
    """``steps`` evenly spaced steps from T-1 down to 0 (inclusive of both ends)."""
    if not 1 <= steps <= T:
        raise ConfigError(f"sampling steps must be in 1..{T} (the schedule's T), got {steps}")
    seq = torch.linspace(0, T - 1, steps).round().long().unique().tolist()
    return sorted(seq, reverse=True)


@torch.no_grad()
def sample(
    model: Model,
    schedule: NoiseSchedule,
    shape: tuple[int, ...],
    sampler: str = "ddim",
    steps: int | None = None,
    eta: float = 0.0,
    labels: torch.Tensor | None = None,
    guidance: float = 1.0,
    null_label: int = 0,
    noise: NoiseSource | None = None,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
    clip: bool = True,
    progress: bool = False,
) -> torch.Tensor:
    """Draw ``shape[0]`` images ``[B, C, H, W]`` in [-1, 1] (clamped) by DDPM or DDIM."""
    if sampler not in SAMPLERS:
        raise ConfigError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    if eta < 0:
        raise ConfigError(f"DDIM eta must be >= 0, got {eta}")
    T = schedule.T
    steps = steps or (T if sampler == "ddpm" else 50)
    seq = timestep_subsequence(T, steps)
    noise = noise or GaussianNoise()
    device = torch.device(device)
    if labels is not None:
        labels = labels.to(device)
    abar_all = schedule.alphas_cumprod.to(device)
    x = noise(shape, device, torch.float32, generator)
    bar = tqdm(seq, disable=not progress, desc=sampler, leave=False)
    for i, t_int in enumerate(bar):
        prev = seq[i + 1] if i + 1 < len(seq) else -1
        t = torch.full((shape[0],), t_int, device=device, dtype=torch.long)
        eps = guided_eps(model, x, t, labels, guidance, null_label).float()
        abar = abar_all[t_int]
        abar_prev = abar_all[prev] if prev >= 0 else torch.ones((), dtype=abar.dtype, device=device)
        x0 = (x - (1 - abar).sqrt() * eps) / abar.sqrt()
        if clip:
            x0 = x0.clamp(-1, 1)
            eps = (x - abar.sqrt() * x0) / (1 - abar).sqrt()
        if sampler == "ddim":
            sigma = eta * ((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)).clamp(min=0).sqrt()
            direction = (1 - abar_prev - sigma**2).clamp(min=0).sqrt()
            x = abar_prev.sqrt() * x0 + direction * eps
        else:
            beta = 1 - abar / abar_prev  # respaced beta (the original beta when every step is used)
            mean = (abar_prev.sqrt() * beta * x0 + (1 - beta).sqrt() * (1 - abar_prev) * x) / (1 - abar)
            sigma = (beta * (1 - abar_prev) / (1 - abar)).clamp(min=0).sqrt()
            x = mean
        if prev >= 0 and float(sigma) > 0:
            x = x + sigma.float() * noise(shape, device, torch.float32, generator)
        x = x.float()
    return x.clamp(-1, 1)
