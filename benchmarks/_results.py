"""Appending a dated, machine-stamped section to benchmarks/RESULTS.md (shared by the bench_*.py scripts)."""

from __future__ import annotations

import platform
from datetime import datetime, timezone
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def append_section(
    title: str, lines: list[str], device: torch.device, threads: int, note: str, extra: str = ""
) -> None:
    """Write ``### title (date UTC)``, a machine/versions line with ``note`` and ``extra``, then one bullet per line."""
    dev = (torch.cuda.get_device_name(device) if device.type == "cuda"
           else f"{platform.processor() or platform.machine()}, {threads} threads")
    header = (f"\n### {title} ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)\n"
              f"machine: {platform.node()} ({dev}); torch {torch.__version__}; python {platform.python_version()}; "
              f"{note}.{extra}\n\n")
    with RESULTS.open("a") as f:
        f.write(header + "".join(f"- {line}\n" for line in lines))
    print(f"appended to {RESULTS}")
