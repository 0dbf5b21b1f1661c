"""MediQ-GAN training through the shared loop: finite losses, resume after a kill, determinism, CLI, errors."""

from __future__ import annotations

import argparse
import json
import math

import pytest
import torch
from safetensors.torch import load_file

from qmedgen.errors import ConfigError, UserError
from qmedgen.train import api
from qmedgen.train import mediqgan as mq
from qmedgen.train.commands import register_prototypes
from qmedgen.train.gan import adaptive_noise_bound

TINY = [
    "data.name=embedded-retinamnist",
    "train.batch_size=4",
    "train.sample_every=0",
    "train.grid_per_class=1",
    "train.log_every=1",
    "model.latent_dim=8",
    "model.feature_channels=8",
    "model.split_ratio=0.5",
    "model.n_subgenerators=2",
    "model.n_qubits=4",
    "model.depth=2",
    "model.quantum_channels=4",
    "model.skip_channels=4",
    "model.decoder_channels=[8,8]",
    "model.critic_channels=[8,8,8]",
    "model.critic_embed_dim=8",
    "model.prototypes.init=random",
    "model.prototypes.dim=8",
    "model.prototypes.hidden=8",
    "gan.n_critic=2",
]


def _cli(argv: list[str]) -> int:
    """The `qmedgen prototypes` command alone (independent of other subsystems)."""
    parser = argparse.ArgumentParser(prog="qmedgen")
    register_prototypes(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def _train(tmp_path, *extra, steps=2, **kw):
    return api.train("mediqgan", [*TINY, f"train.steps={steps}", *extra], run_root=tmp_path, progress=False, **kw)


def _weights(run_dir, step=None):
    ckpts = sorted((run_dir / "checkpoints").glob("step-*"))
    path = ckpts[-1] if step is None else run_dir / "checkpoints" / f"step-{step:08d}"
    return load_file(str(path / "weights.safetensors"))


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(
    "extra",
    [
        [],
        ["model.critic=bce", "gan.ema=true", "gan.diffaugment=translation,cutout,color"],
        ["model.prototypes.enabled=false", "model.quantum_stream=matched-mlp"],
        ["model.n_subgenerators=0", "model.decoder=vanilla", "model.skip_connections=false"],
    ],
)
def test_one_step_on_embedded_data_gives_finite_losses(tmp_path, extra):
    run = _train(tmp_path, *extra, steps=1)
    (m,) = _metrics(run)
    for key in ("loss_d", "loss_g", "gp", "proto_reg"):
        assert math.isfinite(m[key]), key
    if "model.prototypes.enabled=false" in extra:
        assert math.pi / 8 <= m["noise_bound"] <= 3 * math.pi / 4
    assert (run / "samples" / "grid-step-00000001.png").is_file()
    weights = _weights(run)
    assert all(torch.isfinite(t).all() for t in weights.values())
    if "gan.ema=true" in extra:
        assert any(k.startswith("generator_ema.") for k in weights)


def _killed_during_step_4(root, monkeypatch, *extra):
    """The run dir of a 4-step run killed during step 4, after the checkpoint at step 2 (and step 3 done)."""
    original = mq.Trainer.train_step

    def dying(self, step):
        if step == 3:
            raise KeyboardInterrupt
        return original(self, step)

    monkeypatch.setattr(mq.Trainer, "train_step", dying)
    with pytest.raises(KeyboardInterrupt):
        _train(root, *extra, steps=4)
    monkeypatch.setattr(mq.Trainer, "train_step", original)
    (killed,) = sorted(root.iterdir())
    return killed


def test_kill_and_resume_gives_identical_parameters(tmp_path, monkeypatch):
    full = _train(tmp_path / "a", "train.checkpoint_every=2", "model.prototypes.enabled=false", steps=4)
    killed = _killed_during_step_4(tmp_path / "b", monkeypatch, "train.checkpoint_every=2",
                                   "model.prototypes.enabled=false")
    assert [p.name for p in sorted((killed / "checkpoints").glob("step-*"))] == ["step-00000002"]
    resumed = api.train("mediqgan", run_root=tmp_path / "b", progress=False, resume=killed)
    assert resumed == killed
    a, b = _weights(full), _weights(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert [m["loss_d"] for m in _metrics(full)] == [m["loss_d"] for m in _metrics(resumed)]


def test_seed_determinism(tmp_path):
    a = _weights(_train(tmp_path / "a", "train.seed=3"))
    b = _weights(_train(tmp_path / "b", "train.seed=3"))
    c = _weights(_train(tmp_path / "c", "train.seed=4"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_critic_steps_build_no_generator_graph():
    trainer = _trainer("gan.n_critic=3")
    calls = []
    trainer.generator.register_forward_hook(lambda m, i, o: calls.append((o.shape[0], o.requires_grad)))
    trainer.train_step(0)
    assert calls == [(3 * 4, False), (4, True)]  # n_critic batches of fakes at once without a graph, then G
    # the circuit weights and the prototypes move during the generator update
    before = trainer.generator.quantum_layer.weight.detach().clone()
    protos = trainer.generator.prototypes.prototypes.detach().clone()
    trainer.train_step(1)
    assert not torch.equal(before, trainer.generator.quantum_layer.weight)
    assert not torch.equal(protos, trainer.generator.prototypes.prototypes)
    groups = {g["name"]: g["lr"] for g in trainer.opt_g.param_groups}
    assert groups == {"encoder": 1e-4, "quantum": 0.3, "prototypes": 1e-4, "decoder": 1e-4}
    assert trainer.opt_d.defaults["betas"] == (0.0, 0.9) and trainer.opt_g.defaults["betas"] == (0.5, 0.999)


def test_adaptive_noise_bound_formula():
    assert adaptive_noise_bound(0.5, 1.0) == pytest.approx(math.pi / 8)
    assert adaptive_noise_bound(1.0, 1.0) == pytest.approx(math.pi / 8)
    assert adaptive_noise_bound(100.0, 1.0) == pytest.approx(math.pi / 8 + 5 * math.pi / 8)
    assert adaptive_noise_bound(1.5, 1.0) == pytest.approx(math.pi / 8 + 5 * math.pi / 8 * math.tanh(0.5))


def _trainer(*extra):
    from qmedgen.train.distributed import Dist
    from qmedgen.train.loop import load_training_data

    family, config = api.resolve_config("mediqgan", [*TINY, "train.steps=1", *extra])
    data = load_training_data(config.data, torch.device("cpu"), Dist(), 0)
    return family.trainer_cls(config, data.spec, torch.device("cpu"), Dist(), data)


def test_noise_bound_state_r0_is_the_first_ratio():
    trainer = _trainer("model.prototypes.enabled=false", "gan.noise_ratio_momentum=0.0", "gan.ema=true")
    assert trainer.generator.uses_noise_bound
    assert trainer.update_noise_bound(-2.0, 1.0) == pytest.approx(math.pi / 8)  # R = R0 = 2 -> lower bound
    ub = trainer.update_noise_bound(4.0, 1.0)  # |L_D| / |L_G| = 4 > R0: wider range
    assert ub == pytest.approx(adaptive_noise_bound(4.0, 2.0))
    assert trainer.generator.noise_bound.item() == pytest.approx(ub) == trainer.ema.noise_bound.item()
    assert trainer.extra_state() == {"ratio_ema": 4.0, "ratio_r0": 2.0}


def test_ema_warm_up_follows_the_generator_early():
    trainer = _trainer("gan.ema=true", "gan.ema_decay=0.999")
    with torch.no_grad():
        for p in trainer.generator.parameters():
            p.add_(1.0)
    before = [p.detach().clone() for p in trainer.ema.parameters()]
    trainer.update_ema(0)  # decay min(0.999, 1/10) = 0.1: the average moves 90 % of the way
    for pe, pb, p in zip(trainer.ema.parameters(), before, trainer.generator.parameters()):
        torch.testing.assert_close(pe, pb + 0.9 * (p - pb))


class _TinyExtractor(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_prototypes_command_and_file_warm_start(tmp_path):
    ext = tmp_path / "ext.pt"
    torch.jit.script(_TinyExtractor()).save(str(ext))
    out = tmp_path / "protos.safetensors"
    rc = _cli(["prototypes", "--data", "embedded-retinamnist", "--size", "28", "--extractor", str(ext),
                   "--n-per-class", "3", "--device", "cpu", "--out", str(out)])
    assert rc == 0 and out.is_file()
    values = load_file(str(out))["prototypes"]
    assert values.shape == (5, 6)
    run = _train(tmp_path / "runs", "model.prototypes.init=file", f"model.prototypes.file={out}",
                 "model.prototypes.dim=6", steps=1)
    # the extractor path in training gives the same warm start as the command (same images: pooled few-shot)
    run2 = _train(tmp_path / "runs", "model.prototypes.init=extractor", f"model.prototypes.extractor={ext}",
                  "model.prototypes.dim=6", "data.n_per_class=3", steps=1)
    # both warm starts are the command's class means (one Adam step of lr 1e-4 moves each entry by <= ~1e-4)
    for r in (run, run2):
        torch.testing.assert_close(_weights(r)["generator.prototypes.prototypes"], values, atol=1e-3, rtol=0)
    with pytest.raises(ConfigError, match=r"model.prototypes.dim=6"):
        _train(tmp_path / "runs", "model.prototypes.init=file", f"model.prototypes.file={out}", steps=1)


def test_missing_extractor_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="init=random"):
        _train(tmp_path, "model.prototypes.init=extractor", f"model.prototypes.extractor={tmp_path / 'no.pt'}")


@pytest.mark.parametrize(
    "override,match",
    [
        ("gan.n_critic=0", "gan.n_critic"),
        ("gan.n_critc=2", "Did you mean 'n_critic'"),
        ("gan.diffaugment=rotate", "rotate"),
        ("optim.g_betas=[0.5]", "g_betas"),
        ("model.split_ratio=0.01", "split_ratio"),
        ("data.size=224", "data.size"),
        ("model.critic=hinge", "model.critic"),
    ],
)
def test_bad_config_values_are_clear(override, match):
    with pytest.raises(ConfigError, match=match):
        api.resolve_config("mediqgan", [*TINY, override])


def test_sample_from_run(tmp_path):
    run = _train(tmp_path, "gan.ema=true", steps=1)
    out = api.sample(run, n_per_class=2, out=tmp_path / "s", batch_size=3)
    import numpy as np

    with np.load(out / "samples.npz") as f:
        assert f["images"].shape == (10, 28, 28, 3) and f["images"].dtype == np.uint8
        assert f["labels"].tolist() == [c for c in range(5) for _ in range(2)]
    with pytest.raises(ConfigError, match="diffusion"):
        api.sample(run, n_per_class=1, out=tmp_path / "s2", sampler="ddim")


@pytest.mark.parametrize("preset", ["mediqgan-retinamnist", "mediqgan-isic2019", "mediqgan-odir5k", "mediqgan-fewshot"])
def test_presets_resolve_to_the_paper_configs(preset):
    assert preset in api.list_presets()
    family, cfg = api.resolve_config(preset)
    assert family.name == "mediqgan"
    assert cfg.data.size == 64 and cfg.train.batch_size == 10 and cfg.gan.n_critic == 3
    assert cfg.model.decoder == "style2" and cfg.model.prototypes.enabled and cfg.model.n_qubits == 16
    assert cfg.optim.lr_quantum == 0.3
    expected = {"mediqgan-retinamnist": (3, 6, 0.25), "mediqgan-isic2019": (5, 8, 0.5),
                "mediqgan-fewshot": (3, 6, 0.25)}
    if preset == "mediqgan-odir5k":
        assert cfg.model.n_subgenerators == 0  # the authors' ODIR-5k run is purely classical
    else:
        m = cfg.model
        assert (m.n_subgenerators, m.depth, m.split_ratio) == expected[preset]
    if preset == "mediqgan-retinamnist":
        assert cfg.data.split == "all" and cfg.train.steps == 200 * 1600 // 10
    # the paper's presets keep the paper's broadcast encoder and site-placed readouts; few-shot uses the linear
    # encoder (the broadcast one draws square frames, see the generator's docstring)
    assert cfg.model.encoder == ("linear" if preset == "mediqgan-fewshot" else "broadcast")
    assert cfg.model.quantum_map == "sites" and cfg.model.decoder_upsample == "nearest"


def test_mode_seeking_pairs_latents_and_pushes_images_apart():
    trainer = _trainer("gan.n_critic=1", "gan.mode_seeking=1.0")
    calls = []
    trainer.generator.register_forward_hook(lambda m, i, o: calls.append((o.shape[0], o.requires_grad)))
    m = trainer.train_step(0)
    assert calls == [(4, False), (8, True)]  # the generator update sees two latents per label
    assert math.isfinite(m["mode_seeking"]) and m["mode_seeking"] > 0


def test_augmentation_preset_carries_the_measured_fixes():
    family, cfg = api.resolve_config("mediqgan-augment")
    assert family.name == "mediqgan" and cfg.data.size == 28 and cfg.data.n_per_class == 10
    assert cfg.model.encoder == "linear" and cfg.gan.mode_seeking == 1.0 and cfg.gan.ema
    assert api.resolve_config("mediqgan-retinamnist")[1].model.encoder == "broadcast"  # the paper's stays


def test_ada_controller_moves_p_towards_the_target():
    from qmedgen.train.distributed import Dist
    from qmedgen.train.gan import AdaptiveAugment

    ada = AdaptiveAugment(target=0.6, speed=8, interval=2, shift_free=True)
    memorised = torch.tensor([5.0, 4.0, 6.0, 5.0])  # every real logit above the mean fake logit: r_t = 1
    fake = torch.tensor([-1.0, 0.0, 1.0, 0.0])
    ada.observe(memorised, fake)
    ada.adjust(0, Dist())  # not an adjustment step (interval 2)
    assert ada.p == 0.0
    ada.observe(memorised, fake)
    ada.adjust(1, Dist())
    assert ada.r_t == 1.0 and ada.p == pytest.approx(2 / 8)
    for step in range(2, 40):
        ada.observe(memorised, fake)
        ada.adjust(step, Dist())
    assert ada.p == 1.0  # clipped
    confused = torch.tensor([-1.0, 0.5, -2.0, 0.5])  # two above the fake mean, two below: r_t = 0
    ada.observe(confused, fake)
    ada.adjust(41, Dist())
    assert ada.r_t == 0.0 and ada.p == pytest.approx(1 - 2 / 8)
    bce = AdaptiveAugment(target=0.6, speed=8, interval=1, shift_free=False)  # sign of the logit itself
    bce.observe(torch.tensor([1.0, 1.0, 1.0, -1.0]), torch.tensor([9.0]))
    bce.adjust(0, Dist())
    assert bce.r_t == 0.5 and bce.p == 0.0  # below target, clipped at 0


def test_ada_trains_logs_p_and_resumes_exactly(tmp_path, monkeypatch):
    ada = ["gan.diffaugment=translation,color", "gan.ada_target=0.6", "gan.ada_speed=2", "gan.ada_interval=1",
           "train.checkpoint_every=2", "model.prototypes.enabled=false"]
    from qmedgen.train.gan import AdaptiveAugment

    observe = AdaptiveAugment.observe
    # A critic that has memorised the reals (r_t = 1), so that p rises by interval / speed = 1/2 per step.
    monkeypatch.setattr(AdaptiveAugment, "observe", lambda self, d_real, d_fake: observe(self, d_real + 1e3, d_fake))
    full = _train(tmp_path / "a", *ada, steps=4)
    ps = [m["ada_p"] for m in _metrics(full)]
    assert ps == [0.5, 1.0, 1.0, 1.0]
    killed = _killed_during_step_4(tmp_path / "b", monkeypatch, *ada)
    api.train("mediqgan", run_root=tmp_path / "b", progress=False, resume=killed)
    a, b = _weights(full), _weights(killed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [m["ada_p"] for m in _metrics(killed)] == ps  # resumed from step 2 with p = 0, it would read 0.5 again


def test_ada_needs_a_diffaugment_policy():
    with pytest.raises(ConfigError, match=r"gan\.ada_target.*gan\.diffaugment"):
        api.resolve_config("mediqgan", [*TINY, "gan.ada_target=0.6"])
