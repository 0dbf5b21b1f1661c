"""The schema of a benchmark protocol (``protocols/*.yaml``), read through :mod:`qmedgen.config` like every
training config: an unknown or misspelled key is an error that names it and suggests the closest valid one, a
value of the wrong type or out of range says what was expected.

:func:`parse_protocol` checks a protocol mapping against :class:`Protocol` and returns the typed object; the
benchmark runner (:mod:`qmedgen.evaluate.benchmark`) keeps working on the mapping itself, exactly as written in
the YAML (plus the defaults filled in), because that mapping is what ``OUT/protocol.yaml`` records and what the
cell hashes in ``OUT/state.json`` are computed from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from qmedgen.config import from_dict, option
from qmedgen.errors import ConfigError
from qmedgen.evaluate.evaluation import EvalConfig
from qmedgen.evaluate.utility import UtilityConfig


@dataclass
class ModelEntry:
    """One compared model: ``models.<label>``."""

    model: str = option(help="model family or preset, e.g. mediqgan, qdiffusion-fewshot (qmedgen train --list)")
    overrides: dict[str, Any] = option({}, help="dotted config overrides of this model, applied after 'train'")


@dataclass
class KeysSection:
    """The model-config keys that receive the cell's dataset, size, subset size and seeds."""

    data_name: str = option("data.name", help="key of the dataset name")
    size: str = option("data.size", help="key of the image size")
    n_per_class: str = option("data.n_per_class", help="key of the subset size (images per class)")
    subset_seed: str = option("data.subset_seed", help="key of the few-shot draw's seed")
    seed: str = option("train.seed", help="key of the training seed")


@dataclass
class EvaluateSection(EvalConfig):
    """``evaluate``: :class:`~qmedgen.evaluate.evaluation.EvalConfig` fields (``seed`` defaults to the cell seed)
    plus what :func:`~qmedgen.evaluate.pipeline.evaluate_samples` compares the samples with."""

    extractor: str = option("domain", help="feature extractor: domain, inception or a PATH")
    conditional: bool = option(True, help="also score class-conditional accuracy with the domain classifier")
    real_baseline: bool = option(True, help="also score real images of another split (the 'perfect generator' row)")
    train_data: str = option("auto", help="training images for memorisation: auto, none or NAME[:SPLIT]")


@dataclass
class UtilitySection(UtilityConfig):
    """``utility``: whether to run the downstream-utility study, and its
    :class:`~qmedgen.evaluate.utility.UtilityConfig` fields."""

    enabled: bool = option(False, help="run the utility study for every cell")


@dataclass
class Protocol:
    """A benchmark protocol: models x subset sizes x seeds on one dataset."""

    name: str = option(help="the protocol's name (default output folder benchmarks/<name>)")
    data: str = option(help="dataset name (qmedgen data list)")
    models: dict[str, ModelEntry] = option(help="label -> {model: NAME, overrides: {...}}")
    description: str = option("", help="what the protocol compares (shown by qmedgen benchmark --list)")
    size: int = option(28, min=1, help="image size of training and evaluation")
    split: str = option("test", help="real reference split of the evaluation")
    seeds: list[int] = option([0], help="cell seeds: the few-shot draw and the training seed")
    subset_sizes: list[int | None] = option([None], help="real images per class; null = the full training split")
    reference: str | None = option(None, help="model label that the others are compared with, paired by seed")
    train: dict[str, Any] = option({}, help="dotted config overrides of every model")
    keys: KeysSection = option(default_factory=KeysSection)
    sample: dict[str, Any] = option({}, help="n_per_class (default 100) and options of the family's sampler")
    evaluate: EvaluateSection = option(default_factory=EvaluateSection)
    utility: UtilitySection = option(default_factory=UtilitySection)
    quick: dict[str, Any] | None = option(None, help="a partial protocol merged in by --quick")

    def validate(self) -> None:
        if not self.models:
            raise ConfigError("'models' must map labels to {model: NAME, overrides: {...}}")
        if self.reference is not None and self.reference not in self.models:
            raise ConfigError(f"reference {self.reference!r} is not one of the models {sorted(self.models)}")
        n = self.sample.get("n_per_class", 100)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"sample.n_per_class: expected an integer >= 1, got {n!r}")


def parse_protocol(data: Mapping[str, Any], where: str = "protocol") -> Protocol:
    """``data`` checked against :class:`Protocol`; a ConfigError names ``where`` and the offending key (with the
    closest valid key when it looks misspelled)."""
    try:
        return from_dict(Protocol, data, label="key")
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
