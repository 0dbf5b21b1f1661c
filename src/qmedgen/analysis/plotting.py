"""Matplotlib helpers shared by the analysis and hardware figures (headless Agg backend, consistent saving)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt


def new_figure(width: float = 6.0, height: float = 4.2, ncols: int = 1):
    """A figure and its axes (one axis unless ``ncols`` > 1)."""
    fig, ax = plt.subplots(1, ncols, figsize=(width * ncols, height))
    return fig, ax


def save_figure(fig, out_dir, name: str) -> Path:
    """Save ``fig`` as ``out_dir/name`` (tight layout, 120 dpi) and close it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


