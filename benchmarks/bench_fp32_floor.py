"""The fp32 floor of one MediQ-GAN paper iteration on this CPU: its FLOPs against the machine's measured fp32 peak.

Counts the FLOPs of each pass of one iteration of the paper's RetinaMNIST configuration (``bench_mediqgan.py``'s
"paper") with ``torch.utils.flop_counter``: the generator forward for the n_critic * batch critic-phase fakes
(no grad), the generator forward + backward for the generator step, the critic forward + backward on real+fake, and
the gradient penalty, estimated as 3x a critic forward + backward at batch 10 (a forward, the input gradient and the
double backward; the flop counter cannot follow ``autograd.grad(create_graph=True)``). Then times a 2048^3 GEMM and a
large channels-last 3x3 convolution, the best fp32 rates oneDNN/MKL reach here, splits the iteration's op time
(torch profiler) into convolutions and the rest, and prints the floor ``FLOPs / peak + circuits``. The circuits
(fp32 by design) are timed as in ``bench_mediqgan.py``.

    OMP_NUM_THREADS=2 python benchmarks/bench_fp32_floor.py [--threads 2] [--no-append]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from _results import append_section
from bench_mediqgan import build, time_circuits


def gflop(fn) -> float:
    with FlopCounterMode(display=False) as fc:
        fn()
    return fc.get_total_flops() / 1e9


def rate(fn, flops: float, reps: int = 10) -> float:
    """GFLOP/s of ``fn`` (median-free: mean of ``reps`` after 3 warm-ups; these kernels are steady)."""
    for _ in range(3):
        fn()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return flops / ((time.perf_counter() - t0) / reps) / 1e9


CONV_OPS = ("aten::mkldnn_convolution", "aten::convolution_backward", "aten::_slow_conv2d_forward",
            "aten::_slow_conv2d_backward")


def profile_split(tr, iters: int = 3) -> tuple[float, float, int]:
    """Self CPU seconds per iteration in convolutions and in everything else (after two warm-up steps)."""
    from torch.profiler import ProfilerActivity, profile

    for step in range(2):
        tr.train_step(step)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for step in range(2, 2 + iters):
            tr.train_step(step)
    events = prof.key_averages()
    conv = sum(e.self_cpu_time_total for e in events if e.key in CONV_OPS) / 1e6 / iters
    total = sum(e.self_cpu_time_total for e in events) / 1e6 / iters
    return conv, total - conv, iters


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--note", default="quiet machine")
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tr = build("paper", torch.device("cpu"))
    g, c = tr.generator, tr.discriminator
    b, n_critic = tr.config.train.batch_size, tr.config.gan.n_critic

    def labels(n: int) -> torch.Tensor:
        return torch.arange(n) % tr.spec.n_classes

    with torch.no_grad():
        fakes = gflop(lambda: g(g.sample_latent(labels(n_critic * b)), labels(n_critic * b)))
    g_step = gflop(lambda: g(g.sample_latent(labels(b)), labels(b)).sum().backward())
    x2 = torch.randn(2 * b, 3, 64, 64)
    critic = gflop(lambda: c(x2, labels(2 * b)).sum().backward())
    x1 = torch.randn(b, 3, 64, 64, requires_grad=True)
    critic_b = gflop(lambda: c(x1, labels(b)).sum().backward())
    total = fakes + g_step + n_critic * (critic + 3 * critic_b) + critic_b

    a, m = torch.randn(2048, 2048), torch.randn(2048, 2048)
    gemm = rate(lambda: a @ m, 2 * 2048**3)
    x = torch.randn(32, 128, 32, 32).contiguous(memory_format=torch.channels_last)
    w = torch.randn(128, 128, 3, 3)
    conv = rate(lambda: F.conv2d(x, w, padding=1), 2 * 32 * 128 * 32 * 32 * 128 * 9)
    fwd, both = time_circuits(tr)
    conv_s, other_s, iters = profile_split(tr)
    circuits = n_critic * fwd + both
    floor = total / max(gemm, conv) + circuits
    lines = [
        f"FLOPs per iteration: critic-phase fakes {fakes:.1f} GFLOP, generator step {g_step:.1f}, critic updates "
        f"{n_critic} x {critic:.1f}, gradient penalty ~{n_critic} x {3 * critic_b:.1f}, critic in the generator step "
        f"{critic_b:.1f}: ~{total:.0f} GFLOP",
        f"fp32 peak on {args.threads} threads: GEMM 2048^3 {gemm:.0f} GFLOP/s, channels-last 3x3 conv "
        f"(32x128x32x32 -> 128) {conv:.0f} GFLOP/s",
        f"circuits (fp32): {n_critic} no-grad forwards {1e3 * fwd:.1f} ms each + forward+backward {1e3 * both:.1f} ms "
        f"= {circuits:.3f} s",
        f"in the iteration (torch profiler, self time, {iters} iterations): convolutions {conv_s:.3f} s "
        f"(~{total / conv_s:.0f} GFLOP/s if all FLOPs were convolutions), everything else {other_s:.3f} s",
        f"floor = FLOPs / peak + circuits = {total / max(gemm, conv):.3f} + {circuits:.3f} = {floor:.3f} s per "
        "iteration, before any memory-bound work (target 0.67 s)",
    ]
    for line in lines:
        print(line)
    if not args.no_append:
        append_section("MediQ-GAN fp32 floor (paper config)", lines, torch.device("cpu"), args.threads, args.note,
                       " benchmarks/bench_fp32_floor.py")


if __name__ == "__main__":
    main()
