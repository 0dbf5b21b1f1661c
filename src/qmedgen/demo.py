"""``qmedgen demo``: the whole workflow on the embedded data, on a laptop CPU, in minutes.

It trains a small MediQ-GAN on the embedded RetinaMNIST subset and a quantum-diffusion model on the embedded
BloodMNIST subset, each next to its two classical counterparts (MediQ-GAN: K=0 and a parameter-matched MLP in
place of the circuits; diffusion: no gate and a parameter-matched squeeze-and-excitation gate), samples from all
six, evaluates them against the embedded held-out test images (KID preferred at these sample sizes; every
metric with a bootstrap 95% CI), and writes one HTML report.

The budgets are small on purpose: the demo shows the tool working end to end, not a converged model, and its
summary says so. Use the presets (``qmedgen train --list-presets``) for real runs.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qmedgen.errors import UserError
from qmedgen.fileio import read_json, write_json


@dataclass(frozen=True)
class Arm:
    label: str
    family: str
    overrides: tuple[str, ...]
    dataset: str


GAN_COMMON = (
    "data.name=embedded-retinamnist",
    "data.size=28",
    "train.batch_size=16",
    "model.n_qubits=8",
    "model.depth=4",
    "gan.diffaugment=translation,color",
)
DIFF_COMMON = (
    "data.name=embedded-bloodmnist",
    "data.size=28",
    "train.batch_size=32",
    "model.n_qubits=8",
    "diffusion.sample_steps=25",
)
ARMS: tuple[Arm, ...] = (
    Arm("MediQ-GAN (quantum, K=3)", "mediqgan", (*GAN_COMMON, "model.n_subgenerators=3"), "embedded-retinamnist"),
    Arm("MediQ-GAN classical (K=0)", "mediqgan", (*GAN_COMMON, "model.n_subgenerators=0"), "embedded-retinamnist"),
    Arm("MediQ-GAN matched MLP", "mediqgan", (*GAN_COMMON, "model.quantum_stream=matched-mlp"), "embedded-retinamnist"),
    Arm("Q-diffusion (quantum gate)", "qdiffusion", (*DIFF_COMMON, "model.gate=quantum"), "embedded-bloodmnist"),
    Arm("Q-diffusion classical (no gate)", "qdiffusion", (*DIFF_COMMON, "model.gate=none"), "embedded-bloodmnist"),
    Arm("Q-diffusion matched SE gate", "qdiffusion", (*DIFF_COMMON, "model.gate=matched-se"), "embedded-bloodmnist"),
)


@dataclass
class DemoPlan:
    gan_steps: int = 250
    diffusion_steps: int = 1000
    n_per_class: int = 16
    seed: int = 0
    arms: tuple[Arm, ...] = field(default_factory=lambda: ARMS)


QUICK = DemoPlan(gan_steps=2, diffusion_steps=2, n_per_class=3)


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in label.lower()).strip("-").replace("--", "-")


def run_demo(out: Path, plan: DemoPlan, progress: bool = True) -> Path:
    """Train, sample and evaluate every arm (finished arms are reused when re-run), then write the report."""
    from qmedgen.data import load_dataset
    from qmedgen.evaluate.evaluation import EvalConfig, evaluate_images
    from qmedgen.evaluate.extractors import load_extractor
    from qmedgen.report import build_report
    from qmedgen.train import api

    out.mkdir(parents=True, exist_ok=True)
    state_path = out / "demo-state.json"
    state = read_json(state_path) if state_path.exists() else {}
    extractor = load_extractor("inception", progress=progress)
    prototypes = out / "prototypes-embedded-retinamnist.safetensors"
    if not prototypes.exists():  # once for all MediQ-GAN arms (the `qmedgen prototypes` step)
        from qmedgen.cli import main as cli

        if cli(["prototypes", "--data", "embedded-retinamnist", "--size", "28", "--out", str(prototypes)]) != 0:
            raise UserError("demo: computing the MediQ-GAN prototypes failed (see the message above)")
    rows = []
    t_start = time.perf_counter()
    for i, arm in enumerate(plan.arms, 1):
        key = _slug(arm.label)
        print(f"[{i}/{len(plan.arms)}] {arm.label}", flush=True)
        entry = state.get(key, {})
        if "metrics" not in entry:
            steps = plan.gan_steps if arm.family == "mediqgan" else plan.diffusion_steps
            overrides = [*arm.overrides, f"train.steps={steps}", f"train.seed={plan.seed}",
                         f"train.sample_every={steps}", f"train.checkpoint_every={steps}"]
            if arm.family == "mediqgan":
                overrides += ["model.prototypes.init=file", f"model.prototypes.file={prototypes}"]
            t0 = time.perf_counter()
            run_dir = api.train(arm.family, overrides, run_root=out / "runs", progress=progress)
            train_s = time.perf_counter() - t0
            samples = api.sample(run_dir, n_per_class=plan.n_per_class, out=run_dir / "samples-demo",
                                 seed=plan.seed, progress=progress)
            fake = np.load(samples / "samples.npz")
            real = load_dataset(arm.dataset, split="test")
            train = load_dataset(arm.dataset, split="train")
            result = evaluate_images(
                real.images, real.labels, fake["images"], fake["labels"], extractor,
                EvalConfig(n_boot=100, fid_boot=0, kid_subsets=50, progress=progress, seed=plan.seed),
                train_images=train.images,
            )
            write_json(samples / "metrics.json", result)
            entry = {"run_dir": str(run_dir), "train_seconds": train_s, "steps": steps, "metrics": result["metrics"],
                     "params": _param_counts(run_dir)}
            state[key] = entry
            write_json(state_path, state)
        rows.append((arm, entry))
    (out / "summary.md").write_text(summary_markdown(rows, plan))
    write_json(out / "summary.json", {_slug(a.label): e for a, e in rows})
    report = build_report(out, title="qmedgen demo: quantum models next to their classical counterparts")
    print(f"demo finished in {(time.perf_counter() - t_start) / 60:.1f} min; report: {report}")
    return report


def _param_counts(run_dir: Path) -> dict[str, int]:
    from qmedgen.train.api import load_run

    trainer = load_run(run_dir, device="cpu")
    return trainer.parameter_counts()


def _ci(m: dict | None) -> str:
    if not m:
        return "n/a"
    lo, hi = m.get("ci_low"), m.get("ci_high")
    if lo is None or hi is None or any(isinstance(v, float) and np.isnan(v) for v in (lo, hi)):
        return f"{m['value']:.4g}"
    return f"{m['value']:.4g} [{lo:.4g}, {hi:.4g}]"


def summary_markdown(rows: list[tuple[Arm, dict]], plan: DemoPlan) -> str:
    lines = [
        "# Demo summary",
        "",
        f"Budgets: MediQ-GAN {plan.gan_steps} steps, diffusion {plan.diffusion_steps} steps, "
        f"{plan.n_per_class} samples per class; evaluated against the embedded held-out test images with "
        "Inception-v3 features. Values are point estimates with bootstrap 95% CIs. These are demo budgets on a "
        "few dozen images: the numbers show the instrument working, not which model is better.",
        "",
        "| model | parameters | train s | KID | precision | recall | coverage | copy fraction |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arm, e in rows:
        m = e["metrics"]
        params = ", ".join(f"{k} {v:,}" for k, v in e.get("params", {}).items() if not k.startswith("ema"))
        lines.append(
            f"| {arm.label} | {params} | {e['train_seconds']:.0f} | {_ci(m.get('kid'))} | {_ci(m.get('precision'))} "
            f"| {_ci(m.get('recall'))} | {_ci(m.get('coverage'))} | {_ci(m.get('copy_fraction'))} |"
        )
    return "\n".join(lines) + "\n"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train, sample, evaluate and report on the embedded data (minutes, CPU)",
                       description=__doc__.split("\n\n")[1])
    p.add_argument("--out", type=Path, default=Path("demo-output"), help="output directory (default demo-output/)")
    p.add_argument("--gan-steps", type=int, default=DemoPlan.gan_steps)
    p.add_argument("--diffusion-steps", type=int, default=DemoPlan.diffusion_steps)
    p.add_argument("--n-per-class", type=int, default=DemoPlan.n_per_class)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="a few steps per model (smoke test)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    plan = QUICK if args.quick else DemoPlan(args.gan_steps, args.diffusion_steps, args.n_per_class, args.seed)
    report = run_demo(args.out, plan, progress=not args.no_progress)
    print(json.dumps({"report": str(report)}))
    return 0
