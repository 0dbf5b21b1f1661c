"""Opt-in download of official dataset files: streamed to a temporary file, MD5-checked, then renamed into place.

Nothing in qmedgen downloads unless asked (``download=True`` or ``qmedgen data download``); a failed or
interrupted download never leaves a partial file under the final name.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from qmedgen.errors import DataError
from qmedgen.fileio import atomic_open


def download_file(url: str, dest: str | os.PathLike, md5: str | None, progress: bool = True,
                  timeout: float = 60.0) -> Path:
    """Fetch ``url`` to ``dest`` atomically; raise :class:`DataError` on network failure or MD5 mismatch."""
    dest = Path(dest)
    h = hashlib.md5(usedforsecurity=False)
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "qmedgen"})
        with atomic_open(dest, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            bar = _progress(total, dest.name) if progress else None
            while chunk := resp.read(1 << 20):
                out.write(chunk)
                h.update(chunk)
                if bar is not None:
                    bar.update(len(chunk))
            if bar is not None:
                bar.close()
            if md5 is not None and h.hexdigest() != md5:  # inside the block: the file is then never renamed
                raise DataError(f"download of {url} gave MD5 {h.hexdigest()}, expected {md5}; nothing was saved to "
                                f"{dest}")
        return dest
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise DataError(
            f"could not download {url} to {dest}: {exc}. Download it by hand and put it at {dest}."
        ) from exc


def _progress(total: int | None, name: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=f"download {name}")
