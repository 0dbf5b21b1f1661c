"""Checkpoints that survive a kill and load without executing pickled code.

A checkpoint is a directory ``checkpoints/step-00000500/`` holding

* ``weights.safetensors`` - every module's state dict, keys prefixed by the module's name (``generator.``, ...);
* ``state.pt`` - optimiser and grad-scaler states and RNG states, only tensors and plain Python values, read with
  ``torch.load(weights_only=True)``;
* ``meta.json`` - step and family-specific JSON state (e.g. the batch stream position).

It is written under a temporary name and renamed into place; ``latest.json`` is then replaced atomically, so the
newest complete checkpoint is always the one ``latest.json`` names.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from qmedgen.errors import UserError
from qmedgen.fileio import read_json, write_json

WEIGHTS = "weights.safetensors"
STATE = "state.pt"
META = "meta.json"
LATEST = "latest.json"


def step_dir_name(step: int) -> str:
    return f"step-{step:08d}"


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) RNG states as tensors and plain values."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": _to_plain(random.getstate()),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *[_to_plain(v) for v in np_state[2:]]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_to_tuple(state["python"]))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_to_plain(v) for v in value]
    return value


def _to_tuple(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_to_tuple(v) for v in value)
    return value


def save_checkpoint(
    ckpt_root: str | Path,
    step: int,
    modules: dict[str, torch.nn.Module],
    optimizers: dict[str, Any],
    meta: dict[str, Any] | None = None,
    keep: int = 3,
) -> Path:
    """Write a complete checkpoint for ``step`` atomically and prune all but the ``keep`` newest."""
    root = Path(ckpt_root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / step_dir_name(step)
    tmp = root / f".tmp-{step_dir_name(step)}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    tensors = {}
    for name, module in modules.items():
        for key, value in module.state_dict().items():
            tensors[f"{name}.{key}"] = value.detach().to("cpu").contiguous().clone()
    save_file(tensors, str(tmp / WEIGHTS))
    state = {
        "optimizers": {name: opt.state_dict() for name, opt in optimizers.items() if opt is not None},
        "rng": rng_state(),
    }
    torch.save(state, tmp / STATE)
    write_json(tmp / META, {"step": step, **(meta or {})})
    if final.exists():  # re-written after a resume at the same step: swap, then delete the old copy
        trash = root / f".old-{step_dir_name(step)}"
        if trash.exists():
            shutil.rmtree(trash)
        final.rename(trash)
        tmp.rename(final)
        shutil.rmtree(trash)
    else:
        tmp.rename(final)
    write_json(root / LATEST, {"step": step, "path": final.name})
    for old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(ckpt_root: str | Path) -> list[Path]:
    """Complete checkpoint directories, oldest first."""
    root = Path(ckpt_root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and (p / META).exists())


def find_checkpoint(ckpt_root: str | Path, which: str | int = "latest") -> Path:
    """``"latest"``, a step number, or a checkpoint directory path."""
    root = Path(ckpt_root)
    if isinstance(which, str) and which != "latest" and Path(which).is_dir():
        return Path(which)
    if which == "latest":
        if not (root / LATEST).exists():
            raise UserError(f"no checkpoint in {root} (missing {LATEST}); has this run saved one yet?")
        path = root / read_json(root / LATEST)["path"]
    else:
        path = root / step_dir_name(int(which))
    if not (path / META).exists():
        steps = ", ".join(p.name for p in list_checkpoints(root)) or "none"
        raise UserError(f"checkpoint {path} not found or incomplete; available: {steps}")
    return path


def load_checkpoint(
    path: str | Path,
    modules: dict[str, torch.nn.Module],
    optimizers: dict[str, Any] | None = None,
    restore_rng: bool = True,
    map_location: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Load weights (and optimiser/RNG state) into the given objects; return the checkpoint's meta JSON."""
    path = Path(path)
    try:
        tensors = load_file(str(path / WEIGHTS), device="cpu")
    except Exception as exc:  # safetensors raises its own error types, OSError for a missing file
        raise UserError(f"{path / WEIGHTS}: cannot read weights ({exc})") from exc
    for name, module in modules.items():
        prefix = f"{name}."
        sub = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        if not sub and any(True for _ in module.state_dict()):
            raise UserError(f"{path / WEIGHTS}: no weights for module '{name}' (has: {_prefixes(tensors)})")
        missing, unexpected = module.load_state_dict(sub, strict=False)
        if missing or unexpected:
            raise UserError(
                f"{path / WEIGHTS}: weights do not match module '{name}': missing {missing[:5]}, "
                f"unexpected {unexpected[:5]} (was the run's config changed?)"
            )
    if optimizers or restore_rng:
        state = torch.load(path / STATE, map_location=map_location, weights_only=True)
        for name, opt in (optimizers or {}).items():
            if opt is not None:
                opt.load_state_dict(state["optimizers"][name])
        if restore_rng:
            set_rng_state(state["rng"])
    return read_json(path / META)


def _prefixes(tensors: dict[str, torch.Tensor]) -> str:
    return ", ".join(sorted({k.split(".", 1)[0] for k in tensors}))
