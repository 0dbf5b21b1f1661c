"""`qmedgen demo` plan: each quantum arm next to its counterpart on the same data and budget; the flags."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from qmedgen import demo
from qmedgen.train import api


def _differing(a: demo.Arm, b: demo.Arm) -> set[str]:
    return set(a.overrides) ^ set(b.overrides)


def test_every_quantum_arm_has_a_counterpart_that_differs_only_in_the_component():
    arms = {a.label: a for a in (*demo.ARMS, *demo.ABLATIONS)}
    gan_q, gan_mlp = arms["MediQ-GAN (quantum, K=3)"], arms["MediQ-GAN matched MLP"]
    assert _differing(gan_q, gan_mlp) == {"model.n_subgenerators=3", "model.quantum_stream=matched-mlp"}
    assert _differing(gan_q, arms["MediQ-GAN classical (K=0)"]) == {"model.n_subgenerators=3",
                                                                    "model.n_subgenerators=0"}
    diff_q = arms["Q-diffusion (quantum gate)"]
    assert _differing(diff_q, arms["Q-diffusion matched SE gate"]) == {"model.gate=quantum", "model.gate=matched-se"}
    assert _differing(diff_q, arms["Q-diffusion classical (no gate)"]) == {"model.gate=quantum", "model.gate=none"}
    for arm in arms.values():
        assert f"data.name={arm.dataset}" in arm.overrides
        _, cfg = api.resolve_config(arm.family, arm.overrides)  # every arm is a valid config
        if arm.family == "mediqgan":
            # the demo's GAN uses the linear encoder: the paper's broadcast one draws square frames
            assert cfg.model.encoder == "linear"
    # the default demo trains the quantum arms and their matched counterparts; --ablations adds the rest
    assert {a.family for a in demo.ARMS} == {"mediqgan", "qdiffusion"} and len(demo.ARMS) == 4


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    demo.register(parser.add_subparsers())
    return parser.parse_args(["demo", *argv])


def test_ablations_flag_adds_the_counterparts_without_the_component(monkeypatch, tmp_path):
    plans = []
    monkeypatch.setattr(demo, "run_demo", lambda out, plan, progress=True: plans.append(plan) or tmp_path / "r.html")
    assert demo.cmd_demo(_args("--out", str(tmp_path))) == 0
    assert demo.cmd_demo(_args("--out", str(tmp_path), "--ablations", "--gan-steps", "7")) == 0
    assert demo.cmd_demo(_args("--out", str(tmp_path), "--train")) == 0
    assert plans[0].arms == demo.ARMS and plans[0].gan_steps == demo.PRETRAINED_GAN_STEPS
    assert plans[0].diffusion_steps == demo.PRETRAINED_DIFFUSION_STEPS
    assert plans[0].pretrained  # the default loads the shipped checkpoints
    assert plans[1].arms == (*demo.ARMS, *demo.ABLATIONS) and plans[1].gan_steps == 7
    assert not plans[1].pretrained  # no shipped ablation arms: every arm is then trained here, alike
    assert not plans[2].pretrained and plans[2].arms == demo.ARMS
    assert demo.cmd_demo(_args("--out", str(tmp_path), "--gan-steps", "300")) == 0
    assert not plans[3].pretrained and plans[3].gan_steps == 300  # another budget: trained here
    assert demo.cmd_demo(_args("--out", str(tmp_path), "--diffusion-steps", "30")) == 0
    assert not plans[4].pretrained and plans[4].diffusion_steps == 30


@pytest.mark.parametrize("arm", demo.ARMS, ids=lambda a: demo._slug(a.label))
def test_shipped_checkpoints_are_small_match_the_recipe_and_load_offline(arm):
    steps = demo.DemoPlan().steps(arm)
    path = demo.shipped_run(arm, steps, 0)
    assert path is not None, f"no shipped checkpoint for {arm.label} (run scripts/train_demo_checkpoints.py)"
    assert sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) < 5 * 1024 * 1024
    for name in ("config.json", "environment.json", "shipped.json"):  # no paths of the machine that trained it
        text = (path / name).read_text()
        assert '"/' not in text, f"{path / name} holds an absolute path"
    info = json.loads((path / "shipped.json").read_text())
    assert info["overrides"] == list(arm.overrides) and info["recipe"] == "scripts/train_demo_checkpoints.py"
    trainer = api.load_run(path, device="cpu")
    assert trainer.config.train.steps == steps and trainer.spec.dataset == arm.dataset
    y = torch.arange(trainer.spec.n_classes)
    opts = {"steps": 3} if arm.family == "qdiffusion" else {}
    x = trainer.sample(y, generator=torch.Generator().manual_seed(0), **opts)
    assert x.shape == (len(y), 3, 28, 28) and torch.isfinite(x).all() and x.abs().max() <= 1
    # a changed recipe does not silently reuse the checkpoint
    assert demo.shipped_run(arm, steps + 1, 0) is None
    assert demo.shipped_run(demo.Arm(arm.label, arm.family, (*arm.overrides, "train.batch_size=2"), arm.dataset),
                            steps, 0) is None


def test_summary_names_the_data_of_each_arm():
    entry = {"train_seconds": 1.0, "params": {"generator": 10},
             "metrics": {"kid": {"value": 0.1, "ci_low": 0.05, "ci_high": 0.2}, "precision": {"value": 0.0}}}
    text = demo.summary_markdown([(demo.ARMS[0], entry)], demo.DemoPlan())
    assert f"| {demo.ARMS[0].label} | {demo.ARMS[0].dataset} |" in text
    assert "0.1 [0.05, 0.2]" in text
