"""Model families known to ``qmedgen train``: name -> module exposing ``Config`` and ``Trainer``.

A family module may also define ``register_commands(subparsers)`` for extra top-level commands
(e.g. ``qmedgen prototypes``). Baselines join the zoo by adding a line here.
"""

from __future__ import annotations

import importlib
import types

from qmedgen.errors import ConfigError
from qmedgen.train.loop import Family

FAMILIES: dict[str, str] = {
    "mediqgan": "qmedgen.train.mediqgan",
    "qdiffusion": "qmedgen.train.qdiffusion",
    "dcgan": "qmedgen.train.baselines.dcgan",
    "wgan-gp": "qmedgen.train.baselines.wgan_gp",
    "patch-qgan": "qmedgen.train.baselines.patch_qgan",
    "mosaiq": "qmedgen.train.baselines.mosaiq",
    "ddpm": "qmedgen.train.baselines.ddpm",
    "fastgan": "qmedgen.train.baselines.fastgan",
}


def family_module(name: str) -> types.ModuleType:
    if name not in FAMILIES:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(sorted(FAMILIES))}")
    return importlib.import_module(FAMILIES[name])


def get_family(name: str) -> Family:
    module = family_module(name)
    return Family(name=name, config_cls=module.Config, trainer_cls=module.Trainer)


def available_modules() -> list[types.ModuleType]:
    """Family modules that import (a family still being written is skipped)."""
    out = []
    for name, path in FAMILIES.items():
        try:
            out.append(importlib.import_module(path))
        except ModuleNotFoundError as exc:
            if exc.name is None or not path.startswith(exc.name):
                raise
            del name
    return out
