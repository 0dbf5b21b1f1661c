"""Train the arms of `qmedgen demo` and export the small checkpoints the demo ships with.

    OMP_NUM_THREADS=1 python scripts/train_demo_checkpoints.py   # MediQ-GAN ~7-8 min, diffusion ~4 min per arm

Recipe: for every arm of ``qmedgen.demo.ARMS`` (MediQ-GAN K=3 and its parameter-matched MLP on the embedded
BloodMNIST train split, with prototypes from `qmedgen prototypes`; quantum diffusion and its parameter-matched SE
gate on the embedded RetinaMNIST train split), ``qmedgen.demo.train_overrides`` with the demo's overrides,
PRETRAINED_GAN_STEPS = 1,500 or PRETRAINED_DIFFUSION_STEPS = 4,000 steps and seed 0 -- the same call the demo makes
with ``--train``. The two arms of a pair get the same data, steps, seed and hyper-parameters.

Export (``src/qmedgen/demo_checkpoints/<arm>/``, each under 5 MB): the run's config.json, indices.json, status.json,
environment.json and metrics.jsonl, the final network weights (generator and critic; denoiser and its EMA) in
float16 (``qmedgen.train.api.load_run`` loads them into the float32 networks; optimiser and RNG state are left
out: the demo only samples), and
shipped.json (overrides, steps, seed, training seconds, torch version). ``qmedgen demo`` uses a checkpoint only if
its overrides, steps and seed equal the arm's.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from qmedgen import demo
from qmedgen.fileio import read_json, write_json
from qmedgen.train import api
from qmedgen.train import checkpoint as ckpt

LIMIT_BYTES = 5 * 1024 * 1024


def scrub(dest: Path) -> None:
    """No paths of the machine that trained them: out_dir back to its default, the prototypes file by name only
    (loading a run reads the prototypes from its weights), the work directory out of the recorded argv."""
    config = read_json(dest / "config.json")
    config["train"]["out_dir"] = "runs"
    proto = config.get("model", {}).get("prototypes", {})
    if proto.get("file"):
        proto["file"] = Path(proto["file"]).name
    write_json(dest / "config.json", config)
    env = read_json(dest / "environment.json")
    env["argv"] = [a if not a.startswith("/") else Path(a).name for a in env.get("argv", [])]
    write_json(dest / "environment.json", env)


def export(run_dir: Path, dest: Path, info: dict) -> int:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in ("config.json", "indices.json", "environment.json", "metrics.jsonl", "status.json"):
        shutil.copy2(run_dir / name, dest / name)
    src = ckpt.find_checkpoint(run_dir / "checkpoints")
    step_dir = dest / "checkpoints" / src.name
    step_dir.mkdir(parents=True)
    tensors = {k: (v.half() if v.is_floating_point() else v).contiguous()
               for k, v in load_file(str(src / "weights.safetensors")).items()}
    save_file(tensors, str(step_dir / "weights.safetensors"))
    shutil.copy2(src / "meta.json", step_dir / "meta.json")
    shutil.copy2(run_dir / "checkpoints" / ckpt.LATEST, dest / "checkpoints" / ckpt.LATEST)  # names src
    write_json(dest / "shipped.json", info)
    scrub(dest)
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    if size > LIMIT_BYTES:
        raise SystemExit(f"{dest}: {size / 2**20:.1f} MiB exceeds the 5 MiB limit")
    return size


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=demo.PRETRAINED_DIR)
    ap.add_argument("--work", type=Path, help="where the full runs go (default: a temporary directory)")
    ap.add_argument("--only", help="train only the arms whose label contains this text")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="qmedgen-demo-ckpt-"))
    plan = demo.DemoPlan()
    for arm in (a for a in demo.ARMS if not args.only or args.only in a.label):
        steps = plan.steps(arm)
        prototypes = demo.prototypes_file(work, arm.dataset) if arm.family == "mediqgan" else None
        t0 = time.perf_counter()
        run_dir = api.train(arm.family, demo.train_overrides(arm, steps, args.seed, prototypes),
                            run_root=work / "runs", progress=False)
        seconds = time.perf_counter() - t0
        info = {"arm": arm.label, "overrides": list(arm.overrides), "steps": steps, "seed": args.seed,
                "train_seconds": round(seconds, 1), "torch": torch.__version__,
                "threads": torch.get_num_threads(), "recipe": "scripts/train_demo_checkpoints.py"}
        size = export(run_dir, args.out / demo._slug(arm.label), info)
        print(f"{arm.label}: {seconds:.0f} s, exported {size / 2**20:.2f} MiB -> {args.out / demo._slug(arm.label)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
