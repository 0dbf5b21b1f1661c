"""Exponential moving average of a network's weights, used for sampling (Ho et al. 2020; decay 0.999 in the paper).

Shared by the diffusion trainers and the GAN trainers (:mod:`qmedgen.train.gan`).
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def ema_copy(model: nn.Module) -> nn.Module:
    """A frozen copy of ``model`` to hold the averaged weights (checkpointed like any other module)."""
    ema = copy.deepcopy(model)
    ema.requires_grad_(False)
    return ema.eval()


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float, step: int | None = None) -> float:
    """ema <- d * ema + (1 - d) * model, with the warm-up d = min(decay, (1 + step) / (10 + step)) when ``step`` is
    given, so that short few-shot runs are not dominated by the random initialisation. Buffers are copied.
    Returns the decay used."""
    d = decay if step is None else min(decay, (1 + step) / (10 + step))
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm.detach(), 1.0 - d)
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.copy_(bm)
    return d
