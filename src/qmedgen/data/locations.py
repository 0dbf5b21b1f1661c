"""Where dataset files are looked for, in order, and where downloads go.

Search order for a file of family ``sub`` (``"medmnist"`` or ``"mnist"``):

1. ``root`` (when given) and ``root/sub``;
2. ``$QMEDGEN_DATA`` and ``$QMEDGEN_DATA/sub`` (when set);
3. ``~/.qmedgen/data`` and ``~/.qmedgen/data/sub``.

So ``root=".../shared/data"`` and ``root=".../shared/data/medmnist"`` both find ``retinamnist.npz``. Downloads go to
``root/sub`` when ``root`` is given, else to ``$QMEDGEN_DATA/sub`` or ``~/.qmedgen/data/sub``.
"""

from __future__ import annotations

import os
from pathlib import Path


def default_root() -> Path:
    """``$QMEDGEN_DATA`` when set, else ``~/.qmedgen/data``."""
    env = os.environ.get("QMEDGEN_DATA")
    return Path(env).expanduser() if env else Path.home() / ".qmedgen" / "data"


def search_dirs(root: str | os.PathLike | None, sub: str) -> list[Path]:
    """Directories searched for a dataset file, most specific first, without duplicates."""
    bases: list[Path] = []
    if root is not None:
        bases.append(Path(root).expanduser())
    env = os.environ.get("QMEDGEN_DATA")
    if env:
        bases.append(Path(env).expanduser())
    bases.append(Path.home() / ".qmedgen" / "data")
    out: list[Path] = []
    for base in bases:
        for d in (base, base / sub):
            if d not in out:
                out.append(d)
    return out


def find_file(names: list[str], root: str | os.PathLike | None, sub: str) -> Path | None:
    """The first existing file among ``names`` in :func:`search_dirs` order, or None."""
    for d in search_dirs(root, sub):
        for name in names:
            p = d / name
            if p.is_file():
                return p
    return None


def download_dir(root: str | os.PathLike | None, sub: str) -> Path:
    base = Path(root).expanduser() if root is not None else default_root()
    return base if base.name == sub else base / sub
