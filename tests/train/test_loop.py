"""Shared training loop: run directories, checkpoints, exact resume, divergence, sampling output."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from qmedgen.config import from_dict
from qmedgen.train import api, registry
from qmedgen.train.checkpoint import list_checkpoints
from qmedgen.train.loop import BatchStream, TrainingDiverged, run_training
from tests.train import toy_family


@pytest.fixture
def toy(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "qmedgen_toy_family", toy_family)
    monkeypatch.setitem(registry.FAMILIES, "toy", "qmedgen_toy_family")
    monkeypatch.setattr(toy_family.ToyTrainer, "kill_at", None)
    monkeypatch.setattr(toy_family.ToyTrainer, "nan_at", None)
    return tmp_path


def make_config(tmp_path, **train):
    data = {"name": "embedded-bloodmnist", "n_per_class": 2}
    return from_dict(toy_family.Config, {"data": data, "train": {"out_dir": str(tmp_path / "runs"), **train}})


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(list_checkpoints(run_dir / "checkpoints")[-1] / "weights.safetensors"))


def test_run_directory_contents(toy):
    cfg = make_config(toy, steps=4, checkpoint_every=2, sample_every=2)
    run = run_training(toy_family.FAMILY, cfg, progress=False)
    assert run.name.startswith("00000-toy-")
    for name in ("config.json", "environment.json", "indices.json", "metrics.jsonl", "status.json"):
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["family"] == "toy" and config["train"]["steps"] == 4
    indices = json.loads((run / "indices.json").read_text())
    assert len(indices["indices"]) == 16 and indices["split"] == "train"  # 2 per class x 8 classes
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == ["step-00000002", "step-00000004"]
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["grid-step-00000002.png", "grid-step-00000004.png"]
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3, 4]
    # A second run never reuses (or resumes) the first one.
    run2 = run_training(toy_family.FAMILY, cfg, progress=False)
    assert run2.name.startswith("00001-") and run2 != run


def test_kill_and_resume_equals_uninterrupted_run(toy, monkeypatch):
    cfg = make_config(toy, steps=7, checkpoint_every=3, sample_every=3)
    straight = run_training(toy_family.FAMILY, cfg, progress=False)

    monkeypatch.setattr(toy_family.ToyTrainer, "kill_at", 5)  # killed after the step-3 checkpoint, mid-way
    with pytest.raises(KeyboardInterrupt):
        run_training(toy_family.FAMILY, cfg, progress=False)
    killed = sorted((toy / "runs").iterdir())[-1]
    assert json.loads((killed / "status.json").read_text())["state"] == "interrupted"
    monkeypatch.setattr(toy_family.ToyTrainer, "kill_at", None)
    resumed = run_training(toy_family.FAMILY, cfg, resume=killed, progress=False)
    assert resumed == killed
    a, b = final_weights(straight), final_weights(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    log_a = [json.loads(x)["loss"] for x in (straight / "metrics.jsonl").read_text().splitlines()]
    log_b = [json.loads(x)["loss"] for x in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert log_a == log_b


def test_resume_refuses_changed_config(toy):
    cfg = make_config(toy, steps=2, checkpoint_every=1)
    run = run_training(toy_family.FAMILY, cfg, progress=False)
    changed = make_config(toy, steps=4, checkpoint_every=1, batch_size=4)
    with pytest.raises(Exception, match="batch_size"):
        run_training(toy_family.FAMILY, changed, resume=run, progress=False)
    longer = make_config(toy, steps=3, checkpoint_every=1)  # extending the number of steps is allowed
    run_training(toy_family.FAMILY, longer, resume=run, progress=False)
    assert json.loads((run / "status.json").read_text())["step"] == 3


def test_nan_stops_and_keeps_last_good_checkpoint(toy, monkeypatch):
    monkeypatch.setattr(toy_family.ToyTrainer, "nan_at", 2)
    cfg = make_config(toy, steps=5, checkpoint_every=1)
    with pytest.raises(TrainingDiverged, match="loss became non-finite at step 3"):
        run_training(toy_family.FAMILY, cfg, progress=False)
    run = sorted((toy / "runs").iterdir())[-1]
    assert json.loads((run / "status.json").read_text())["state"] == "diverged"
    assert list_checkpoints(run / "checkpoints")[-1].name == "step-00000002"


def test_seed_determinism(toy):
    cfg = make_config(toy, steps=3)
    a = final_weights(run_training(toy_family.FAMILY, cfg, progress=False))
    b = final_weights(run_training(toy_family.FAMILY, cfg, progress=False))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_api_train_and_sample(toy):
    run = api.train(
        "toy", ["data.name=embedded-bloodmnist", "data.n_per_class=2", "train.steps=2"], run_root=toy / "r",
        progress=False,
    )
    out = api.sample(run, n_per_class=3, out=toy / "samples", batch_size=5)
    data = np.load(out / "samples.npz")
    assert data["images"].shape == (24, 28, 28, 3) and data["images"].dtype == np.uint8
    assert np.bincount(data["labels"]).tolist() == [3] * 8
    assert len(list((out / "class_7").glob("*.png"))) == 3
    again = np.load(api.sample(run, n_per_class=3, out=toy / "samples2", batch_size=5) / "samples.npz")
    assert np.array_equal(again["images"], data["images"])  # same seed -> same images


def test_batch_stream_is_a_pure_function_of_position():
    a = BatchStream(10, seed=3)
    first = torch.cat([a.take(4) for _ in range(6)])
    b = BatchStream(10, seed=3, position=12)
    assert torch.equal(b.take(12), first[12:])
    assert sorted(first[:10].tolist()) == list(range(10))  # each epoch is a permutation
