"""Trains the toy family with the shared loop; run directly (1 process) or under torchrun (N processes)."""

from __future__ import annotations

import os
import sys

import toy_family

from qmedgen.config import from_dict
from qmedgen.train.distributed import shutdown
from qmedgen.train.loop import run_training

if __name__ == "__main__":
    out = sys.argv[1]
    cfg = from_dict(
        toy_family.Config,
        {
            "data": {"name": "embedded-bloodmnist", "n_per_class": 3},
            "train": {"steps": 5, "batch_size": 8, "checkpoint_every": 5, "sample_every": 0, "out_dir": out,
                      "device": "cpu"},
        },
    )
    run_dir = run_training(toy_family.FAMILY, cfg, progress=False)
    shutdown()
    if os.environ.get("RANK", "0") == "0":  # one line on stdout: two ranks' prints can interleave in one pipe
        print(run_dir, flush=True)
