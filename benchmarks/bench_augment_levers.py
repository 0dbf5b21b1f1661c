"""Generator and classifier levers for few-shot augmentation, one at a time, on one real subset.

Trains (or reuses) one generator run per variant on BloodMNIST with N real images per class, samples from it and
measures the downstream utility arms on the official test split against the validation-selected real-only
baseline (the same rules as ``qmedgen utility``). Prints one JSON line per (variant, lever) and appends a
section to RESULTS.md.

    export QMEDGEN_DATA=../shared/data
    OMP_NUM_THREADS=1 python benchmarks/bench_augment_levers.py --out runs/levers --variant linear-ms \\
        --set model.encoder=linear --set gan.mode_seeking=1.0

Levers measured on the samples: ``plain`` (real+syn at 1x and 2x), ``filter`` (the same after
``qmedgen.evaluate.selection``), ``pretrain`` (syn>real: pre-train on synthetic, fine-tune on real) and
``val-ratio`` (real+syn at the ratio chosen on validation).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from _results import append_section

LEVERS = {
    "plain": {"arms": ("real", "real+syn"), "ratios": (1.0, 2.0)},
    "filter": {"arms": ("real", "real+syn"), "ratios": (1.0, 2.0), "filter": True},
    "pretrain": {"arms": ("real", "syn>real")},
    "val-ratio": {"arms": ("real", "real+syn@val"), "ratios": (0.5, 1.0, 2.0)},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--variant", required=True, help="a name for this generator configuration")
    ap.add_argument("--model", default="mediqgan-fewshot")
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    ap.add_argument("--sample-opt", action="append", default=[], metavar="KEY=VALUE",
                    help="sampling option of the trained run, e.g. sampler=ddpm steps=100 (one training, "
                    "several samplers)")
    ap.add_argument("--data", default="bloodmnist")
    ap.add_argument("--n-per-class", type=int, default=10)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--samples-per-class", type=int, default=200)
    ap.add_argument("--levers", nargs="+", default=list(LEVERS), choices=list(LEVERS))
    ap.add_argument("--epochs", type=float, default=100)
    args = ap.parse_args()

    from qmedgen.config import parse_override
    from qmedgen.data import few_shot_subset, load_dataset
    from qmedgen.evaluate.utility import UtilityConfig, run_utility
    from qmedgen.train.api import sample, train_or_resume

    overrides = [f"data.name={args.data}", "data.size=28", f"data.n_per_class={args.n_per_class}",
                 "data.n_total=null", f"data.subset_seed={args.seed}", f"train.seed={args.seed}",
                 f"train.steps={args.steps}", "train.sample_every=500", "train.checkpoint_every=500",
                 *args.overrides]
    t0 = time.perf_counter()
    run = train_or_resume(args.model, overrides, args.out / args.variant / "runs", progress=False)
    train_s = time.perf_counter() - t0
    sample_opts = {k: v for o in args.sample_opt for k, v in parse_override(o).items()}  # flat keys
    samples = args.out / args.variant / ("samples" + "".join(f"-{k}-{v}" for k, v in sample_opts.items()))
    if not (samples / "samples.npz").is_file():
        sample(run, n_per_class=args.samples_per_class, out=samples, seed=args.seed, progress=False, **sample_opts)
    d = np.load(samples / "samples.npz")
    tr, te = load_dataset(args.data, split="train"), load_dataset(args.data, split="test")
    idx = few_shot_subset(tr.labels, n_per_class=args.n_per_class, seed=args.seed)
    cache: dict = {}
    lines = []
    for lever in args.levers:
        t = time.perf_counter()
        cfg = UtilityConfig(seeds=(args.seed,), epochs=args.epochs, progress=False, **LEVERS[lever])
        r = run_utility((tr.images[idx], tr.labels[idx]), (te.images, te.labels), tr.info.n_classes, tr.info.task,
                        (d["images"], d["labels"]), cfg, args.data, cache=cache)
        bal = {a: round(s["balanced_accuracy"]["mean"], 4) for a, s in r["summary"].items()}
        row = {"variant": args.variant, "sampling": sample_opts, "lever": lever, "balanced_accuracy": bal,
               "filter": r["filter"] and {k: r["filter"][k] for k in ("n", "kept", "per_reason")},
               "policy": r["selection"][str(args.seed)]["policy_name"],
               "ratio": r["selection"][str(args.seed)].get("ratio"), "seconds": round(time.perf_counter() - t)}
        print(json.dumps(row), flush=True)
        lines.append(f"{args.variant}{_opts_text(sample_opts)} / {lever}: "
                     + ", ".join(f"{a} {v:.4f}" for a, v in bal.items())
                     + (f" (filter kept {row['filter']['kept']}/{row['filter']['n']})" if row["filter"] else "")
                     + (f" (ratio chosen on validation: {row['ratio']:g})" if row["ratio"] else ""))
    append_section(f"Augmentation levers, {args.data} {args.n_per_class}/class, seed {args.seed}", lines,
                   torch.device("cpu"), torch.get_num_threads(),
                   f"generator {args.model} {' '.join(args.overrides)}, {args.steps} steps ({train_s:.0f} s)")


def _opts_text(opts: dict) -> str:
    return f" (sampling {', '.join(f'{k}={v}' for k, v in opts.items())})" if opts else ""


if __name__ == "__main__":
    main()
