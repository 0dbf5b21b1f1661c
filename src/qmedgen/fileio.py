"""Atomic file writes and JSON helpers: outputs are complete or absent, never half-written."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from qmedgen.errors import UserError


def _file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file (0o666 less the umask); mkstemp alone would give 0o600."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _file_mode()


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a uniquely named temporary path beside ``path``; on success it replaces ``path`` in one rename.

    On an exception the temporary file is removed and ``path`` keeps its old content (or stays absent), so readers
    and concurrent writers never see a partial file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        with contextlib.suppress(OSError):  # some file systems have no modes
            os.chmod(tmp_path, _FILE_MODE)
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """``open()`` for writing whose file appears at ``path`` only once closed without an exception."""
    if not mode.startswith("w"):
        raise ValueError(f"atomic_open writes a whole new file; mode must start with 'w', got {mode!r}")
    with atomic_path(path) as tmp, open(tmp, mode) as fh:
        yield fh


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` atomically."""
    with atomic_open(path) as fh:
        fh.write(text)
    return Path(path)


def write_json(path: str | Path, data: Any, *, indent: int = 2, nan_to_null: bool = False) -> Path:
    """Write JSON atomically (keys in insertion order, trailing newline).

    ``nan_to_null``: NaN and infinities become ``null``, so strict JSON readers accept the file.
    """
    text = json.dumps(data, indent=indent, default=json_default)
    if nan_to_null:
        text = json.dumps(_finite(json.loads(text)), indent=indent, allow_nan=False)
    return write_text(path, text + "\n")


def _finite(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"missing file: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from exc


def json_default(obj: Any) -> Any:
    """``json.dumps(default=...)`` for paths, tensors and NumPy scalars/arrays."""
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # tensors and arrays
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


