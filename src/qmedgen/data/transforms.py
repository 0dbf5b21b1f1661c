"""Image transforms without torchvision, for uint8 NHWC arrays and float NCHW tensors.

Tensor transforms accept ``[C, H, W]`` or ``[N, C, H, W]`` and keep the input's device and dtype. Random ones take
an optional ``torch.Generator`` (any device); with none they use the global RNG of the input's device, so
``torch.manual_seed`` makes them reproducible either way.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from qmedgen.errors import DataError

# ITU-R BT.601 luma weights, the ones Pillow uses for "L" conversion.
LUMA = (0.299, 0.587, 0.114)


def _batched(x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    if x.dim() == 3:
        return x.unsqueeze(0), True
    if x.dim() != 4:
        raise DataError(f"expected an image tensor [C, H, W] or [N, C, H, W], got shape {list(x.shape)}")
    return x, False


def _size_hw(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def resize(x: torch.Tensor, size: int | Sequence[int], mode: str = "bilinear") -> torch.Tensor:
    """Antialiased resize of a float tensor (``antialias=True`` low-passes when shrinking, avoiding aliasing)."""
    xb, single = _batched(x)
    h, w = _size_hw(size)
    if xb.shape[-2:] == (h, w):
        return x
    kwargs = {"antialias": True, "align_corners": False} if mode in ("bilinear", "bicubic") else {}
    out = F.interpolate(xb.float(), size=(h, w), mode=mode, **kwargs)
    if not x.dtype.is_floating_point:  # integer images: round and clip instead of truncating
        info = torch.iinfo(x.dtype)
        out = out.round().clamp(info.min, info.max)
    out = out.to(x.dtype)
    return out[0] if single else out


def resize_images(images: np.ndarray, size: int | Sequence[int], chunk: int = 4096) -> np.ndarray:
    """Antialiased bicubic resize of uint8 ``[N, H, W, C]`` images (in chunks, to bound memory); rounds and clips."""
    h, w = _size_hw(size)
    if images.shape[1:3] == (h, w):
        return images
    out = np.empty((len(images), h, w, images.shape[3]), dtype=np.uint8)
    for i in range(0, len(images), chunk):
        t = torch.from_numpy(np.ascontiguousarray(images[i:i + chunk])).permute(0, 3, 1, 2).float()
        r = F.interpolate(t, size=(h, w), mode="bicubic", antialias=True, align_corners=False)
        out[i:i + chunk] = r.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out


def to_unit_range(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    """uint8 [0, 255] (array or tensor; NHWC arrays become NCHW) -> float32 in [-1, 1] as ``x / 127.5 - 1``."""
    if isinstance(x, np.ndarray):
        if x.ndim == 4:
            x = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2)
        elif x.ndim == 3:
            x = torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)
        else:
            x = torch.from_numpy(np.ascontiguousarray(x))
    return x.to(torch.float32) / 127.5 - 1.0


def _with_channels(x: torch.Tensor, channels: int, name: str, convert) -> torch.Tensor:
    """``convert`` (on ``[N, C, H, W]``) applied to a 1- or 3-channel image (batch) that lacks ``channels`` channels."""
    xb, single = _batched(x)
    if xb.shape[1] == channels:
        return x
    if xb.shape[1] not in (1, 3):
        raise DataError(f"{name} expects 1 or 3 channels, got {xb.shape[1]}")
    out = convert(xb)
    return out[0] if single else out


def to_grayscale(x: torch.Tensor) -> torch.Tensor:
    """RGB -> 1 channel with BT.601 luma weights; 1-channel input is returned unchanged."""

    def luma(xb: torch.Tensor) -> torch.Tensor:
        w = torch.tensor(LUMA, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
        return (xb.float() * w).sum(dim=1, keepdim=True).to(x.dtype)

    return _with_channels(x, 1, "to_grayscale", luma)


def to_rgb(x: torch.Tensor) -> torch.Tensor:
    """1 channel -> 3 identical channels; 3-channel input is returned unchanged."""
    return _with_channels(x, 3, "to_rgb", lambda xb: xb.expand(-1, 3, -1, -1).contiguous())


def convert_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """uint8 ``[N, H, W, C]`` to 1 (BT.601 luma, rounded) or 3 (repeated) channels."""
    c = images.shape[-1]
    if channels == c:
        return images
    if channels == 3 and c == 1:
        return np.repeat(images, 3, axis=-1)
    if channels == 1 and c == 3:
        y = images.astype(np.float32) @ np.asarray(LUMA, dtype=np.float32)
        return np.clip(np.rint(y), 0, 255).astype(np.uint8)[..., None]
    raise DataError(f"cannot convert {c}-channel images to {channels} channels; expected channels 1 or 3")


def center_crop(x: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """Central ``size`` window (works on [..., H, W]); errors when the image is smaller than the crop."""
    h, w = _size_hw(size)
    H, W = x.shape[-2:]
    if h > H or w > W:
        raise DataError(f"center_crop: crop {h}x{w} is larger than the image {H}x{W}")
    top, left = (H - h) // 2, (W - w) // 2
    return x[..., top:top + h, left:left + w]


def center_crop_array(images: np.ndarray) -> np.ndarray:
    """Largest central square of uint8 ``[N, H, W, C]`` or a single ``[H, W, C]`` image."""
    H, W = images.shape[-3:-1]
    s = min(H, W)
    top, left = (H - s) // 2, (W - s) // 2
    return images[..., top:top + s, left:left + s, :]


def _coin(n: int, p: float, device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    gen_device = generator.device if generator is not None else device
    return (torch.rand(n, generator=generator, device=gen_device) < p).to(device)


def random_hflip(x: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flip each image left-right with probability ``p`` (one draw per image)."""
    xb, single = _batched(x)
    flip = _coin(len(xb), p, xb.device, generator).view(-1, 1, 1, 1)
    out = torch.where(flip, xb.flip(-1), xb)
    return out[0] if single else out


def random_vflip(x: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flip each image top-bottom with probability ``p`` (one draw per image)."""
    xb, single = _batched(x)
    flip = _coin(len(xb), p, xb.device, generator).view(-1, 1, 1, 1)
    out = torch.where(flip, xb.flip(-2), xb)
    return out[0] if single else out


class Compose:
    """Apply transforms in order; random ones receive the same ``generator`` (so a seed fixes the whole chain)."""

    def __init__(self, transforms: Sequence[Callable[..., torch.Tensor]]) -> None:
        self.transforms = [(t, _takes_generator(t)) for t in transforms]

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        for t, random in self.transforms:
            x = t(x, generator=generator) if random else t(x)
        return x


def _takes_generator(fn: Callable) -> bool:
    try:
        return "generator" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def seeded_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed`` (for reproducible random transforms)."""
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g
