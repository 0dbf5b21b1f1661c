"""Data-parallel training with torchrun: 2 CPU processes (gloo) match one process with the same global batch.

Tolerance: 1e-5 absolute on every parameter after 5 Adam steps. The two runs differ only in the order of floating
point additions (each rank averages its half of the batch, then the halves are averaged by all-reduce).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from qmedgen.train.distributed import Dist

HERE = Path(__file__).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "checkpoints" / "step-00000005" / "weights.safetensors"))


def _run(cmd: list[str], tmp: Path) -> Path:
    env = {**os.environ, "PYTHONPATH": str(HERE), "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return Path(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path):
    single = _run([sys.executable, str(HERE / "ddp_worker.py"), str(tmp_path / "single")], tmp_path)
    multi = _run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
         "--master_port", str(_free_port()), str(HERE / "ddp_worker.py"), str(tmp_path / "multi")],
        tmp_path,
    )
    a, b = _weights(single), _weights(multi)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=0, msg=key)
    # only rank 0 wrote: one run directory
    assert len(list((tmp_path / "multi").iterdir())) == 1


def test_local_slices_cover_the_batch():
    for world in (1, 2, 3, 4):
        slices = [Dist(rank=r, world_size=world).local_slice(10) for r in range(world)]
        covered = [i for s in slices for i in range(10)[s]]
        assert covered == list(range(10))
