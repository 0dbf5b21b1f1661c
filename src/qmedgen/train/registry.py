"""Model families known to ``qmedgen train``: name -> module exposing ``Config`` and ``Trainer``.

A family module may also define ``register_commands(subparsers)`` for extra top-level commands. Baselines join
the zoo by adding a line here.

A family outside the package needs no line here: a preset's ``family:`` key (or ``qmedgen train``'s model
argument) may be the dotted path of any importable module that defines ``Config`` and ``Trainer``, e.g.
``family: mylab.families.tiny``. The first lookup imports it and registers it under that path, which is then the
family's name (in ``config.json`` and the run directory's name; so it must stay importable to resume or sample).
"""

from __future__ import annotations

import importlib
import importlib.util
import types

from qmedgen.errors import ConfigError
from qmedgen.train.loop import Family


class _Families(dict[str, str]):
    """name -> module path; ``name in FAMILIES`` also discovers a module given by its dotted path (see above)."""

    def __contains__(self, name: object) -> bool:
        return super().__contains__(name) or _discover(name)


FAMILIES: dict[str, str] = _Families({
    "mediqgan": "qmedgen.train.mediqgan",
    "qdiffusion": "qmedgen.train.qdiffusion",
    "dcgan": "qmedgen.train.baselines.dcgan",
    "wgan-gp": "qmedgen.train.baselines.wgan_gp",
    "patch-qgan": "qmedgen.train.baselines.patch_qgan",
    "mosaiq": "qmedgen.train.baselines.mosaiq",
    "ddpm": "qmedgen.train.baselines.ddpm",
    "fastgan": "qmedgen.train.baselines.fastgan",
})


def _discover(name: object) -> bool:
    """Register ``name`` if it is the dotted path (``a.b``; not a ``*.yaml`` file name) of an importable module;
    ConfigError if that module defines no ``Config`` or ``Trainer``."""
    if not isinstance(name, str) or "." not in name or name.endswith((".yaml", ".yml", ".json")):
        return False
    if not all(part.isidentifier() for part in name.split(".")):
        return False
    try:
        if importlib.util.find_spec(name) is None:
            return False
    except ModuleNotFoundError:  # a parent package is missing
        return False
    module = importlib.import_module(name)
    missing = [attr for attr in ("Config", "Trainer") if not hasattr(module, attr)]
    if missing:
        raise ConfigError(f"model family module {name!r} defines no {' or '.join(missing)}")
    FAMILIES[name] = name
    return True


def family_module(name: str) -> types.ModuleType:
    if name not in FAMILIES:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(sorted(FAMILIES))}")
    return importlib.import_module(FAMILIES[name])


def get_family(name: str) -> Family:
    module = family_module(name)
    return Family(name=name, config_cls=module.Config, trainer_cls=module.Trainer)


def family_modules() -> list[types.ModuleType]:
    """Every family module, in :data:`FAMILIES` order."""
    return [importlib.import_module(path) for path in FAMILIES.values()]
