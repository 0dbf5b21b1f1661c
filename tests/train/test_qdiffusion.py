"""The qdiffusion family on the shared loop: a finite step, exact resume, sampling, presets and bad input."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from qmedgen.errors import ConfigError
from qmedgen.train import api
from qmedgen.train.checkpoint import list_checkpoints
from qmedgen.train.distributed import Dist
from qmedgen.train.loop import load_training_data, seed_everything

REPO = Path(__file__).resolve().parents[2]
TINY = [
    "data.name=embedded-bloodmnist",
    "data.n_per_class=2",
    "train.batch_size=6",
    "train.sample_every=0",
    "train.grid_per_class=1",
    "model.n_qubits=4",
    "model.depth=2",
    "diffusion.timesteps=100",
    "diffusion.sample_steps=2",
]


def shared_data() -> Path:
    env = os.environ.get("QMEDGEN_SHARED_DATA")
    path = Path(env) if env else REPO / ".." / "shared" / "data"
    if not (path / "mnist").is_dir():
        pytest.skip(f"MNIST not found under {path} (set QMEDGEN_SHARED_DATA)")
    return path.resolve()


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(list_checkpoints(run_dir / "checkpoints")[-1] / "weights.safetensors"))


def test_one_training_step_is_finite_and_trains_the_circuit(tmp_path):
    family, config = api.resolve_config("qdiffusion", [*TINY, "train.steps=1"])
    seed_everything(0)
    data = load_training_data(config.data, torch.device("cpu"), Dist(), 0)
    trainer = family.trainer_cls(config, data.spec, torch.device("cpu"), Dist(), data)
    before = trainer.model.gate.circuit_weights.detach().clone()
    metrics = trainer.train_step(0)
    assert all(np.isfinite(v) for v in metrics.values())
    after = trainer.model.gate.circuit_weights.detach()
    assert not torch.equal(before, after)  # Adam moved every live circuit weight
    assert not torch.equal(trainer.ema.gate.circuit_weights, before)  # EMA follows


def test_mnist_step_when_the_real_data_is_present(tmp_path):
    root = shared_data()
    _, config = api.resolve_config("qdiffusion", [*TINY, "data.name=mnist", f"data.root={root}",
                                                  "data.classes=[3]", "data.n_per_class=null", "data.n_total=10"])
    data = load_training_data(config.data, torch.device("cpu"), Dist(), 0)
    assert data.spec.channels == 1 and set(data.labels.tolist()) == {3}
    trainer = api.get_family("qdiffusion").trainer_cls(config, data.spec, torch.device("cpu"), Dist(), data)
    assert np.isfinite(trainer.train_step(0)["loss"])


@pytest.mark.parametrize("extra", [["diffusion.noise=quantum", "diffusion.schedule=tailored",
                                    "diffusion.importance_bins=2", "diffusion.importance_history=2"]])
def test_resume_gives_identical_parameters(tmp_path, extra):
    overrides = [*TINY, *extra, "train.checkpoint_every=2", f"train.out_dir={tmp_path}"]
    full = api.train("qdiffusion", [*overrides, "train.steps=4"], progress=False)
    part = api.train("qdiffusion", [*overrides, "train.steps=3"], progress=False)  # checkpoints at 2 and 3
    resumed = api.train("qdiffusion", ["train.steps=4"], progress=False, resume=part)
    a, b = final_weights(full), final_weights(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_sample_command_output(tmp_path):
    run = api.train("qdiffusion", [*TINY, "train.steps=1", f"train.out_dir={tmp_path}"], progress=False)
    out = api.sample(run, n=5, out=tmp_path / "s", sampler="ddpm", steps=3, noise="quantum")
    data = np.load(out / "samples.npz")
    assert data["images"].shape == (5, 28, 28, 3) and data["images"].dtype == np.uint8
    assert len(data["labels"]) == 5 and {p.name for p in out.iterdir()} >= {"samples.npz", "sampling.json"}
    trainer = api.load_run(run)
    images = trainer.sample(torch.tensor([0, 1]), sampler="ddim", steps=2, guidance=2.0, use_ema=False)
    assert images.shape == (2, 3, 28, 28) and torch.isfinite(images).all()
    with pytest.raises(ConfigError, match="unknown sampling option"):
        trainer.sample(torch.tensor([0]), sampler="ddim", stepz=2)


@pytest.mark.parametrize("preset", ["qdiffusion-mnist", "qdiffusion-pathmnist", "qdiffusion-fewshot"])
def test_presets_resolve(preset):
    family, config = api.resolve_config(preset)
    assert family.name == "qdiffusion"
    assert config.train.batch_size == 64 and config.optim.lr == 3e-4 and config.optim.ema_decay == 0.999
    assert config.diffusion.schedule in ("cosine", "tailored") and config.diffusion.timesteps == 1000


def test_bad_config_is_named():
    with pytest.raises(ConfigError, match=r"model\.gate"):
        api.resolve_config("qdiffusion", ["model.gate=quantm"])
    with pytest.raises(ConfigError, match=r"diffusion\.noise"):
        api.resolve_config("qdiffusion", ["diffusion.noise=pink"])
    with pytest.raises(ConfigError, match="bottleneck_shots"):
        api.resolve_config("qdiffusion", ["model.gate=none", "model.bottleneck_shots=100"])
    with pytest.raises(ConfigError, match="sample_steps"):
        api.resolve_config("qdiffusion", ["diffusion.timesteps=20", "diffusion.sample_steps=50"])
