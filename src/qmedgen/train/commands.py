"""``qmedgen train``, ``qmedgen sample``, ``qmedgen runs``, ``qmedgen prototypes`` (MediQ-GAN's prototype files),
plus commands that model families add."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from qmedgen.config import describe, to_dict
from qmedgen.data.catalog import GENERATED_SIZES
from qmedgen.errors import ConfigError, UserError
from qmedgen.fileio import read_json
from qmedgen.train import api
from qmedgen.train.registry import FAMILIES, family_modules
from qmedgen.train.rundir import MetricsLog, list_runs

# Shortcut flags -> dotted config keys (the same for every family).
SHORTCUTS: dict[str, tuple[str, Any]] = {
    "data": ("data.name", str),
    "data_root": ("data.root", str),
    "split": ("data.split", str),
    "size": ("data.size", int),
    "n_per_class": ("data.n_per_class", int),
    "n_train": ("data.n_total", int),
    "steps": ("train.steps", int),
    "batch_size": ("train.batch_size", int),
    "seed": ("train.seed", int),
    "device": ("train.device", str),
    "out": ("train.out_dir", str),
}


def _classes(text: str) -> list[int]:
    try:
        return [int(c) for c in text.split(",") if c.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--classes takes class ids like 3 or 0,2,4, got {text!r}") from exc


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model (name, preset or YAML config)",
        description="Train MODEL (a model name, a preset name or a YAML config file) in a new numbered run "
        "directory. Options override the config; any key can be set with --set key.sub=value.",
    )
    p.add_argument("target", metavar="MODEL_PRESET_OR_CONFIG", nargs="?",
                   help=f"models: {', '.join(sorted(FAMILIES))}; presets: see --list-presets")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key (repeatable), e.g. --set model.depth=6")
    p.add_argument("--data", help="dataset name (qmedgen data list) or folder:PATH")
    p.add_argument("--data-root", help="directory holding the dataset files")
    p.add_argument("--split", help="train | val | test | all")
    p.add_argument("--size", type=int, help=f"image size ({', '.join(map(str, GENERATED_SIZES))})")
    p.add_argument("--classes", type=_classes, help="class ids to train on, e.g. 3 or 0,1,2")
    p.add_argument("--n-per-class", type=int, help="few-shot: images per class")
    p.add_argument("--n-train", type=int, help="few-shot: total training images (stratified)")
    p.add_argument("--steps", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--out", help="parent directory of run directories (default runs/)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue this run from its latest checkpoint")
    p.add_argument("--tensorboard", action="store_true", help="also log scalars to TensorBoard")
    p.add_argument("--dry-run", action="store_true",
                   help="print the resolved config, parameter counts and the measured cost of one step; write nothing")
    p.add_argument("--list-presets", action="store_true", help="list shipped presets and exit")
    p.add_argument("--list-options", action="store_true", help="list every config key of MODEL and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="generate images from a trained run",
                       description="Generate images from RUN_DIR: OUT/class_<k>/*.png and OUT/samples.npz.")
    s.add_argument("run_dir", type=Path)
    group = s.add_mutually_exclusive_group(required=True)
    group.add_argument("--n-per-class", type=int, help="images per trained class")
    group.add_argument("--n", type=int, help="images in total, spread evenly over the trained classes")
    s.add_argument("--out", type=Path, help="output directory (default RUN_DIR/samples-N)")
    s.add_argument("--checkpoint", default="latest", help="latest or a step number")
    s.add_argument("--batch-size", type=int, default=100)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="auto")
    s.add_argument("--no-ema", action="store_true", help="use the raw weights instead of the EMA weights")
    s.add_argument("--sampler", help="diffusion: ddpm | ddim")
    s.add_argument("--steps", type=int, help="diffusion: sampling steps")
    s.add_argument("--eta", type=float, help="diffusion: DDIM eta")
    s.add_argument("--guidance", type=float, help="classifier-free guidance scale")
    s.add_argument("--noise", help="diffusion: noise source gaussian | quantum | hybrid")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=cmd_sample)

    r = sub.add_parser("runs", help="list run directories")
    rsub = r.add_subparsers(dest="runs_command", metavar="ACTION")
    rl = rsub.add_parser("list", help="one line per run: id, model, data, progress, state, last metrics")
    rl.add_argument("--root", default="runs", help="directory of run directories (default runs/)")
    rl.set_defaults(func=cmd_runs_list)
    r.set_defaults(func=lambda args: cmd_runs_list(argparse.Namespace(root="runs")))

    register_prototypes(sub)
    for module in family_modules():  # commands a family adds (see qmedgen.train.registry)
        extra = getattr(module, "register_commands", None)
        if extra is not None:
            extra(sub)


def overrides_from_args(args: argparse.Namespace) -> list[str]:
    """Shortcut flags first, then --set (so --set wins)."""
    out = []
    for flag, (key, _) in SHORTCUTS.items():
        value = getattr(args, flag, None)
        if value is not None:
            out.append(f"{key}={json.dumps(value)}")
    if getattr(args, "classes", None) is not None:
        out.append(f"data.classes={json.dumps(args.classes)}")
    if getattr(args, "tensorboard", False):
        out.append("train.tensorboard=true")
    return out + list(args.overrides)


def cmd_train(args: argparse.Namespace) -> int:
    if args.list_presets:
        for name in api.list_presets():
            print(name)
        return 0
    if args.target is None and args.resume is None:
        raise UserError(f"give a model ({', '.join(sorted(FAMILIES))}), a preset or a YAML file; see --list-presets")
    overrides = overrides_from_args(args)
    if args.list_options:
        family, _ = api.resolve_config(args.target)
        for key, tp, default, text in describe(family.config_cls):
            print(f"{key:36s} {tp:16s} {default!r:24s} {text}")
        return 0
    if args.dry_run:
        return dry_run(args.target, overrides)
    run_dir = api.train(args.target, overrides, progress=not args.no_progress, resume=args.resume)
    print(f"run finished: {run_dir}")
    return 0


def dry_run(target: str, overrides: list[str]) -> int:
    """Print the plan: resolved config, parameter counts, and two timed steps on a throwaway trainer."""
    from qmedgen.train.distributed import Dist, resolve_device
    from qmedgen.train.loop import load_training_data, seed_everything

    family, config = api.resolve_config(target, overrides)
    print(json.dumps({"family": family.name, **to_dict(config)}, indent=2))
    device = resolve_device(config.train.device, Dist())
    seed_everything(config.train.seed)
    data = load_training_data(config.data, device, Dist(), config.train.seed)
    trainer = family.trainer_cls(config, data.spec, device, Dist(), data)
    counts = trainer.parameter_counts()
    print(f"\ndata: {config.data.name} split={config.data.split} size={data.spec.size} "
          f"images={len(data.indices)} classes={list(data.spec.class_ids)}")
    print("parameters: " + ", ".join(f"{k}={v:,}" for k, v in counts.items()))
    trainer.train_step(0)  # warm-up (allocations, lazy init)
    t0 = time.perf_counter()
    trainer.train_step(1)
    per_step = time.perf_counter() - t0
    total = per_step * config.train.steps
    print(f"cost: {per_step:.3f} s/step on {device} -> about {total / 60:.1f} min for {config.train.steps} steps")
    print("dry run: nothing was written")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    names = ("sampler", "steps", "eta", "guidance", "noise")
    opts = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
    if args.no_ema:
        opts["use_ema"] = False
    out = api.sample(
        args.run_dir,
        n_per_class=args.n_per_class,
        n=args.n,
        out=args.out,
        batch_size=args.batch_size,
        seed=args.seed,
        checkpoint=args.checkpoint,
        device=args.device,
        progress=not args.no_progress,
        **opts,
    )
    print(f"samples written to {out}")
    return 0


def cmd_runs_list(args: argparse.Namespace) -> int:
    runs = list_runs(args.root)
    if not runs:
        print(f"no runs in {args.root}/")
        return 0
    print(f"{'run':40s} {'model':11s} {'data':24s} {'step':>13s} {'state':11s} last metrics")
    for run in runs:
        try:
            cfg = read_json(run / "config.json")
        except UserError:
            print(f"{run.name:40s} (no config.json: incomplete run directory)")
            continue
        status = read_json(run / "status.json") if (run / "status.json").exists() else {}
        last = (MetricsLog(run / "metrics.jsonl").read() or [{}])[-1]
        metrics = ", ".join(f"{k}={v:.3g}" for k, v in last.items() if k not in ("step", "steps_per_s"))[:60]
        progress = f"{status.get('step', 0)}/{cfg.get('train', {}).get('steps', '?')}"
        print(f"{run.name:40s} {cfg.get('family', '?'):11s} {cfg.get('data', {}).get('name', '?'):24s} "
              f"{progress:>13s} {status.get('state', '?'):11s} {metrics}")
    return 0


def register_prototypes(sub: argparse._SubParsersAction) -> None:
    """Adds ``qmedgen prototypes``: class-mean features of a dataset (subset) saved for model.prototypes.file."""
    p = sub.add_parser(
        "prototypes",
        help="compute MediQ-GAN class prototypes (class-mean extractor features) and save them",
        description="Compute per-class mean features of a local pretrained extractor over a dataset split or "
        "few-shot subset, and save them as a .safetensors prototype file for model.prototypes.file "
        "(with model.prototypes.init=file).",
    )
    p.add_argument("--data", required=True, help="dataset name (qmedgen data list) or folder:PATH")
    p.add_argument("--data-root", help="directory holding the dataset files")
    p.add_argument("--split", default="train", help="train | val | test | all (default train)")
    p.add_argument("--size", type=int, default=64, help="image size the extractor sees (default 64)")
    p.add_argument("--n-per-class", type=int, help="few-shot: images per class (as the training subset)")
    p.add_argument("--n-train", type=int, help="few-shot: total images (as the training subset)")
    p.add_argument("--subset-seed", type=int, default=0, help="seed of the few-shot draw (as data.subset_seed)")
    p.add_argument("--extractor", default="inception", help="inception (default), domain:<dataset> or a .pt file")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--out", required=True, help="output file (.safetensors)")
    p.set_defaults(func=cmd_prototypes)


def cmd_prototypes(args: argparse.Namespace) -> int:
    import torch

    from qmedgen.config import from_dict
    from qmedgen.models.prototypes import class_mean_features, resolve_extractor, save_prototypes
    from qmedgen.train.distributed import Dist, resolve_device
    from qmedgen.train.loop import load_training_data
    from qmedgen.train.sections import DataConfig

    if not str(args.out).endswith(".safetensors"):
        raise ConfigError(f"--out must name a .safetensors file, got {args.out}")
    data_cfg = from_dict(DataConfig, {
        "name": args.data, "root": args.data_root, "split": args.split, "size": args.size,
        "n_per_class": args.n_per_class, "n_total": args.n_train, "subset_seed": args.subset_seed,
    }, path="data")
    dist = Dist()
    device = resolve_device(args.device, dist)
    data = load_training_data(data_cfg, device, dist, seed=0)
    extractor = resolve_extractor(args.extractor, device)
    values = class_mean_features(extractor, data.images, data.labels.cpu(), data.spec.n_classes,
                                 batch_size=args.batch_size, progress=True, allow_missing=True)
    counts = torch.bincount(data.labels.cpu(), minlength=data.spec.n_classes).tolist()
    path = save_prototypes(args.out, values, {
        "dataset": args.data, "split": args.split, "size": args.size, "extractor": args.extractor,
        "n_per_class": args.n_per_class, "n_total": args.n_train, "subset_seed": args.subset_seed,
        "class_counts": counts,
    })
    print(f"prototypes {tuple(values.shape)} from {len(data.labels)} images (per class {counts}) -> {path}")
    print(f"train with: --set model.prototypes.init=file --set model.prototypes.file={path} "
          f"--set model.prototypes.dim={values.shape[1]}")
    return 0
