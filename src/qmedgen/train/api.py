"""Python API for training and sampling; the CLI and the benchmark harness are thin layers over it.

>>> run_dir = train("mediqgan", ["data.name=embedded-retinamnist", "train.steps=100"])   # doctest: +SKIP
>>> sample(run_dir, n_per_class=50, out=run_dir / "samples-50")                           # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qmedgen.config import apply_overrides, from_dict, load_yaml
from qmedgen.errors import ConfigError, UserError
from qmedgen.fileio import read_json, write_json
from qmedgen.images import to_pixels, write_samples
from qmedgen.train import checkpoint as ckpt
from qmedgen.train.distributed import Dist, resolve_device
from qmedgen.train.loop import DataSpec, Family, Trainer, iterate_labels, run_training
from qmedgen.train.registry import FAMILIES, get_family

Overrides = Sequence[str] | Mapping[str, Any]


def list_presets() -> list[str]:
    """Names of the presets shipped in ``qmedgen/presets`` (``qmedgen train NAME`` accepts them)."""
    root = resources.files("qmedgen") / "presets"
    if not root.is_dir():
        return []
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def _preset_data(name: str) -> dict[str, Any]:
    path = resources.files("qmedgen") / "presets" / f"{name}.yaml"
    with resources.as_file(path) as p:
        return load_yaml(p)


def resolve_config(target: str, overrides: Overrides = ()) -> tuple[Family, Any]:
    """A model name, a preset name or a YAML file, plus overrides -> (family, validated config)."""
    if target in FAMILIES:
        family_name, data = target, {}
    else:
        if target in list_presets():
            data = _preset_data(target)
            where = f"preset {target!r}"
        elif target.endswith((".yaml", ".yml")) or Path(target).is_file():
            data = load_yaml(target)
            where = str(target)
        else:
            raise ConfigError(
                f"unknown model, preset or config file {target!r}. Models: {', '.join(sorted(FAMILIES))}; "
                f"presets: {', '.join(list_presets()) or 'none'}"
            )
        family_name = data.pop("family", None)
        if family_name not in FAMILIES:
            raise ConfigError(f"{where}: top-level key 'family' must be one of {sorted(FAMILIES)}, got {family_name!r}")
    family = get_family(family_name)
    data = apply_overrides(data, overrides)
    data.pop("family", None)
    return family, from_dict(family.config_cls, data)


def train(
    model: str,
    overrides: Overrides = (),
    run_root: str | Path | None = None,
    progress: bool = True,
    resume: str | Path | None = None,
) -> Path:
    """Train a model (name, preset or YAML) with overrides; returns the run directory.

    ``resume`` continues an existing run from its latest checkpoint (the saved config is used; only
    ``train.steps`` may be raised).
    """
    if resume is not None:
        saved = read_json(Path(resume) / "config.json")
        family = get_family(saved.pop("family"))
        data = apply_overrides(saved, overrides)
        config = from_dict(family.config_cls, data)
    else:
        family, config = resolve_config(model, overrides)
    if run_root is not None:
        config.train.out_dir = str(run_root)
    return run_training(family, config, resume=resume, progress=progress)


def train_or_resume(model: str, overrides: Overrides, run_root: str | Path, progress: bool = True) -> Path:
    """Train ``model`` under ``run_root``, continuing where a killed attempt stopped.

    For callers that re-run a whole workflow after a kill (``qmedgen benchmark``, ``qmedgen augment``). If the
    last run under ``run_root`` has exactly this config, a kill left it unfinished (status running or interrupted)
    and it has a checkpoint, it continues from there, as if never stopped; if it finished (before the caller could
    record it), it is reused; anything else starts a new run.
    """
    import json

    from qmedgen.config import to_dict
    from qmedgen.fileio import json_default
    from qmedgen.train.rundir import list_runs

    run_root = Path(run_root)
    overrides = dict(overrides) if isinstance(overrides, Mapping) else list(overrides)
    runs = list_runs(run_root)
    if runs and (runs[-1] / "status.json").is_file() and (runs[-1] / "config.json").is_file():
        family, config = resolve_config(model, overrides)
        config.train.out_dir = str(run_root)
        wanted = json.loads(json.dumps({"family": family.name, **to_dict(config)}, default=json_default))
        same = read_json(runs[-1] / "config.json") == wanted
        state = read_json(runs[-1] / "status.json").get("state") if same else None
        if state == "finished":
            return runs[-1]
        if state in ("running", "interrupted") and (runs[-1] / "checkpoints" / "latest.json").is_file():
            return train(model, overrides, run_root=run_root, progress=progress, resume=runs[-1])
    return train(model, overrides, run_root=run_root, progress=progress)


def load_run(
    run_dir: str | Path, checkpoint: str | int = "latest", device: str = "auto", dist: Dist | None = None
) -> Trainer:
    """Rebuild a run's trainer (networks only, no training data) with the weights of one checkpoint."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise UserError(f"{run_dir} is not a run directory (no config.json)")
    saved = read_json(run_dir / "config.json")
    family = get_family(saved.pop("family"))
    config = from_dict(family.config_cls, saved)
    spec = DataSpec.from_json(read_json(run_dir / "indices.json"))
    dist = dist or Dist()
    trainer = family.trainer_cls(config, spec, resolve_device(device, dist), dist, None)
    path = ckpt.find_checkpoint(run_dir / "checkpoints", checkpoint)
    ckpt.load_checkpoint(path, trainer.modules(), restore_rng=False)
    for module in trainer.modules().values():
        module.eval()
    return trainer


def sample_labels(spec: DataSpec, n_per_class: int | None = None, n: int | None = None) -> torch.Tensor:
    """Class ids to generate: ``n_per_class`` of every trained class, or ``n`` spread evenly over them."""
    if (n_per_class is None) == (n is None):
        raise ConfigError("give exactly one of n_per_class and n")
    classes = list(spec.class_ids)
    if n_per_class is not None:
        if n_per_class < 1:
            raise ConfigError(f"n_per_class must be >= 1, got {n_per_class}")
        return torch.tensor([c for c in classes for _ in range(n_per_class)], dtype=torch.long)
    if n < 1:
        raise ConfigError(f"n must be >= 1, got {n}")
    return torch.tensor([classes[i % len(classes)] for i in range(n)], dtype=torch.long).sort().values


def sample(
    run_dir: str | Path,
    n_per_class: int | None = None,
    out: str | Path | None = None,
    n: int | None = None,
    batch_size: int = 100,
    seed: int = 0,
    checkpoint: str | int = "latest",
    device: str = "auto",
    progress: bool = False,
    **opts: Any,
) -> Path:
    """Generate images from a trained run into ``out`` (class folders of PNGs plus ``samples.npz``).

    Under torchrun each rank generates its shard of the labels and rank 0 writes everything.
    """
    from tqdm.auto import tqdm

    from qmedgen.train import distributed

    run_dir = Path(run_dir)
    dist = distributed.init(device)
    trainer = load_run(run_dir, checkpoint, device, dist)
    labels = sample_labels(trainer.spec, n_per_class, n)
    mine = labels[dist.local_slice(len(labels))]
    g = torch.Generator(device=trainer.device).manual_seed(seed * 1000 + dist.rank)
    torch.manual_seed(seed * 1000 + dist.rank)
    chunks = []
    t0 = time.perf_counter()
    bar = tqdm(total=len(mine), disable=not (progress and dist.is_main), desc="sampling", unit="img")
    with torch.no_grad():
        for lab in iterate_labels(mine, batch_size):
            chunks.append(torch.from_numpy(to_pixels(trainer.sample(lab.to(trainer.device), generator=g, **opts))))
            bar.update(len(lab))
    bar.close()
    images = torch.cat(chunks) if chunks else torch.empty(0, dtype=torch.uint8)
    images = dist.all_gather_tensor(images.to(trainer.device)).cpu()
    out = Path(out) if out is not None else run_dir / f"samples-{len(labels)}"
    if dist.is_main:
        write_samples(images.numpy(), labels.numpy().astype(np.int64), out)
        write_json(
            out / "sampling.json",
            {
                "run_dir": str(run_dir),
                "checkpoint": str(checkpoint),
                "n_images": len(labels),
                "seed": seed,
                "options": opts,
                "seconds": time.perf_counter() - t0,
                "world_size": dist.world_size,
            },
        )
    dist.barrier()
    return out
