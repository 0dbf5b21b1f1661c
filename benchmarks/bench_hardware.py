"""Noisy inference of MediQ-GAN images under the FakeMarrakesh noise model (qiskit-aer), on this machine.

Target: 500 images (K=3 sub-generators of 16 qubits, depth 6, 1024 shots each, FakeMarrakesh noise) in under
15 minutes on the 2-core CPU. The generator is the paper's RetinaMNIST configuration with random weights (the
cost does not depend on the trained values). All circuits of a batch go to Aer as ONE parameterised, transpiled
circuit with one parameter binding per (image, sub-generator).

With gate noise, Aer's state-vector method samples one noisy trajectory PER SHOT, so per-shot sampling costs about
shots x circuits x (one 16-qubit state-vector run, ~0.1 CPU-s here): ~40 CPU-hours for 1500 circuits at 1024
shots. The default ("auto") therefore simulates T = 8 noisy trajectories per circuit with Aer (exact per-trajectory
<Z_i> after the basis change), applies the device's readout errors and draws shots / T samples per trajectory
(see qmedgen.hardware.executors.AerExecutor). ``--trajectories 8,32,shots`` compares settings.

We time ``--images`` images (default 4 = 12 circuits) and extrapolate linearly to 500 (the per-circuit cost is
constant; the one-off cost -- device noise model, transpilation -- is added once). On a shared machine the wall
time is inflated by other jobs, so we also report CPU time / threads, the wall time expected on an idle machine.

    OMP_NUM_THREADS=2 python benchmarks/bench_hardware.py [--images 4] [--shots 1024] [--threads 2]
        [--trajectories auto,32] [--methods automatic,statevector] [--note contended] [--no-append]
"""

from __future__ import annotations

import argparse
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from qmedgen.config import from_dict
from qmedgen.hardware.backends import fake_backend
from qmedgen.hardware.executors import AerExecutor, RecordingExecutor, device_noise_model
from qmedgen.hardware.inference import generate, layer_weights, model_layers
from qmedgen.train.distributed import Dist
from qmedgen.train.loop import DataSpec, seed_everything
from qmedgen.train.mediqgan import Config, Trainer

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
TARGET_IMAGES = 500


def build_trainer() -> Trainer:
    config = from_dict(Config, {
        "data": {"name": "retinamnist", "size": 64},
        "model": {"n_subgenerators": 3, "depth": 6, "split_ratio": 0.25, "n_qubits": 16, "decoder": "style2",
                  "prototypes": {"enabled": True, "init": "random", "dim": 2048}},
    })
    seed_everything(0)
    spec = DataSpec("retinamnist", 5, 3, 64, tuple(range(5)), tuple(f"c{i}" for i in range(5)))
    trainer = Trainer(config, spec, torch.device("cpu"), Dist(), None)
    for m in trainer.modules().values():
        m.eval()
    return trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=4, help="images actually simulated per method")
    ap.add_argument("--shots", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--backend", default="fake_marrakesh")
    ap.add_argument("--methods", default="automatic", help="comma-separated Aer methods to compare")
    ap.add_argument("--trajectories", default="auto",
                    help="comma-separated trajectories per circuit: auto, integers, or 'shots' (1 per shot)")
    ap.add_argument("--note", default="contended (shared 2-core machine; the lead reruns on a quiet one)")
    ap.add_argument("--no-append", action="store_true", help="print only; do not append to RESULTS.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    trainer = build_trainer()
    gen = trainer.generator
    layer = gen.quantum_layer
    labels = torch.arange(args.images) % 5

    t0 = time.perf_counter()
    backend = fake_backend(args.backend)
    device_noise_model(backend)
    t_noise = time.perf_counter() - t0
    lines = []
    runs = [(m.strip(), t.strip()) for m in args.methods.split(",") if m.strip()
            for t in args.trajectories.split(",") if t.strip()]
    for method, traj_text in runs:
        traj = {"auto": "auto", "shots": None}.get(traj_text) if traj_text in ("auto", "shots") else int(traj_text)
        ex = AerExecutor(backend, shots=args.shots, seed=0, method=method, threads=args.threads, trajectories=traj)
        n_traj = ex.n_trajectories(layer.ansatz)
        t0 = time.perf_counter()
        stats = ex.stats(layer.ansatz)  # transpile (one-off, cached)
        if n_traj is None:
            ex._sampler_for(ex._cache[layer.ansatz][3])  # compact noise model (one-off)
        else:
            ex._trajectory_setup(layer.ansatz)  # compact circuit with <Z> saves + compact noise model (one-off)
        t_setup = time.perf_counter() - t0
        rec = RecordingExecutor(ex)
        t0, c0 = time.perf_counter(), time.process_time()
        if any(hasattr(la, "executor") for la in model_layers(trainer)):
            generate(trainer, labels, rec, seed=0, batch_size=args.images)  # whole generator, executor swapped
        else:  # no executor hook in this engine version: run the same circuits (the generator's real angles)
            with torch.no_grad():
                z = gen.sample_latent(labels, generator=torch.Generator().manual_seed(0))
                rec(layer.ansatz, gen.circuit_inputs(z, labels), layer_weights(layer))
        t_run, c_run = time.perf_counter() - t0, time.process_time() - c0
        per_image = t_run / args.images
        total = t_noise + t_setup + per_image * TARGET_IMAGES
        # on an idle machine the wall time is about CPU time / threads (Aer parallelises over bindings)
        quiet = t_noise + t_setup + c_run / args.images * TARGET_IMAGES / args.threads
        err = rec.summary()
        how = "one trajectory per shot" if n_traj is None else f"{n_traj} trajectories x {args.shots // n_traj} shots"
        line = (f"{args.backend} noise, Aer method {method}, {args.shots} shots ({how}), K=3 x 16 qubits depth 6 "
                f"(transpiled depth {stats['depth']}, {stats['two_qubit_gates']} CZ): {args.images} images "
                f"({ex.n_bindings} circuits, {ex.n_jobs} job) in {t_run:.1f} s wall / {c_run:.1f} s CPU = "
                f"{per_image:.2f} s/image wall; one-off noise model {t_noise:.1f} s + setup {t_setup:.1f} s -> "
                f"extrapolated {TARGET_IMAGES} images: {total / 60:.1f} min at this contention, ~{quiet / 60:.1f} min "
                f"from CPU time / {args.threads} threads (target < 15 min: {'met' if quiet < 900 else 'NOT met'}); "
                f"<X> RMSE vs exact {err['expval_rmse']:.4f}")
        print(line, flush=True)
        lines.append(line)
    if args.no_append:
        return
    import qiskit
    import qiskit_aer

    header = (f"\n### Noisy hardware-model inference ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)\n"
              f"machine: {platform.node()} ({platform.processor() or platform.machine()}, {args.threads} threads); "
              f"torch {torch.__version__}; qiskit {qiskit.__version__}; qiskit-aer {qiskit_aer.__version__}; "
              f"{args.note}. Measured on {args.images} images and extrapolated linearly to {TARGET_IMAGES}.\n\n")
    with RESULTS.open("a") as f:
        f.write(header + "".join(f"- {line}\n" for line in lines))
    print(f"appended to {RESULTS}")


if __name__ == "__main__":
    main()
