"""Config validation: clear errors for unknown keys, wrong types and out-of-range values."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from qmedgen.config import apply_overrides, describe, from_dict, load_yaml, option, parse_override, to_dict
from qmedgen.errors import ConfigError
from qmedgen.train.sections import DataConfig, TrainConfig


@dataclass
class Inner:
    depth: int = option(3, min=0, max=20)
    mode: str = option("mean", choices=("mean", "all"))
    rate: float = option(0.1, min=0.0)
    name: str | None = option(None)


@dataclass
class Outer:
    inner: Inner = option(default_factory=Inner)
    data: DataConfig = option(default_factory=DataConfig)
    train: TrainConfig = option(default_factory=TrainConfig)
    tags: list[str] = option(default_factory=list)


def test_defaults_and_roundtrip():
    cfg = from_dict(Outer, {})
    assert cfg.inner.depth == 3 and cfg.train.steps == 1000
    assert from_dict(Outer, to_dict(cfg)) == cfg


def test_unknown_key_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"unknown config key 'inner.dpeth'.*Did you mean 'depth'"):
        from_dict(Outer, {"inner": {"dpeth": 4}})
    with pytest.raises(ConfigError, match="Did you mean 'train'"):
        from_dict(Outer, {"trian": {}})


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        ({"inner": {"depth": "four"}}, r"inner.depth: expected an integer, got 'four'"),
        ({"inner": {"depth": 2.5}}, r"inner.depth: expected an integer"),
        ({"inner": {"depth": 50}}, r"inner.depth: must be <= 20, got 50"),
        ({"inner": {"rate": -1}}, r"inner.rate: must be >= 0.0"),
        ({"inner": {"mode": "mena"}}, r"inner.mode: expected one of \['mean', 'all'\], got 'mena'"),
        ({"train": {"amp": "yes"}}, r"train.amp: expected true/false"),
        ({"data": {"n_per_class": 5, "n_total": 10}}, r"exclusive"),
        ({"tags": "a"}, r"tags: expected a list"),
        ({"inner": 3}, r"inner: expected a section"),
    ],
)
def test_bad_values_name_key_expected_and_got(data, pattern):
    with pytest.raises(ConfigError, match=pattern):
        from_dict(Outer, data)


def test_int_accepted_for_float_and_optional():
    cfg = from_dict(Outer, {"inner": {"rate": 1, "name": None}})
    assert cfg.inner.rate == 1.0 and isinstance(cfg.inner.rate, float)


def test_overrides_parse_yaml_values():
    assert parse_override("a.b=3") == {"a": {"b": 3}}
    data = apply_overrides({"inner": {"depth": 1, "mode": "all"}}, ["inner.depth=7", "data.classes=[1, 2]"])
    cfg = from_dict(Outer, data)
    assert cfg.inner.depth == 7 and cfg.inner.mode == "all" and cfg.data.classes == [1, 2]
    assert from_dict(Outer, apply_overrides({}, {"train.amp": True})).train.amp is True
    with pytest.raises(ConfigError, match=r"key\.subkey=value"):
        parse_override("nonsense")


def test_yaml_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML"):
        load_yaml(bad)
    with pytest.raises(ConfigError, match="config file not found"):
        load_yaml(tmp_path / "missing.yaml")


def test_describe_lists_leaf_options():
    keys = [row[0] for row in describe(Outer)]
    assert "inner.depth" in keys and "train.steps" in keys and "data.name" in keys


@dataclass
class Family:
    train: TrainConfig = option(default_factory=lambda: TrainConfig(batch_size=64, steps=5))


def test_partial_section_keeps_the_family_defaults():
    cfg = from_dict(Family, {"train": {"steps": 9}})
    assert cfg.train.batch_size == 64 and cfg.train.steps == 9


def test_describe_shows_the_family_defaults():
    rows = {key: default for key, _, default, _ in describe(Family)}
    assert rows["train.batch_size"] == 64 and rows["train.steps"] == 5
