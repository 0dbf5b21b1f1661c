"""Multi-scale SSIM (Wang, Simoncelli & Bovik, 2003) in torch, and the MS-SSIM diversity of an image set.

Standard MS-SSIM uses 5 scales and an 11x11 Gaussian window (sigma 1.5), which needs images of at least
161 px. For small medical images the number of scales is reduced to what fits and the window shrinks to
7x7 (sigma 1.0) below 64 px; the standard per-scale weights are truncated and renormalised. At 28x28 this
gives 3 scales (28, 14, 7 px) with a 7x7 window ('valid' convolution); 64 px gives 3 scales, 128 px gives 4.
:func:`msssim_settings` returns the settings so reports can state them.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

MSSSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
K1, K2 = 0.01, 0.03


def msssim_settings(size: int) -> tuple[int, int, float]:
    """(number of scales, window size, sigma) for square images of side ``size``."""
    win, sigma = (11, 1.5) if size >= 64 else (7, 1.0)
    scales = 1
    while scales < len(MSSSIM_WEIGHTS) and size // (2 ** scales) >= win:
        scales += 1
    win = min(win, size // (2 ** (scales - 1)))
    win = win if win % 2 == 1 else win - 1
    return scales, max(win, 1), sigma


def _gauss(win: int, sigma: float, channels: int, like: torch.Tensor) -> torch.Tensor:
    """1-D Gaussian taps as a depthwise [C, 1, 1, win] kernel (applied along rows, then columns)."""
    x = torch.arange(win, dtype=like.dtype, device=like.device) - (win - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    return (g / g.sum()).expand(channels, 1, 1, win).contiguous()


def _ssim_cs(x: torch.Tensor, y: torch.Tensor, kernel: torch.Tensor, data_range: float):
    c = x.shape[1]
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2

    def blur(t):  # separable 'valid' Gaussian filter
        return F.conv2d(F.conv2d(t, kernel, groups=c), kernel.transpose(2, 3), groups=c)

    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    lum = (2 * mx * my + c1) / (mx * mx + my * my + c1)
    return (lum * cs).flatten(1).mean(1), cs.flatten(1).mean(1)


def ms_ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 255.0, scales: int | None = None) -> torch.Tensor:
    """MS-SSIM per image pair for ``[N, C, H, W]`` batches with values in [0, data_range]; result in [0, 1].

    Computed in float32 on [0, 1]-scaled images (float64 convolutions are very slow on CPU; at this scale float32
    keeps the local variances accurate to ~1e-6, far below the stabilising constants).
    """
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"ms_ssim needs two [N, C, H, W] batches of equal shape; got {list(x.shape)}, "
                         f"{list(y.shape)}")
    x, y = x.float() / data_range, y.float() / data_range
    data_range = 1.0
    n_scales, win, sigma = msssim_settings(min(x.shape[-2:]))
    n_scales = min(n_scales, scales) if scales else n_scales
    weights = torch.tensor(MSSSIM_WEIGHTS[:n_scales], dtype=x.dtype, device=x.device)
    weights = weights / weights.sum()
    kernel = _gauss(win, sigma, x.shape[1], x)
    factors = []
    for s in range(n_scales):
        ssim, cs = _ssim_cs(x, y, kernel, data_range)
        factors.append(ssim if s == n_scales - 1 else cs)
        if s < n_scales - 1:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    stacked = torch.stack(factors, 1).clamp_min(0)  # negative contrast structure -> 0 (fractional powers)
    return torch.prod(stacked ** weights, dim=1)


def random_pairs(n: int, n_pairs: int, rng: np.random.Generator) -> np.ndarray:
    """``n_pairs`` random pairs (i, j) with i != j (all pairs when there are fewer)."""
    if n < 2:
        return np.zeros((0, 2), dtype=np.int64)
    total = n * (n - 1) // 2
    if total <= n_pairs:
        i, j = np.triu_indices(n, 1)
        return np.stack([i, j], 1)
    i = rng.integers(0, n, size=n_pairs)
    j = (i + rng.integers(1, n, size=n_pairs)) % n
    return np.stack([i, j], 1)


def pair_msssim(images: np.ndarray, pairs: np.ndarray, batch: int = 256) -> np.ndarray:
    """MS-SSIM of each listed pair of uint8 NHWC images."""
    out = []
    for start in range(0, len(pairs), batch):
        p = pairs[start:start + batch]
        a = torch.from_numpy(np.ascontiguousarray(images[p[:, 0]])).permute(0, 3, 1, 2)
        b = torch.from_numpy(np.ascontiguousarray(images[p[:, 1]])).permute(0, 3, 1, 2)
        out.append(ms_ssim(a, b, data_range=255.0).double())
    return torch.cat(out).numpy() if out else np.zeros(0)
