"""MD5 checks of dataset files, remembered by (path, size, mtime) so a 35 MB file is hashed once, not per load.

The cache is a small JSON file in ``$QMEDGEN_CACHE`` (default ``~/.qmedgen/cache``) plus an in-process dict. A file
that is replaced or touched gets a new size or mtime and is hashed again. The cache only stores digests we computed
ourselves; if it cannot be written (read-only home) we simply hash again next time.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from qmedgen.errors import DataError
from qmedgen.fileio import atomic_open

_MEMO: dict[str, str] = {}
_CHUNK = 1 << 20


def cache_dir() -> Path:
    """Directory for qmedgen's small caches: ``$QMEDGEN_CACHE`` or ``~/.qmedgen/cache``."""
    env = os.environ.get("QMEDGEN_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".qmedgen" / "cache"


def _key(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def _cache_file() -> Path:
    return cache_dir() / "md5.json"


def _read_cache() -> dict[str, str]:
    try:
        data = json.loads(_cache_file().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_cache(entries: dict[str, str]) -> None:
    target = _cache_file()
    try:
        with atomic_open(target) as fh:
            json.dump(entries, fh, indent=0, sort_keys=True)
    except OSError:
        pass  # caching is an optimisation only


def md5_bytes(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def file_md5(path: str | os.PathLike, use_cache: bool = True) -> str:
    """MD5 hex digest of a file; cached by absolute path, size and modification time."""
    path = Path(path)
    key = _key(path)
    if use_cache:
        if key in _MEMO:
            return _MEMO[key]
        stored = _read_cache().get(key)
        if stored:
            _MEMO[key] = stored
            return stored
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    digest = h.hexdigest()
    if use_cache:
        _MEMO[key] = digest
        prefix = key.rsplit("|", 2)[0] + "|"
        entries = {k: v for k, v in _read_cache().items() if not k.startswith(prefix)}  # drop stale versions
        entries[key] = digest
        _write_cache(entries)
    return digest


def verify_md5(path: str | os.PathLike, expected: str, what: str = "") -> None:
    """Raise :class:`DataError` naming the file, the expected and the actual MD5 when they differ."""
    path = Path(path)
    got = file_md5(path)
    if got != expected:
        size = path.stat().st_size
        raise DataError(
            f"{path}: MD5 mismatch{' for ' + what if what else ''}: expected the official {expected}, got {got} "
            f"({size} bytes). The file is corrupt, truncated or not the official release; delete it and download "
            f"it again (`qmedgen data download`), or pass verify=False to load it anyway."
        )
