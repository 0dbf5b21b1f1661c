"""Quantum diffusion: training-step speed vs the reference PennyLane loop, DDIM sampling speed, schedule ablation.

* ``speed``: seconds per training step (forward, backward, Adam, EMA) at batch 64, 28x28, the paper's lightweight
  U-Net with the 16-qubit, 3-layer bottleneck circuit, next to the classical counterparts (gate none, matched-SE).
* ``reference``: the reference method of the paper's public code, one PennyLane ``default.qubit`` QNode call per
  sample with ``diff_method="backprop"``, for the same circuit (RY encoding, 3 x [RZ, RY, CNOT chain], <Z>): a few
  samples are timed (forward + backward) and extrapolated to the batch of 64, plus the classical U-Net's own step.
  The authors report about 22 s per step on one core; the target is >= 20x faster.
* ``sampling``: DDIM-50 (eta 0) sampling of 1,000 28x28 images with the quantum model; target < 5 minutes on CPU.
* ``ablation`` (opt-in, minutes): linear vs cosine vs cosine+min-SNR vs tailored on 50 MNIST images of one digit
  (gate none, so only the schedule differs), scored by pixel-space KID (polynomial-kernel MMD on raw pixels, the
  ``qmedgen.evaluate.metrics.kid`` estimator) of 500 DDIM-50 samples against the digit's official test images.
* ``gates`` (opt-in, slow on CPU): the same protocol for the quantum gate vs no gate vs the matched SE gate.

    OMP_NUM_THREADS=2 python benchmarks/bench_qdiffusion.py [--parts speed,reference,sampling] [--threads 2]
        [--iters 3] [--device cpu|cuda] [--n-images 1000] [--ablation-steps 600] [--note ...] [--no-append]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from _results import append_section
from qmedgen.config import from_dict
from qmedgen.train.allocator import retain_freed_memory
from qmedgen.train.distributed import Dist
from qmedgen.train.loop import BatchStream, DataSpec, TrainingData, load_training_data, seed_everything
from qmedgen.train.qdiffusion import Config, Trainer

REPO = Path(__file__).resolve().parents[1]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def build(gate: str, device: torch.device, batch: int = 64, n_qubits: int = 16, depth: int = 3) -> Trainer:
    config = from_dict(Config, {
        "data": {"name": "mnist"},
        "train": {"batch_size": batch},
        "model": {"gate": gate, "n_qubits": n_qubits, "depth": depth, "class_conditional": False},
    })
    seed_everything(0)
    n = 256
    spec = DataSpec("mnist", 10, 1, 28, (3,), tuple(str(i) for i in range(10)))
    images = (torch.rand(n, 1, 28, 28) * 2 - 1).to(device)  # the cost does not depend on the pixels
    labels = torch.full((n,), 3, device=device)
    data = TrainingData(images, labels, spec, np.arange(n), BatchStream(n, 0), Dist())
    return Trainer(config, spec, device, Dist(), data)


def time_steps(trainer: Trainer, iters: int) -> list[float]:
    trainer.train_step(0)  # warm-up
    out = []
    for step in range(1, iters + 1):
        sync(trainer.device)
        t0 = time.perf_counter()
        trainer.train_step(step)
        sync(trainer.device)
        out.append(time.perf_counter() - t0)
    return out


def pennylane_reference(n_qubits: int, depth: int, samples: int) -> tuple[float, float]:
    """Seconds per sample (forward + backward) of a per-sample default.qubit backprop loop; and the max |<Z>|
    difference to the engine on those samples (a check that both run the same circuit)."""
    import pennylane as qml

    from qmedgen.models.bottleneck import bottleneck_ansatz
    from qmedgen.quantum import expval

    dev = qml.device("default.qubit", wires=n_qubits)

    @qml.qnode(dev, interface="torch", diff_method="backprop")
    def circuit(x, w):
        for i in range(n_qubits):
            qml.RY(x[i], wires=i)
        for layer in range(depth):
            for i in range(n_qubits):
                qml.RZ(w[layer, 0, i], wires=i)
            for i in range(n_qubits):
                qml.RY(w[layer, 1, i], wires=i)
            for i in range(n_qubits - 1):
                qml.CNOT(wires=[i, i + 1])
        return [qml.expval(qml.PauliZ(i)) for i in range(n_qubits)]

    torch.manual_seed(0)
    x = torch.rand(samples + 1, n_qubits, dtype=torch.float64) * math.pi
    w = (torch.rand(depth, 2, n_qubits, dtype=torch.float64) * 2 * math.pi).requires_grad_(True)
    torch.stack(circuit(x[0], w)).sum().backward()  # warm-up
    outs = []
    t0 = time.perf_counter()
    for i in range(1, samples + 1):
        out = torch.stack(circuit(x[i], w))
        out.sum().backward()
        outs.append(out.detach())
    per_sample = (time.perf_counter() - t0) / samples
    ours = expval(bottleneck_ansatz(n_qubits, depth), x[1:], w.detach())
    return per_sample, float((torch.stack(outs) - ours).abs().max())


def time_sampling(trainer: Trainer, n_images: int, batch: int, steps: int) -> float:
    labels = torch.full((n_images,), 3, dtype=torch.long, device=trainer.device)
    g = torch.Generator(device=trainer.device).manual_seed(0)
    sync(trainer.device)
    t0 = time.perf_counter()
    with torch.no_grad():
        for start in range(0, n_images, batch):
            trainer.sample(labels[start:start + batch], generator=g, sampler="ddim", steps=steps)
    sync(trainer.device)
    return time.perf_counter() - t0


# name -> (model section, diffusion section); schedule arms isolate the schedule (gate none), gate arms the gate.
SCHEDULE_ARMS = {
    "linear": ({"gate": "none"}, {"schedule": "linear"}),
    "cosine": ({"gate": "none"}, {"schedule": "cosine"}),
    "cosine+min-snr": ({"gate": "none"}, {"schedule": "cosine", "loss_weighting": "min-snr"}),
    "tailored": ({"gate": "none"}, {"schedule": "tailored"}),
}
GATE_ARMS = {
    "quantum": ({"gate": "quantum"}, {"schedule": "cosine"}),
    "none": ({"gate": "none"}, {"schedule": "cosine"}),
    "matched-se": ({"gate": "matched-se"}, {"schedule": "cosine"}),
}


def compare(arms: dict, steps: int, device: torch.device, seed: int, n_samples: int = 500,
            label: str = "ablation") -> list[str]:
    """Train each arm on 50 images of MNIST digit 3; pixel-space KID of DDIM-50 samples vs the digit's test images."""
    from qmedgen.data import few_shot_subset, load_dataset
    from qmedgen.evaluate.metrics import kid

    env = os.environ.get("QMEDGEN_SHARED_DATA")
    root = Path(env) if env else REPO / ".." / "shared" / "data"
    test = load_dataset("mnist", split="test", root=str(root))
    test_x = test.images[test.labels.reshape(-1) == 3].reshape(-1, 784).astype(np.float64) / 255.0
    lines = []
    train_set = load_dataset("mnist", split="train", root=str(root))
    idx = few_shot_subset(train_set.labels.reshape(-1), n_total=50, seed=seed, classes=[3])
    real = train_set.images[idx].reshape(-1, 784).astype(np.float64) / 255.0
    k = kid(test_x, real, n_subsets=50, seed=seed)
    line = (f"{label} reference: pixel-KID x1e3 of the 50 training images themselves vs the test images: "
            f"{k.value * 1e3:.2f} +- {k.std * 1e3:.2f} (a model that copied its training set would score this)")
    print(line, flush=True)
    lines.append(line)
    for arm, (model, diffusion) in arms.items():
        config = from_dict(Config, {
            "data": {"name": "mnist", "root": str(root), "classes": [3], "n_total": 50, "subset_seed": seed},
            "train": {"batch_size": 64, "steps": steps, "seed": seed},
            "model": {**model, "class_conditional": False},
            "diffusion": diffusion,
        })
        seed_everything(seed)
        data = load_training_data(config.data, device, Dist(), seed)
        trainer = Trainer(config, data.spec, device, Dist(), data)
        t0 = time.perf_counter()
        losses = [trainer.train_step(s)["mse"] for s in range(steps)]
        train_s = time.perf_counter() - t0
        g = torch.Generator(device=device).manual_seed(seed)
        with torch.no_grad():
            fake = torch.cat([
                trainer.sample(torch.full((100,), 3, device=device), generator=g, sampler="ddim", steps=50)
                for _ in range(n_samples // 100)
            ])
        fake_x = ((fake.cpu().double() + 1) / 2).clamp(0, 1).reshape(len(fake), -1).numpy()
        k = kid(test_x, fake_x, n_subsets=50, seed=seed)
        line = (f"{label} {arm}: 50 MNIST '3' images, gate {model['gate']}, {diffusion}, {steps} steps "
                f"({train_s:.0f} s), train mse (last 50 steps) {np.mean(losses[-50:]):.4f}; pixel-KID x1e3 of "
                f"{len(fake)} DDIM-50 samples vs {len(test_x)} test images: {k.value * 1e3:.2f} +- {k.std * 1e3:.2f} "
                f"(seed {seed})")
        print(line, flush=True)
        lines.append(line)
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="speed,reference,sampling", help="comma list of speed,reference,sampling,"
                    "ablation,gates")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--ref-samples", type=int, default=3, help="samples timed in the PennyLane loop")
    ap.add_argument("--n-images", type=int, default=1000)
    ap.add_argument("--sample-batch", type=int, default=250)
    ap.add_argument("--ablation-steps", type=int, default=800)
    ap.add_argument("--ablation-samples", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--note", default="contended (shared 2-core machine; the lead reruns on a quiet one)")
    ap.add_argument("--no-append", action="store_true", help="print only; do not append to RESULTS.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    retain_freed_memory()  # as `qmedgen train` does (qmedgen.train.allocator)
    device = torch.device(args.device)
    parts = set(args.parts.split(","))
    lines = []
    step_times = {}
    if "speed" in parts or "reference" in parts:
        for gate in ("quantum", "none", "matched-se"):
            trainer = build(gate, device)
            times = time_steps(trainer, args.iters)
            step_times[gate] = statistics.median(times)
            params = sum(p.numel() for p in trainer.model.parameters())
            line = (f"train step, gate {gate}: batch 64, 28x28, light U-Net ({params:,} params)"
                    f"{', 16 qubits x 3 layers' if gate == 'quantum' else ''} -> {step_times[gate]:.3f} s/step "
                    f"(median of {len(times)}, min {min(times):.3f})")
            print(line, flush=True)
            lines.append(line)
    if "reference" in parts:
        per_sample, diff = pennylane_reference(16, 3, args.ref_samples)
        ref_step = step_times["none"] + 64 * per_sample
        line = (f"reference: PennyLane default.qubit backprop, one QNode per sample: {per_sample:.3f} s/sample "
                f"(fwd+bwd, {args.ref_samples} timed; max |<Z>| diff to the engine {diff:.1e}) -> {ref_step:.2f} "
                f"s/step extrapolated (64 x circuit + classical U-Net step); ours {step_times['quantum']:.3f} s/step "
                f"= {ref_step / step_times['quantum']:.1f}x faster (target >= 20x; authors: ~22 s/step)")
        print(line, flush=True)
        lines.append(line)
    if "sampling" in parts:
        trainer = build("quantum", device, batch=1)
        seconds = time_sampling(trainer, args.n_images, args.sample_batch, 50)
        per_1000 = seconds * 1000 / args.n_images
        extrapolated = "" if args.n_images == 1000 else f", {per_1000 / 60:.2f} min per 1,000 extrapolated"
        line = (f"sampling: DDIM-50 of {args.n_images} 28x28 images, quantum gate (16 qubits x 3), batch "
                f"{args.sample_batch} -> {seconds:.1f} s ({seconds / 60:.2f} min{extrapolated}; target < 5 min "
                f"per 1,000 on CPU)")
        print(line, flush=True)
        lines.append(line)
    if "ablation" in parts:
        lines += compare(SCHEDULE_ARMS, args.ablation_steps, device, args.seed, args.ablation_samples)
    if "gates" in parts:
        lines += compare(GATE_ARMS, args.ablation_steps, device, args.seed, args.ablation_samples, label="gates")
    if args.no_append or not lines:
        return
    append_section("Quantum diffusion", lines, device, args.threads, args.note,
                   "")


if __name__ == "__main__":
    main()
