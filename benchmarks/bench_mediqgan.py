"""Seconds per MediQ-GAN training iteration (n_critic critic updates + 1 generator update) on this machine.

Configurations: the paper's RetinaMNIST one (64x64, batch 10, K=3, depth 6, 16 qubits, split 0.25, style2,
n_critic 3, prototypes on), K=5 / depth 8 (ISIC2019's circuits), and batch 64. The authors' code takes 16.8 s per
iteration for the first on the project's 2-core CPU; the target is <= 0.67 s. Images are random tensors in [-1, 1]
(the cost does not depend on their content; no 64 px file is needed) and prototypes start random (2048-d, as
Inception's), so the timing excludes the one-off warm-start feature extraction. Also times the K circuits alone
(forward, and forward + backward) to show where the time goes.

    OMP_NUM_THREADS=2 python benchmarks/bench_mediqgan.py [--threads 2] [--iters 5] [--device cpu|cuda]
        [--only paper] [--note contended] [--no-append]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from _results import append_section
from qmedgen.config import from_dict
from qmedgen.train.allocator import retain_freed_memory
from qmedgen.train.distributed import Dist
from qmedgen.train.loop import BatchStream, DataSpec, TrainingData, seed_everything
from qmedgen.train.mediqgan import Config, Trainer

CONFIGS = {
    "paper": dict(batch=10, k=3, depth=6, split=0.25),
    "k5-depth8": dict(batch=10, k=5, depth=8, split=0.5),
    "batch64": dict(batch=64, k=3, depth=6, split=0.25),
}


def build(name: str, device: torch.device, amp: bool = False) -> Trainer:
    c = CONFIGS[name]
    config = from_dict(Config, {
        "data": {"name": "retinamnist", "size": 64},
        "train": {"batch_size": c["batch"], "amp": amp},
        "model": {"n_subgenerators": c["k"], "depth": c["depth"], "split_ratio": c["split"], "n_qubits": 16,
                  "decoder": "style2", "prototypes": {"enabled": True, "init": "random", "dim": 2048}},
        "gan": {"n_critic": 3},
    })
    seed_everything(0)
    n = 200
    spec = DataSpec("retinamnist", 5, 3, 64, tuple(range(5)), tuple(f"c{i}" for i in range(5)))
    images = (torch.rand(n, 3, 64, 64) * 2 - 1).to(device)
    labels = (torch.arange(n) % 5).to(device)
    data = TrainingData(images, labels, spec, np.arange(n), BatchStream(n, 0), Dist())
    return Trainer(config, spec, device, Dist(), data)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_iterations(trainer: Trainer, iters: int) -> tuple[list[float], list[float]]:
    """Wall seconds and process CPU seconds (all threads) per iteration. On a contended machine the CPU time is the
    steadier figure: a quiet machine needs about CPU / threads of wall time when the threads are kept busy."""
    trainer.train_step(0)  # warm-up
    wall, cpu = [], []
    for step in range(1, iters + 1):
        sync(trainer.device)
        t0, c0 = time.perf_counter(), time.process_time()
        trainer.train_step(step)
        sync(trainer.device)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def time_circuits(trainer: Trainer, reps: int = 3) -> tuple[float, float]:
    g = trainer.generator
    b = trainer.config.train.batch_size
    angles = torch.rand(b, g.K, g.cfg.n_qubits, device=trainer.device, requires_grad=True)
    fwd, both = [], []
    for _ in range(reps):
        with torch.no_grad():
            sync(trainer.device)
            t0 = time.perf_counter()
            g.circuit_map(angles)
            sync(trainer.device)
            fwd.append(time.perf_counter() - t0)
        sync(trainer.device)
        t0 = time.perf_counter()
        g.circuit_map(angles).sum().backward()
        sync(trainer.device)
        both.append(time.perf_counter() - t0)
    return statistics.median(fwd), statistics.median(both)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--only", choices=sorted(CONFIGS), action="append")
    ap.add_argument("--amp", action="store_true", help="mixed precision (bf16 autocast on CPU, AMP on CUDA)")
    ap.add_argument("--note", default="contended (shared 2-core machine; the lead reruns on a quiet one)")
    ap.add_argument("--no-append", action="store_true", help="print only; do not append to RESULTS.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    retain_freed_memory()  # as `qmedgen train` does (qmedgen.train.allocator)
    device = torch.device(args.device)
    lines = []
    for name in args.only or list(CONFIGS):
        trainer = build(name, device, args.amp)
        times, cpu = time_iterations(trainer, args.iters)
        cf, cfb = time_circuits(trainer)
        c = CONFIGS[name]
        med = statistics.median(times)
        line = (f"{name}: batch {c['batch']}, K={c['k']}, depth {c['depth']}, 16 qubits, split {c['split']}, 64 px, "
                f"style2, n_critic 3, prototypes on, {'amp' if args.amp else 'fp32'}, {args.threads} threads -> "
                f"{med:.3f} s/iter wall (median of {len(times)}, min {min(times):.3f}), "
                f"{statistics.median(cpu):.3f} CPU-s/iter; circuits alone "
                f"[B={c['batch']}, K={c['k']}]: forward {cf * 1e3:.1f} ms, forward+backward {cfb * 1e3:.1f} ms")
        print(line, flush=True)
        lines.append(line)
    if args.no_append:
        return
    append_section("MediQ-GAN training iteration", lines, device, args.threads, args.note,
                   " Authors' code: 16.8 s/iter (paper config, 2-core CPU); target <= 0.67 s.")


if __name__ == "__main__":
    main()
