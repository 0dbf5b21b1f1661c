"""Training and sampling speed of every baseline family at its shipped preset configuration.

For each baseline the ``baseline-<name>-<protocol>`` preset (default protocol ``fewshot``: 64x64 RGB, 5 classes,
batch 10 for the GANs, 64 for DDPM) is built as in a real run; one training step (= one generator update with its
n_critic discriminator updates, or one denoiser update) is timed after a warm-up step, then sampling of 50
images (DDPM: the preset's DDIM-50 sampler). Images are random tensors in [-1, 1] (cost does not depend on their
content, so no 64 px data file is needed); MosaiQ fits its PCA on them as it would on real images.

    OMP_NUM_THREADS=2 python benchmarks/bench_baselines.py [--protocol fewshot] [--only dcgan] [--iters 3]
        [--size 28] [--device cpu|cuda] [--threads 2] [--note contended] [--no-append]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import numpy as np
import torch

from _results import append_section
from qmedgen.data.catalog import GENERATED_SIZES
from qmedgen.train.allocator import retain_freed_memory
from qmedgen.train.api import resolve_config
from qmedgen.train.distributed import Dist
from qmedgen.train.loop import BatchStream, DataSpec, TrainingData, seed_everything

NAMES = ("dcgan", "wgan-gp", "fastgan", "patch-qgan", "mosaiq", "ddpm")


def build(name: str, protocol: str, size: int | None, device: torch.device):
    overrides = ["train.device=" + device.type]
    if size is not None:
        overrides.append(f"data.size={size}")
        if name == "ddpm":
            overrides.append(f"model.attention_resolutions=[{7 if size == 28 else size // 4}]")
    family, config = resolve_config(f"baseline-{name}-{protocol}", overrides)
    seed_everything(0)
    s, n = config.data.size, 200
    spec = DataSpec("bench", 5, 3, s, tuple(range(5)), tuple(f"c{i}" for i in range(5)))
    images = (torch.rand(n, 3, s, s) * 2 - 1).to(device)
    labels = (torch.arange(n) % 5).to(device)
    data = TrainingData(images, labels, spec, np.arange(n), BatchStream(n, 0), Dist())
    return config, family.trainer_cls(config, spec, device, Dist(), data)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--protocol", default="fewshot", help="preset suffix: fewshot or retinamnist (same networks)")
    ap.add_argument("--only", choices=NAMES, action="append")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--size", type=int, choices=GENERATED_SIZES, help="override the presets' 64 px")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sample", type=int, default=50, help="images to sample for the sampling speed")
    ap.add_argument("--note", default="contended (shared 2-core machine, ~6 engineers; the lead reruns on a quiet one)")
    ap.add_argument("--no-append", action="store_true", help="print only; do not append to RESULTS.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    retain_freed_memory()  # as `qmedgen train` does (qmedgen.train.allocator)
    device = torch.device(args.device)
    lines = []
    for name in args.only or NAMES:
        config, trainer = build(name, args.protocol, args.size, device)
        trainer.train_step(0)  # warm-up
        times = [timed(functools.partial(trainer.train_step, step), device) for step in range(1, args.iters + 1)]
        labels = (torch.arange(args.sample) % 5).to(device)
        g = torch.Generator(device=device).manual_seed(0)
        t_sample = timed(functools.partial(trainer.sample, labels, generator=g), device)
        med = statistics.median(times)
        counts = trainer.parameter_counts()
        params = ", ".join(f"{k} {v:,}" for k, v in counts.items())
        b = config.train.batch_size
        line = (f"{name} (preset baseline-{name}-{args.protocol}, {config.data.size} px, batch {b}): "
                f"{med:.3f} s/step (median of {len(times)}, min {min(times):.3f}) = {b / med:.1f} real images/s; "
                f"sampling {args.sample / t_sample:.1f} images/s; params: {params}")
        print(line, flush=True)
        lines.append(line)
    if args.no_append:
        return
    append_section("Baselines: training speed", lines, device, args.threads, args.note,
                   (" One step = one generator update (with its n_critic critic updates) or one denoiser "
                    "update. benchmarks/bench_baselines.py"))


if __name__ == "__main__":
    main()
