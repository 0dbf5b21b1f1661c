"""A labelled grid of real images, one row per class, to eyeball a dataset before training on it."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from qmedgen.data.dataset import ImageDataset
from qmedgen.data.fewshot import primary_labels

MIN_CELL = 56  # pixels: small images are enlarged (nearest neighbour) so a 28x28 tile stays visible
LABEL_WIDTH = 190
GAP = 2


def class_grid(ds: ImageDataset, n_per_class: int = 8, seed: int = 0) -> Image.Image:
    """RGB image: row k shows up to ``n_per_class`` random images of class k with ``"k: name (count)"`` at left."""
    y = primary_labels(ds.labels)
    names = list(ds.info.class_names)
    if ds.labels.ndim == 2:
        names = [*names, "no finding"]
    size = ds.images.shape[1]
    scale = max(1, math.ceil(MIN_CELL / size))
    cell = size * scale
    rng = np.random.default_rng(seed)
    rows = len(names)
    width = LABEL_WIDTH + n_per_class * (cell + GAP)
    canvas = Image.new("RGB", (width, rows * (cell + GAP)), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for k, name in enumerate(names):
        members = np.flatnonzero(y == k)
        pick = np.sort(rng.permutation(members)[:n_per_class])
        top = k * (cell + GAP)
        text = f"{k}: {name}"
        text = text if len(text) <= 26 else text[:23] + "..."
        draw.text((4, top + cell // 2 - 12), text, fill="black", font=font)
        draw.text((4, top + cell // 2 + 2), f"n={len(members)}", fill="gray", font=font)
        for j, i in enumerate(pick):
            tile = ds.images[i]
            img = Image.fromarray(tile[..., 0] if tile.shape[-1] == 1 else tile).convert("RGB")
            if scale > 1:
                img = img.resize((cell, cell), Image.Resampling.NEAREST)
            canvas.paste(img, (LABEL_WIDTH + j * (cell + GAP), top))
    return canvas


def save_preview(ds: ImageDataset, out: str | os.PathLike, n_per_class: int = 8, seed: int = 0) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    class_grid(ds, n_per_class, seed).save(out)
    return out
