"""Image conversion and writing shared by training grids, ``qmedgen sample`` and previews.

Model outputs live in [-1, 1] and are mapped to pixels by (x + 1) / 2, never min-max per batch (which would change
the statistics every metric sees).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from qmedgen.fileio import atomic_open, atomic_path


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats -> uint8 via ``((x + 1) / 2).clamp(0, 1) * 255`` rounded, any layout, on ``x``'s device.

    The one quantiser: real and generated images reach every metric through it (never per-batch min-max).
    """
    return (((x.detach().float() + 1) / 2).clamp(0, 1) * 255).round().to(torch.uint8)


def to_pixels(images: torch.Tensor) -> np.ndarray:
    """[N, C, H, W] floats in [-1, 1] -> uint8 [N, H, W, C] NumPy pixels (on the CPU)."""
    return to_uint8(images.detach().cpu()).permute(0, 2, 3, 1).numpy()


def grid(images: np.ndarray, nrow: int, pad: int = 2, pad_value: int = 255) -> np.ndarray:
    """Tile uint8 [N, H, W, C] images row by row (``nrow`` images per row) into one uint8 image."""
    n, h, w, c = images.shape
    rows = max(1, -(-n // nrow))
    out = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), pad_value, dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        out[top : top + h, left : left + w] = images[i]
    return out


def save_png(image: np.ndarray, path: str | Path, scale: int = 1) -> Path:
    """Write a uint8 [H, W, C] image as PNG atomically, optionally upscaled (nearest) for legibility."""
    path = Path(path)
    pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    if scale > 1:
        pil = pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST)
    with atomic_path(path) as tmp:
        pil.save(tmp, format="PNG")
    return path


def class_grid(images: np.ndarray, labels: np.ndarray, class_names: list[str], scale: int = 2) -> Image.Image:
    """One row per class (labelled on the left), images of that class along the row."""
    rows = []
    per_row = max(int((labels == k).sum()) for k in range(len(class_names))) if len(labels) else 1
    h, w, c = images.shape[1:]
    for k in range(len(class_names)):
        sel = images[labels == k]
        if len(sel) == 0:
            continue
        row = np.full((per_row, h, w, c), 255, dtype=np.uint8)
        row[: len(sel)] = sel[:per_row]
        rows.append((class_names[k], grid(row, nrow=per_row, pad=2)))
    if not rows:
        raise ValueError("no images to put in a grid")
    label_w = 90
    body = np.concatenate([r for _, r in rows], axis=0)
    body_img = Image.fromarray(body[..., 0] if c == 1 else body).convert("RGB")
    body_img = body_img.resize((body_img.width * scale, body_img.height * scale), Image.NEAREST)
    canvas = Image.new("RGB", (body_img.width + label_w, body_img.height), "white")
    canvas.paste(body_img, (label_w, 0))
    draw = ImageDraw.Draw(canvas)
    row_h = body_img.height / len(rows)
    for i, (name, _) in enumerate(rows):
        draw.text((4, int(i * row_h + row_h / 2 - 6)), name[:14], fill="black")
    return canvas


def save_class_grid(
    images: np.ndarray, labels: np.ndarray, class_names: list[str], path: str | Path, scale: int = 2
) -> Path:
    """Write :func:`class_grid` as a PNG, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        class_grid(images, labels, class_names, scale).save(tmp, format="PNG")
    return path


def write_samples(images: np.ndarray, labels: np.ndarray, out: str | Path, pngs: bool = True) -> Path:
    """The samples format (``qmedgen sample``; read by :mod:`qmedgen.evaluate.samples`): OUT/samples.npz (uint8
    images [N, H, W, C], int64 labels) and, with ``pngs``, OUT/class_<k>/<i:05d>.png per class."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if pngs:
        counters: dict[int, int] = {}
        for img, lab in zip(images, labels):
            k = int(lab)
            i = counters.get(k, 0)
            counters[k] = i + 1
            save_png(img, out / f"class_{k}" / f"{i:05d}.png")
    with atomic_open(out / "samples.npz", "wb") as fh:
        np.savez_compressed(fh, images=images, labels=labels.astype(np.int64))
    return out
