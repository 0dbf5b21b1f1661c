"""The malloc tuning of training processes: applied once on glibc Linux, skippable, harmless elsewhere."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from qmedgen.train import allocator

SCRIPT = "from qmedgen.train.allocator import retain_freed_memory as r; print(r(), r())"


def _run(env_value: str | None) -> str:
    import os

    env = {k: v for k, v in os.environ.items() if k != "QMEDGEN_KEEP_HEAP"}
    if env_value is not None:
        env["QMEDGEN_KEEP_HEAP"] = env_value
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_applied_once_on_glibc_and_can_be_turned_off():
    assert _run(None) == "True True"
    assert _run("0") == "False False"


def test_no_glibc_means_no_tuning(monkeypatch):
    monkeypatch.setattr(allocator, "_applied", False)
    monkeypatch.setattr(allocator.platform, "libc_ver", lambda: ("", ""))
    assert allocator.retain_freed_memory() is False
