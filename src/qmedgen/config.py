"""Typed, validated configuration built from dataclasses.

Every run is described by one nested dataclass (a model family's ``Config``). Configs come from defaults, a YAML
file or preset, and ``--set a.b=c`` overrides; :func:`from_dict` checks every key and value and says exactly what is
wrong (unknown key with a suggestion, wrong type, value out of range). Fields declare constraints with
:func:`option`. A dataclass may define ``validate(self)`` for checks that involve several fields.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from qmedgen.errors import ConfigError

T = TypeVar("T")


def option(
    default: Any = dataclasses.MISSING,
    *,
    help: str = "",
    choices: Sequence[Any] | None = None,
    min: float | None = None,
    max: float | None = None,
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field with a help text and optional constraints (``choices``, inclusive ``min``/``max``)."""
    meta = {"help": help, "choices": tuple(choices) if choices is not None else None, "min": min, "max": max}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    if isinstance(default, (list, dict, set)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON/YAML-ready nested dict (tuples become lists)."""

    def convert(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [convert(v) for v in value]
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        return value

    return convert(cfg)


def _suggest(key: str, valid: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str, label: str = "config key") -> Any:
    """Check ``value`` against the annotation ``tp``; allow int->float and list->tuple; return the value.
    ``label``: what an unknown key is called in the error of a nested section (see :func:`from_dict`)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where, label)
            except ConfigError as exc:
                errors.append(str(exc))
        names = " or ".join(_type_name(a) if a is not type(None) else "null" for a in args)
        raise ConfigError(f"{where}: expected {names}, got {value!r} ({type(value).__name__})")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: expected one of {list(args)}, got {value!r}.{_suggest(str(value), args)}")
        return value
    if origin in (list, tuple, Sequence):
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r} ({type(value).__name__})")
        item = args[0] if args else Any
        items = [_coerce(v, item, f"{where}[{i}]", label) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        item = args[1] if len(args) == 2 else Any
        return {k: _coerce(v, item, f"{where}.{k}", label) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a section (mapping) for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, path=where, label=label)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r} ({type(value).__name__})")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r} ({type(value).__name__})")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r} ({type(value).__name__})")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r} ({type(value).__name__})")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r} ({type(value).__name__})")
    return value


def _check_constraints(value: Any, meta: Mapping[str, Any], where: str) -> None:
    choices = meta.get("choices")
    if choices is not None and value is not None:
        items = value if isinstance(value, (list, tuple)) else [value]
        for v in items:
            if v not in choices:
                raise ConfigError(
                    f"{where}: expected one of {list(choices)}, got {v!r}.{_suggest(str(v), [str(c) for c in choices])}"
                )
    lo, hi = meta.get("min"), meta.get("max")
    if value is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
        if lo is not None and value < lo:
            raise ConfigError(f"{where}: must be >= {lo}, got {value!r}")
        if hi is not None and value > hi:
            raise ConfigError(f"{where}: must be <= {hi}, got {value!r}")


def from_dict(cls: type[T], data: Mapping[str, Any] | None, *, path: str = "", label: str = "config key") -> T:
    """Build and validate ``cls`` from a (possibly partial) nested mapping; missing keys take defaults (a field
    without a default is a required key). ``label`` names an unknown key in the error (``unknown config key 'x'``)."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            where = f"{path}.{key}" if path else key
            raise ConfigError(
                f"unknown {label} '{where}'.{_suggest(key, list(fields))} Valid keys"
                f"{' in ' + path if path else ''}: {', '.join(fields)}"
            )
    required = [name for name, f in fields.items() if f.init and not dataclasses.is_dataclass(hints[name])
                and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    for name in required:
        if name not in data:
            raise ConfigError(f"missing required key '{f'{path}.{name}' if path else name}'")
    kwargs = {}
    for name, f in fields.items():
        where = f"{path}.{name}" if path else name
        if name in data:
            given = data[name]
            has_factory = f.default_factory is not dataclasses.MISSING
            if dataclasses.is_dataclass(hints[name]) and isinstance(given, Mapping) and has_factory:
                # a partial section overrides the family's defaults for it, not the section class's defaults
                given = merge(to_dict(f.default_factory()), given)
            value = _coerce(given, hints[name], where, label)
        elif dataclasses.is_dataclass(hints[name]) and f.default is dataclasses.MISSING:
            if f.default_factory is not dataclasses.MISSING:
                continue
            value = from_dict(hints[name], {}, path=where, label=label)
        else:
            continue
        _check_constraints(value, f.metadata, where)
        kwargs[name] = value
    try:
        obj = cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{path or cls.__name__}: {exc}") from exc
    for name, f in fields.items():  # defaults are checked too (cheap, and catches bad presets)
        _check_constraints(getattr(obj, name), f.metadata, f"{path}.{name}" if path else name)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()
    return obj


def check_betas(section: Any, prefix: str, names: Sequence[str]) -> None:
    """Adam-style ``betas`` fields must be two numbers in [0, 1)."""
    for name in names:
        betas = getattr(section, name)
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ConfigError(f"{prefix}.{name} must be two numbers in [0, 1), got {betas}")


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge: sections merge key by key, other values are replaced."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> dict[str, Any]:
    """``"a.b=3"`` -> ``{"a": {"b": 3}}``; the value is parsed as YAML (numbers, true/false, null, [lists])."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.subkey=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc})") from exc
    out: dict[str, Any] = {}
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str] | Mapping[str, Any]) -> dict[str, Any]:
    """Apply ``--set`` style overrides (a list of ``key=value`` strings, or a flat dotted mapping)."""
    out = dict(data)
    items = overrides.items() if isinstance(overrides, Mapping) else None
    if items is not None:
        for key, value in items:
            out = merge(out, parse_override(f"{key}={yaml.safe_dump(value, default_flow_style=True).strip()}"))
        return out
    for text in overrides:
        out = merge(out, parse_override(text))
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with errors that name the file (and the line, for syntax errors)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def describe(cfg: Any, prefix: str = "") -> list[tuple[str, str, Any, str]]:
    """(dotted key, type, default, help) for every leaf option of a config class or instance.

    A class is described through its default instance, so a family's own section defaults (its
    ``default_factory`` values) are shown, not those of the section classes.
    """
    obj = from_dict(cfg, {}) if isinstance(cfg, type) else cfg
    rows = []
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        key = f"{prefix}{f.name}"
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            rows.extend(describe(value, key + "."))
            continue
        rows.append((key, _type_name(hints[f.name]), value, f.metadata.get("help", "")))
    return rows
