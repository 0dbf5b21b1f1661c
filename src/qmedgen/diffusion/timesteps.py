"""Which time steps (noise levels) a training batch visits: uniform, or loss-aware importance sampling.

The ``importance`` sampler is the "tailored" half that changes *where* training spends its updates. It follows the
loss-aware sampler of Nichol & Dhariwal (2021, sec. 3.3), adapted to few-shot training: the T steps are grouped into
``n_bins`` equal bins (T = 1000 steps with 10 losses each would need 10,000 examples before it could start; 20 bins
need 200), each bin keeps its last ``history`` per-example losses, and once every bin is full a step is drawn with
probability

    p(bin) = (1 - u) * sqrt(mean(L^2 | bin)) / sum_b sqrt(mean(L^2 | b)) + u / n_bins,   u = ``uniform_mix``,

then uniformly within its bin. Training then sees more examples at the noise levels whose loss is large and
noisy. Each example carries the weight 1 / (T p(t)), so the expected weighted loss equals the uniform-t objective
(the sampler lowers its variance; it does not change what is learned). Before every bin is full it is uniform.
Random numbers come from torch's global RNG (checkpointed by the shared loop); the loss history is in
:meth:`state_dict`, plain JSON, for exact resume.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import torch

from qmedgen.errors import ConfigError

SAMPLERS = ("uniform", "importance")


class UniformTimesteps:
    """t ~ U{0, ..., T-1}, weight 1."""

    name = "uniform"

    def __init__(self, T: int) -> None:
        self.T = T

    def sample(self, batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.randint(self.T, (batch,), device=device)
        return t, torch.ones(batch, device=device)

    def update(self, t: torch.Tensor, losses: torch.Tensor) -> None:
        del t, losses

    def probabilities(self) -> torch.Tensor:
        return torch.full((self.T,), 1.0 / self.T, dtype=torch.float64)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        del state


class ImportanceTimesteps(UniformTimesteps):
    """Loss-aware, binned importance sampling of time steps (see the module docstring)."""

    name = "importance"

    def __init__(self, T: int, n_bins: int = 20, history: int = 10, uniform_mix: float = 0.1) -> None:
        super().__init__(T)
        if not 1 <= n_bins <= T:
            raise ConfigError(f"diffusion.importance_bins must be in 1..T={T}, got {n_bins}")
        if history < 1:
            raise ConfigError(f"diffusion.importance_history must be >= 1, got {history}")
        if not 0.0 < uniform_mix <= 1.0:
            raise ConfigError(f"diffusion.importance_uniform_mix must be in (0, 1], got {uniform_mix}")
        self.n_bins, self.history, self.uniform_mix = n_bins, history, uniform_mix
        edges = torch.linspace(0, T, n_bins + 1).round().long()
        self.starts, self.widths = edges[:-1], edges[1:] - edges[:-1]
        self._losses: list[deque[float]] = [deque(maxlen=history) for _ in range(n_bins)]

    @property
    def warm(self) -> bool:
        return all(len(h) == self.history for h in self._losses)

    def bin_probabilities(self) -> torch.Tensor:
        if not self.warm:
            return self.widths.double() / self.T
        rms = torch.tensor([sum(v * v for v in h) / len(h) for h in self._losses], dtype=torch.float64).sqrt()
        p = rms / rms.sum() if float(rms.sum()) > 0 else torch.full_like(rms, 1.0 / self.n_bins)
        return (1 - self.uniform_mix) * p + self.uniform_mix / self.n_bins

    def probabilities(self) -> torch.Tensor:
        """Probability of every step t (within a bin, uniform)."""
        per_bin = self.bin_probabilities() / self.widths.double()
        return per_bin.repeat_interleave(self.widths)

    def sample(self, batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.warm:
            return super().sample(batch, device)
        p_bin = self.bin_probabilities()
        u = torch.rand(batch, 2, dtype=torch.float64)  # global CPU RNG: identical on every rank
        cdf = torch.cumsum(p_bin, 0)
        b = torch.searchsorted(cdf, u[:, 0] * cdf[-1], right=True).clamp(max=self.n_bins - 1)
        t = self.starts[b] + (u[:, 1] * self.widths[b]).long().clamp(max=self.widths[b] - 1)
        p_t = p_bin[b] / self.widths[b].double()
        weights = 1.0 / (self.T * p_t)
        return t.to(device), weights.to(device=device, dtype=torch.float32)

    def update(self, t: torch.Tensor, losses: torch.Tensor) -> None:
        """Record per-example losses (detached) at their time steps."""
        bins = torch.searchsorted(self.starts, t.detach().cpu().long(), right=True) - 1
        for b, v in zip(bins.tolist(), losses.detach().float().cpu().tolist()):
            self._losses[b].append(float(v))

    def state_dict(self) -> dict[str, Any]:
        return {"losses": [list(h) for h in self._losses]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("losses")
        if saved is None:
            return
        if len(saved) != self.n_bins:
            raise ConfigError(f"importance sampler state has {len(saved)} bins, the config has {self.n_bins}")
        self._losses = [deque((float(v) for v in h), maxlen=self.history) for h in saved]


def make_timestep_sampler(
    name: str, T: int, n_bins: int = 20, history: int = 10, uniform_mix: float = 0.1
) -> UniformTimesteps:
    if name not in SAMPLERS:
        raise ConfigError(f"diffusion.timestep_sampler must be one of {(*SAMPLERS, 'auto')}, got {name!r}")
    if name == "uniform":
        return UniformTimesteps(T)
    return ImportanceTimesteps(T, n_bins, history, uniform_mix)
