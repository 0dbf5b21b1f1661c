"""Numbered run directories and the files every run writes (atomically, so a kill never leaves half a file).

Layout of ``runs/00007-mediqgan-retinamnist/``::

    config.json        resolved config (family + every option)
    environment.json   versions, device, seed, command line
    indices.json       which images of which split were trained on
    status.json        running | finished | diverged | interrupted, and the last step
    metrics.jsonl      one JSON object per logged step
    checkpoints/       step-00000500/ ... and latest.json
    samples/           grid-step-00000500.png ...
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any

import torch

from qmedgen import __version__
from qmedgen.errors import UserError
from qmedgen.fileio import atomic_path, json_default

RUN_NAME = re.compile(r"^(\d{5})-")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:60] or "run"


def create_run_dir(out_dir: str | Path, name: str) -> Path:
    """Create ``out_dir/NNNNN-name`` with the next free number; never reuses an existing directory."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        numbers = [int(m.group(1)) for p in out_dir.iterdir() if (m := RUN_NAME.match(p.name))]
        path = out_dir / f"{max(numbers, default=-1) + 1:05d}-{_slug(name)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:  # another process took the number: try the next one
            continue
    raise UserError(f"could not create a new run directory in {out_dir}")


def list_runs(out_dir: str | Path) -> list[Path]:
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    return sorted(p for p in out_dir.iterdir() if p.is_dir() and RUN_NAME.match(p.name))


def environment_info(device: torch.device, seed: int, world_size: int = 1) -> dict[str, Any]:
    """What is needed to reproduce a run: versions, device, seed, command line."""
    info: dict[str, Any] = {
        "qmedgen": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "world_size": world_size,
        "seed": seed,
        "argv": sys.argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if device.type == "cuda":
        info["cuda"] = torch.version.cuda
        info["gpu"] = torch.cuda.get_device_name(device)
    for pkg in ("numpy", "pennylane", "qiskit", "qiskit_aer"):
        module = sys.modules.get(pkg)
        if module is not None:
            info[pkg] = getattr(module, "__version__", "?")
    return info


class MetricsLog:
    """Append-only JSONL metrics log; each line is flushed so a kill loses at most the line being written."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def truncate_after(self, step: int) -> None:
        """Drop lines logged after ``step`` (used on resume, so the log matches an uninterrupted run)."""
        if not self.path.exists():
            return
        keep = [ln for ln in self.path.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= step]
        with atomic_path(self.path) as tmp:
            tmp.write_text("".join(ln + "\n" for ln in keep))

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as fh:
            fh.write(json.dumps(record, default=json_default) + "\n")
            fh.flush()

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(ln) for ln in self.path.read_text().splitlines() if ln.strip()]
