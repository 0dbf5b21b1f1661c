"""Matplotlib helpers shared by the analysis and hardware figures (headless Agg backend, consistent saving)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from qmedgen.fileio import json_default


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


def write_json(data, path) -> Path:
    """Write JSON atomically (temporary file then rename) so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=json_default))
    os.replace(tmp, path)
    return path


