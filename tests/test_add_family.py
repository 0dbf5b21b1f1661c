"""docs/architecture.md's recipe: a model family added as one module plus one preset, nothing else.

The family module and the preset are the two blocks of the document, written into a temporary directory on
``sys.path``; the preset names the module by its dotted path, so nothing in qmedgen is edited or registered by
hand. The family is trained for 2 steps through the public API and sampled from.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from qmedgen.errors import ConfigError
from qmedgen.train import api, registry

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"
MODULE = "qmedgen_ext.tiny"


def _doc_block(first_line: str) -> str:
    """The fenced code block of the architecture document that starts with ``first_line``."""
    for block in re.findall(r"```[a-z]*\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S):
        if block.startswith(first_line + "\n"):
            return block
    raise AssertionError(f"docs/architecture.md has no code block starting with {first_line!r}")


@pytest.fixture
def extension(tmp_path, monkeypatch):
    """``tmp/ext/qmedgen_ext/tiny.py`` (a namespace package: no ``__init__.py``) importable; forgotten afterwards."""
    package = tmp_path / "ext" / "qmedgen_ext"
    package.mkdir(parents=True)
    (package / "tiny.py").write_text(_doc_block("# qmedgen_ext/tiny.py"), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path / "ext"))
    importlib.invalidate_caches()
    yield tmp_path
    dict.pop(registry.FAMILIES, MODULE, None)
    for name in [m for m in sys.modules if m == "qmedgen_ext" or m.startswith("qmedgen_ext.")]:
        del sys.modules[name]


def test_one_file_and_one_preset_train_and_sample(extension):
    preset = extension / "tiny.yaml"
    preset.write_text(_doc_block("# tiny.yaml"), encoding="utf-8")
    assert MODULE not in dict.keys(registry.FAMILIES)  # not registered anywhere in qmedgen

    run = api.train(str(preset), run_root=extension / "runs", progress=False)

    config = json.loads((run / "config.json").read_text())
    assert config["family"] == MODULE and config["train"]["steps"] == 2 and config["model"]["hidden"] == 16
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()][-1] == 2
    assert MODULE in registry.FAMILIES and run.name.startswith(f"00000-{MODULE}-")

    out = api.sample(run, n_per_class=2, out=extension / "samples", batch_size=5)
    data = np.load(out / "samples.npz")
    assert data["images"].shape == (16, 28, 28, 3) and data["images"].dtype == np.uint8  # 8 classes x 2
    assert np.bincount(data["labels"]).tolist() == [2] * 8
    assert len(list((out / "class_0").glob("*.png"))) == 2


def test_family_key_discovery_is_limited_to_family_modules(extension, tmp_path):
    assert "qmedgen_ext.missing" not in registry.FAMILIES  # not importable: unknown, as before
    assert "tiny.yaml" not in registry.FAMILIES and "no-dots" not in registry.FAMILIES
    with pytest.raises(ConfigError, match="defines no Config or Trainer"):
        "qmedgen.errors" in registry.FAMILIES  # noqa: B015  (importable, but not a family)
    bad = tmp_path / "bad.yaml"
    bad.write_text("family: qmedgen_ext.missing\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="top-level key 'family'"):
        api.resolve_config(str(bad))
