"""Baseline families through the shared loop: finite steps, sampling API, exact resume, CLI, presets."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from qmedgen.cli import main
from qmedgen.train import api
from qmedgen.train.checkpoint import list_checkpoints
from qmedgen.train.registry import FAMILIES, get_family

DATA = ["data.name=embedded-bloodmnist", "data.size=28", "data.n_per_class=2", "train.batch_size=4",
        "train.checkpoint_every=1", "train.log_every=1", "train.sample_every=0", "train.grid_per_class=1"]
TINY = {
    "dcgan": ["model.g_width=4", "model.d_width=4", "model.latent_dim=4", "model.embed_dim=2"],
    "wgan-gp": ["model.g_width=4", "model.critic_channels=[4,8]", "model.critic_embed_dim=4", "model.latent_dim=4",
                "gan.n_critic=2"],
    "patch-qgan": ["model.n_qubits=4", "model.n_ancilla=1", "model.depth=1", "model.disc_hidden=[8]"],
    "mosaiq": ["model.n_qubits=4", "model.n_subgenerators=2", "model.depth=1", "model.disc_hidden=[8]"],
    "fastgan": ["model.g_width=4", "model.d_width=4", "model.decoder_width=4", "model.latent_dim=4",
                "model.embed_dim=2"],
    "ddpm": ["model.base_channels=8", "model.channel_mults=[1,2]", "model.attention_resolutions=[]",
             "diffusion.timesteps=20", "diffusion.sample_steps=2"],
}
QUANTUM = ("patch-qgan", "mosaiq")


def weights(run, index=-1):
    return load_file(str(list_checkpoints(run / "checkpoints")[index] / "weights.safetensors"))


@pytest.mark.parametrize("name", list(TINY))
def test_train_sample_and_exact_resume(name, tmp_path):
    overrides = DATA + TINY[name]
    straight = api.train(name, [*overrides, "train.steps=3"], run_root=tmp_path / "a", progress=False)
    rows = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(math.isfinite(v) for r in rows for v in r.values())

    # stopped after 2 steps, then resumed to 3: the same parameters, bit for bit, as the straight run (CPU)
    part = api.train(name, [*overrides, "train.steps=2"], run_root=tmp_path / "b", progress=False)
    resumed = api.train(name, ["train.steps=3"], resume=part, progress=False)
    a, b = weights(straight), weights(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key

    out = api.sample(straight, n_per_class=1, out=tmp_path / "samples", batch_size=5)
    data = np.load(out / "samples.npz")
    assert data["images"].shape == (8, 28, 28, 3) and data["images"].dtype == np.uint8
    assert data["labels"].tolist() == list(range(8))

    if name == "mosaiq":
        assert all(0 < r["noise_bound"] <= 3 * math.pi / 4 for r in rows)
    if name in QUANTUM:  # the circuit weights train
        first, last = weights(straight, 0)["generator.weights"], a["generator.weights"]
        assert not torch.equal(first, last)


def test_cli_train_and_registry(tmp_path):
    assert {"dcgan", "wgan-gp", "patch-qgan", "mosaiq", "ddpm", "fastgan"} <= set(FAMILIES)
    code = main(["train", "patch-qgan", "--data", "embedded-retinamnist", "--n-per-class", "1", "--steps", "1",
                 "--batch-size", "2", "--out", str(tmp_path), "--set", "model.n_qubits=3", "--set", "model.depth=1",
                 "--set", "model.disc_hidden=[4]", "--set", "train.grid_per_class=1"])
    assert code == 0
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert run.name.startswith("00000-patch-qgan-embedded-retinamnist")
    assert json.loads((run / "status.json").read_text())["state"] == "finished"


def test_wgan_gp_reuses_the_shared_critic_and_ddpm_is_parameter_matched():
    from qmedgen.models.critic import ConditionalCritic
    from qmedgen.models.unet import LightUNet, UNet
    from qmedgen.train.loop import DataSpec

    spec = DataSpec("x", 5, 3, 28, tuple(range(5)), tuple("abcde"))
    family = get_family("wgan-gp")
    cfg = api.resolve_config("wgan-gp", ["model.g_width=4", "model.critic_channels=[4]", "data.size=28"])[1]
    trainer = family.trainer_cls(cfg, spec, torch.device("cpu"))
    assert isinstance(trainer.discriminator, ConditionalCritic)

    ddpm_family, ddpm_cfg = api.resolve_config("ddpm")
    ddpm = ddpm_family.trainer_cls(ddpm_cfg, spec, torch.device("cpu"))
    assert isinstance(ddpm.model, UNet) and ddpm.model.gate is None
    n = sum(p.numel() for p in ddpm.model.parameters())
    light = sum(p.numel() for p in LightUNet(3, 28, 5).parameters())
    assert abs(n - light) / light < 0.05


def test_ddpm_refuses_a_gate():
    with pytest.raises(Exception, match="gate"):
        api.resolve_config("ddpm", ["model.gate=quantum"])


def test_baseline_presets_resolve():
    presets = [p for p in api.list_presets() if p.startswith("baseline-")]
    assert presets, "no baseline presets shipped"
    seen = set()
    for name in presets:
        family, cfg = api.resolve_config(name)
        assert name.startswith(f"baseline-{family.name}-"), name
        seen.add(family.name)
        assert cfg.data.size in (28, 32, 64, 128)
    assert seen == {"dcgan", "wgan-gp", "patch-qgan", "mosaiq", "ddpm", "fastgan"}
