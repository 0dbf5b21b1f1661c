"""Throughput of qmedgen's feature-extraction wrapper against the raw extractor network, on CPU.

"Raw" = the network's forward pass alone on inputs that are already preprocessed (for Inception: float32
299x299 tensors in the network's range), batch by batch under torch.no_grad. "Wrapper" = ``extract_features``
on uint8 NHWC images at dataset resolution (28x28): conversion, 1->3 channels, antialiased resize to 299,
batching and the progress bar. Target: the wrapper within 10% of raw. Also times the domain CNN the same way.

Raw and wrapper runs are interleaved and the minimum over repeats is kept, in both wall-clock and process CPU
time; on a shared machine the CPU-time ratio is the meaningful one (it does not count time spent waiting for a
core), and one thread (the default) avoids oversubscription artefacts.

Usage: python benchmarks/bench_metrics.py [--n 32] [--batch 16] [--repeats 3] [--threads N] [--note TEXT]
Appends one line per extractor to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from qmedgen.evaluate.extractors import load_extractor
from qmedgen.evaluate.features import Extractor, extract_features


def _clock(fn) -> tuple[float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def bench(ext: Extractor, images: np.ndarray, batch: int, repeats: int) -> dict[str, float]:
    """Best-of-``repeats`` wall and CPU seconds of the raw network and of the wrapper, interleaved."""
    # the exact tensors the wrapper feeds the network (same memory layout: NHWC arrays permuted to NCHW views
    # stay channels-last, which oneDNN convolutions prefer), so only the wrapper's own work is compared
    pre = [ext.preprocess(torch.from_numpy(images[i:i + batch]).permute(0, 3, 1, 2))
           for i in range(0, len(images), batch)]

    def raw():
        with torch.no_grad():
            for x in pre:
                ext.forward(x)

    def wrapped():
        extract_features(ext, images, batch_size=batch, progress=False)

    raw(), wrapped()  # warm-up (allocations, TorchScript profiling runs)
    best = {"raw_wall": float("inf"), "raw_cpu": float("inf"), "wrap_wall": float("inf"), "wrap_cpu": float("inf")}
    for _ in range(repeats):
        for name, fn in (("raw", raw), ("wrap", wrapped)):
            wall, cpu = _clock(fn)
            best[f"{name}_wall"] = min(best[f"{name}_wall"], wall)
            best[f"{name}_cpu"] = min(best[f"{name}_cpu"], cpu)
    return best


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=32, help="images (Inception costs ~0.1-0.3 s per image on CPU)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--domain", default="embedded-bloodmnist", help="dataset of the domain extractor ('' to skip)")
    p.add_argument("--note", default="contended: shared 2-core machine, other jobs running; lead reruns quiet")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(args.n, 28, 28, 3), dtype=np.uint8)
    rows = []
    specs = [("inception", {})]
    if args.domain:
        specs.append((f"domain:{args.domain}", {"size": 28}))
    for spec, kw in specs:
        ext = load_extractor(spec, "cpu", progress=False, **kw)
        t = bench(ext, images, args.batch, args.repeats)
        cpu_over = (t["wrap_cpu"] - t["raw_cpu"]) / t["raw_cpu"] * 100
        wall_over = (t["wrap_wall"] - t["raw_wall"]) / t["raw_wall"] * 100
        rows.append((spec, t, cpu_over, wall_over))
        print(f"{spec:>28}: raw {args.n / t['raw_cpu']:8.1f} img/CPU-s, wrapper {args.n / t['wrap_cpu']:8.1f} "
              f"img/CPU-s, overhead {cpu_over:+.1f}% CPU time ({wall_over:+.1f}% wall; raw "
              f"{args.n / t['raw_wall']:.1f} img/s wall) n={args.n}, batch={args.batch}, best of {args.repeats}")
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{platform.machine()} {os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} " \
              f"thread(s)), numpy {np.__version__}, python {sys.version.split()[0]}"
    results = Path(__file__).resolve().parent / "RESULTS.md"
    with results.open("a") as fh:
        for spec, t, cpu_over, wall_over in rows:
            fh.write(f"- {stamp} | bench_metrics | {spec} feature extraction, 28x28 uint8 -> features, "
                     f"n={args.n} batch={args.batch}, best of {args.repeats}: raw {args.n / t['raw_cpu']:.1f} "
                     f"img/CPU-s, wrapper {args.n / t['wrap_cpu']:.1f} img/CPU-s, overhead {cpu_over:+.1f}% CPU time "
                     f"({wall_over:+.1f}% wall) (target <= +10%) | {machine} | {args.note}\n")
    print(f"appended to {results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
