"""Training MediQ-GAN: conditional WGAN-GP (or BCE) with n_critic, per-group learning rates, prototypes.

One training step (= one "iteration" of the paper's code = one real batch):

1. ``n_critic`` critic updates on that real batch, each against fresh fakes generated under ``torch.no_grad``
   (no generator graph is built for critic steps); WGAN-GP: ``D(fake) - D(real) + gp_weight * GP`` (Gulrajani
   et al. 2017, lambda 10); BCE: ``softplus(-D(real)) + softplus(D(fake))``. Optional DiffAugment on both.
2. one generator update: ``-D(G(z, y))`` (BCE: non-saturating ``softplus(-D)``) plus the prototype separation
   regulariser; the critic's parameters are frozen meanwhile. Generator groups have their own learning rates
   (encoder, decoder, quantum circuits, prototypes; Adam betas (0.5, 0.999)); the critic uses Adam (0, 0.9).
3. optional EMA of the generator weights (used for sampling); the adaptive noise bound when prototypes are off.

The **adaptive noise bound** (MosaiQ, Silver et al. 2023; used by MediQ-GAN without prototypes): latents are
``N(0, I) * ub`` (authors' code; ``model.latent_noise``) with ``ub = pi/8 + (5 pi / 8) * ReLU(tanh(R - R0))``,
``R = L_D / L_G``, and R0 the ratio at the first step (MosaiQ's and the authors' choice; or ``gan.noise_bound_r0``).
WGAN losses are signed and cross zero, which makes the raw ratio flip sign and explode, so here R is taken on
magnitudes, ``R = |L_D| / max(|L_G|, 1e-8)``, and smoothed by an exponential moving average
(``gan.noise_ratio_momentum``; 0 = the raw per-step ratio) so one noisy step cannot swing the bound. While the
critic's loss stays at or below R0 times the generator's, ub stays at pi/8; as it grows the latent range widens up
to 3 pi / 4. ub starts at pi/8, is updated after each step and stored with the weights (``generator.noise_bound``);
R's moving average and R0 are checkpointed. (The authors' code crashes on its first step here: ``relu`` undefined.)

Run directories, checkpoints, resume, progress bars, NaN checks and DDP come from :mod:`qmedgen.train.loop`.
"""

from __future__ import annotations

import argparse
import copy
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from qmedgen.config import check_betas, option
from qmedgen.errors import ConfigError
from qmedgen.models.critic import ConditionalCritic, gradient_penalty
from qmedgen.models.mediqgan import MediQGANGenerator, ModelConfig
from qmedgen.models.prototypes import class_mean_features, load_prototypes, resolve_extractor, save_prototypes
from qmedgen.train.loop import DataSpec, TrainingData, adam
from qmedgen.train.loop import Trainer as LoopTrainer
from qmedgen.train.sections import DataConfig, TrainConfig


@dataclass
class OptimConfig:
    lr_encoder: float = option(1e-4, min=0.0, help="Adam lr of the label embedding, encoder and stream convs")
    lr_decoder: float = option(1e-4, min=0.0, help="Adam lr of the quantum projection, decoder and skip paths")
    lr_quantum: float = option(0.3, min=0.0, help="Adam lr of the circuit weights (authors' code: 0.3)")
    lr_matched_mlp: float | None = option(None, min=0.0, help="lr of the matched-MLP counterpart (default lr_encoder)")
    lr_prototypes: float = option(1e-4, min=0.0, help="Adam lr of prototypes, their MLP and sigmas")
    g_betas: list[float] = option([0.5, 0.999], help="Adam betas of the generator groups")
    lr_critic: float = option(2e-4, min=0.0, help="Adam lr of the critic")
    d_betas: list[float] = option([0.0, 0.9], help="Adam betas of the critic")
    grad_clip: float | None = option(None, min=0.0, help="clip gradient norms (per update) at this value")

    def validate(self) -> None:
        check_betas(self, "optim", ("g_betas", "d_betas"))


@dataclass
class GANConfig:
    n_critic: int = option(3, min=1, help="critic updates per generator update")
    gp_weight: float = option(10.0, min=0.0, help="WGAN-GP gradient-penalty weight (wgan-gp critic only)")
    diffaugment: str = option("", help="DiffAugment policy for real and fake, e.g. 'translation,cutout,color' ('' off)")
    ema: bool = option(False, help="keep an exponential moving average of the generator for sampling")
    ema_decay: float = option(0.999, min=0.0, max=1.0, help="EMA decay per step (warm-up: min(decay, (1+t)/(10+t)))")
    noise_bound_r0: float | None = option(None, help="R0 of the adaptive noise bound (default: the first step's R)")
    noise_ratio_momentum: float = option(0.9, min=0.0, max=0.999, help="smoothing of R = |L_D| / |L_G|")
    prototype_batch_size: int = option(64, min=1, help="batch size of the warm-start feature extraction")
    mode_seeking: float = option(
        0.0, min=0.0, help="weight of the mode-seeking term (Mao et al. 2019, MSGAN): two latents per label, the "
        "generator is penalised by w / (mean|G(z1)-G(z2)| / mean|z1-z2| + 1e-5); raises few-shot diversity")


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    gan: GANConfig = field(default_factory=GANConfig)

    def validate(self) -> None:
        if self.data.size not in (28, 32, 64, 128):
            raise ConfigError(f"data.size: MediQ-GAN generates 28, 32, 64 or 128 px images, got {self.data.size}")
        if self.gan.diffaugment:
            from qmedgen.data.diffaugment import parse_policy

            parse_policy(self.gan.diffaugment)


def adaptive_noise_bound(ratio: float, r0: float) -> float:
    """MosaiQ's ``pi/8 + (5 pi / 8) * ReLU(tanh(R - R0))``."""
    return math.pi / 8 + 5 * math.pi / 8 * max(0.0, math.tanh(ratio - r0))


def warm_start_prototypes(cfg: ModelConfig, spec: DataSpec, data: TrainingData | None, batch_size: int = 64,
                          progress: bool = True) -> torch.Tensor | None:
    """The prototypes' initial values per ``model.prototypes.init`` (None: random, drawn by the model)."""
    pc = cfg.prototypes
    if not pc.enabled or pc.init == "random" or data is None:
        return None  # random init drawn by the model; without data (rebuilt to sample) the checkpoint has them
    if pc.init == "file":
        values, _ = load_prototypes(pc.file)
        if values.shape[0] != spec.n_classes:
            raise ConfigError(
                f"{pc.file}: {values.shape[0]} prototypes, but {spec.dataset} has {spec.n_classes} classes"
            )
    else:
        extractor = resolve_extractor(pc.extractor, data.images.device)
        images, labels = data.images, data.labels
        if pc.max_images_per_class is not None:
            keep = torch.cat([torch.nonzero(labels == c).flatten()[: pc.max_images_per_class]
                              for c in labels.unique()])
            images, labels = images[keep.sort().values], labels[keep.sort().values]
        values = class_mean_features(extractor, images, labels.cpu(), spec.n_classes, batch_size=batch_size,
                                     progress=progress, allow_missing=True)
    if values.shape[1] != pc.dim:
        raise ConfigError(
            f"the prototype features are {values.shape[1]}-d but model.prototypes.dim={pc.dim}; set "
            f"model.prototypes.dim={values.shape[1]} (it must be known to rebuild the model for sampling)"
        )
    return values


class Trainer(LoopTrainer):
    """MediQ-GAN trainer plugged into :func:`qmedgen.train.loop.run_training`."""

    family = "mediqgan"

    def __init__(self, config: Config, spec: DataSpec, device: torch.device, dist=None,
                 data: TrainingData | None = None) -> None:
        super().__init__(config, spec, device, dist, data)
        m, o, g = config.model, config.optim, config.gan
        if spec.size not in (28, 32, 64, 128):
            raise ConfigError(f"data.size: MediQ-GAN generates 28, 32, 64 or 128 px images, got {spec.size}")
        proto = warm_start_prototypes(m, spec, data, g.prototype_batch_size, progress=self.dist.is_main)
        self.generator = MediQGANGenerator(m, spec.n_classes, spec.size, spec.channels, prototype_init=proto)
        self.critic = ConditionalCritic(spec.n_classes, spec.size, spec.channels, tuple(m.critic_channels),
                                        m.critic_embed_dim, kind=m.critic)
        # channels-last (NHWC) generator convolutions: ~2x faster on CPU (oneDNN) and for CUDA tensor cores. The
        # critic keeps NCHW weights: their gradients arrive from the loss and from the penalty's double backward in
        # different layouts, and channels-last parameters had every update re-lay them out (AccumulateGrad, fused
        # Adam): ~15 ms of copies per paper-config iteration, 1-2 % of it (benchmarks/RESULTS.md)
        self.generator.to(device, memory_format=torch.channels_last)
        self.critic.to(device)
        self.ema: MediQGANGenerator | None = None
        if g.ema:
            self.ema = copy.deepcopy(self.generator).requires_grad_(False)
        lrs = {"encoder": o.lr_encoder, "decoder": o.lr_decoder, "quantum": o.lr_quantum,
               "matched_mlp": o.lr_encoder if o.lr_matched_mlp is None else o.lr_matched_mlp,
               "prototypes": o.lr_prototypes}
        groups = [{"params": ps, "lr": lrs[name], "name": name}
                  for name, ps in self.generator.param_groups().items() if ps]
        self.opt_g = adam(groups, betas=tuple(o.g_betas))
        self.opt_d = adam(self.critic.parameters(), lr=o.lr_critic, betas=tuple(o.d_betas))
        self.ratio_ema: float | None = None
        self.ratio_r0: float | None = g.noise_bound_r0
        self._uses_noise_bound = self.generator.uses_noise_bound

    def autocast(self):
        """Mixed precision: the shared loop's on CUDA; with ``train.amp`` on CPU, bfloat16 autocast (oneDNN bf16
        convolutions, ~1.8x faster on CPUs with AVX512-BF16/AMX). Circuits stay float32; the gradient penalty runs in
        bf16 too (see :func:`~qmedgen.models.critic.gradient_penalty` for its measured accuracy)."""
        if self.device.type == "cpu" and self.config.train.amp:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return super().autocast()

    # ---- loop interface ---------------------------------------------------------------------------------

    def modules(self) -> dict[str, torch.nn.Module]:
        mods: dict[str, torch.nn.Module] = {"generator": self.generator, "critic": self.critic}
        if self.ema is not None:
            mods["generator_ema"] = self.ema
        return mods

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"generator": self.opt_g, "critic": self.opt_d}

    def extra_state(self) -> dict[str, Any]:
        return {"ratio_ema": self.ratio_ema, "ratio_r0": self.ratio_r0}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.ratio_ema = state.get("ratio_ema")
        self.ratio_r0 = state.get("ratio_r0", self.config.gan.noise_bound_r0)

    def parameter_counts(self) -> dict[str, int]:
        counts = super().parameter_counts()
        q = self.generator.quantum_parameter_count
        counts["quantum_stream"], counts["circuit_equivalent"] = q["actual"], q["circuit_equivalent"]
        return counts

    def _latent(self, y: torch.Tensor, repeats: int = 1) -> torch.Tensor:
        """Latents for ``repeats`` copies of the labels ``y`` (concatenated): each copy's raw noise is drawn as this
        rank's slice of a global batch, so data-parallel runs see the numbers of one process."""
        shape = (y.shape[0], self.config.model.latent_dim)
        uniform = self.generator.prototypes is None and self.config.model.latent_noise == "bounded-uniform"
        eps = torch.cat([self.local_rand(*shape) if uniform else self.local_randn(*shape) for _ in range(repeats)])
        return self.generator.sample_latent(y.repeat(repeats), eps=eps)

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        policy = self.config.gan.diffaugment
        if not policy:
            return x
        from qmedgen.data.diffaugment import diff_augment

        return diff_augment(x, policy)

    def train_step(self, step: int) -> dict[str, float]:
        cfg = self.config
        wgan = cfg.model.critic == "wgan-gp"
        real, y = self.data.next_batch(cfg.train.batch_size)
        real_aug_needed = bool(cfg.gan.diffaugment)
        clip = cfg.optim.grad_clip

        # ---- critic: the fakes of all n_critic updates in ONE batched forward, without a generator graph (the
        # generator does not change during critic updates, so this equals generating them one update at a time)
        n_critic = cfg.gan.n_critic
        with torch.no_grad(), self.autocast():
            fakes = self.generator(self._latent(y, n_critic), y.repeat(n_critic)).chunk(n_critic)
        for fake in fakes:
            real_in = self._augment(real) if real_aug_needed else real
            fake_in = self._augment(fake)
            with self.autocast():  # real and fake in one batched forward (the critic couples no samples)
                d_real, d_fake = self.critic(torch.cat([real_in, fake_in]), torch.cat([y, y])).float().chunk(2)
                # with train.amp the penalty runs in bf16 too (as accurate as the rest, see gradient_penalty)
                gp = (gradient_penalty(self.critic, real_in, fake_in, y, in_autocast=True)
                      if wgan and cfg.gan.gp_weight > 0 else d_real.new_zeros(()))
            if wgan:
                loss_d = d_fake.mean() - d_real.mean() + cfg.gan.gp_weight * gp
            else:
                loss_d = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
            self.optimize(loss_d, self.opt_d, clip=clip)

        # ---- generator
        self.critic.requires_grad_(False)
        try:
            ms_weight = cfg.gan.mode_seeking
            pairs = 2 if ms_weight > 0 else 1
            with self.autocast():
                z = self._latent(y, pairs)
                fake = self.generator(z, y.repeat(pairs))
                d_gen = self.critic(self._augment(fake), y.repeat(pairs)).float()
            adv = -d_gen.mean() if wgan else F.softplus(-d_gen).mean()
            reg = adv.new_zeros(())
            if self.generator.prototypes is not None:
                pc = cfg.model.prototypes
                reg = self.generator.prototypes.separation_loss(pc.reg_weight, pc.reg_margin)
            loss_g = adv + reg
            if pairs == 2:  # same labels, two latents: reward images that move when the latent moves
                f1, f2 = fake.float().chunk(2)
                z1, z2 = z.float().chunk(2)
                ratio = (f1 - f2).abs().mean() / (z1 - z2).abs().mean().clamp_min(1e-8)
                mode_seeking = ms_weight / (ratio + 1e-5)
                loss_g = loss_g + mode_seeking
            self.optimize(loss_g, self.opt_g, clip=clip)
            q_grad = None
            if self.generator.quantum_layer is not None and self.generator.quantum_layer.weight.grad is not None:
                q_grad = float(self.generator.quantum_layer.weight.grad.norm())
        finally:
            self.critic.requires_grad_(True)

        if self.ema is not None:
            self._update_ema(step)
        metrics = {
            "loss_d": float(loss_d.detach()),
            "loss_g": float(adv.detach()),
            "gp": float(gp.detach()),
            "proto_reg": float(reg.detach()),
        }
        if pairs == 2:
            metrics["mode_seeking"] = float(mode_seeking.detach())
        if wgan:
            metrics["w_dist"] = float((d_real.mean() - d_fake.mean()).detach())
        if q_grad is not None:  # circuit-weight gradient norm: watch for barren plateaus (it collapsing to ~0)
            metrics["grad_circuits"] = q_grad
        if self._uses_noise_bound:
            metrics["noise_bound"] = self._update_noise_bound(metrics["loss_d"], metrics["loss_g"])
        if self.generator.skips is not None:
            metrics["skip_scale"] = float(self.generator.skips.scales.detach().abs().mean())
        return metrics

    @torch.no_grad()
    def _update_ema(self, step: int) -> None:
        # warm-up: early on the average must not be dominated by the random initialisation
        decay = min(self.config.gan.ema_decay, (1 + step) / (10 + step))
        for pe, p in zip(self.ema.parameters(), self.generator.parameters()):
            pe.lerp_(p, 1 - decay)
        for be, b in zip(self.ema.buffers(), self.generator.buffers()):
            be.copy_(b)

    def _update_noise_bound(self, loss_d: float, loss_g: float) -> float:
        ratio = abs(loss_d) / max(abs(loss_g), 1e-8)
        mom = self.config.gan.noise_ratio_momentum
        self.ratio_ema = ratio if self.ratio_ema is None else mom * self.ratio_ema + (1 - mom) * ratio
        if self.ratio_r0 is None:
            self.ratio_r0 = ratio
        ub = adaptive_noise_bound(self.ratio_ema, self.ratio_r0)
        self.generator.set_noise_bound(ub)
        if self.ema is not None:
            self.ema.set_noise_bound(ub)
        return ub

    def sample(self, labels: torch.Tensor, generator: torch.Generator | None = None, use_ema: bool = True,
               **opts: Any) -> torch.Tensor:
        if opts:
            raise ConfigError(f"MediQ-GAN sampling has no option(s) {sorted(opts)} (those are diffusion options)")
        model = self.ema if (use_ema and self.ema is not None) else self.generator
        with torch.no_grad(), self.autocast():
            z = model.sample_latent(labels, generator=generator)
            return model(z, labels).float()


# ---------------------------------------------------------------------------------------------------------------
# `qmedgen prototypes`


def register_commands(sub: argparse._SubParsersAction) -> None:
    """Adds ``qmedgen prototypes``: class-mean features of a dataset (subset) saved for model.prototypes.file."""
    p = sub.add_parser(
        "prototypes",
        help="compute MediQ-GAN class prototypes (class-mean extractor features) and save them",
        description="Compute per-class mean features of a local pretrained extractor over a dataset split or "
        "few-shot subset, and save them as a .safetensors prototype file for model.prototypes.file "
        "(with model.prototypes.init=file).",
    )
    p.add_argument("--data", required=True, help="dataset name (qmedgen data list) or folder:PATH")
    p.add_argument("--data-root", help="directory holding the dataset files")
    p.add_argument("--split", default="train", help="train | val | test | all (default train)")
    p.add_argument("--size", type=int, default=64, help="image size the extractor sees (default 64)")
    p.add_argument("--n-per-class", type=int, help="few-shot: images per class (as the training subset)")
    p.add_argument("--n-train", type=int, help="few-shot: total images (as the training subset)")
    p.add_argument("--subset-seed", type=int, default=0, help="seed of the few-shot draw (as data.subset_seed)")
    p.add_argument("--extractor", default="inception", help="inception (default), domain:<dataset> or a .pt file")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--out", required=True, help="output file (.safetensors)")
    p.set_defaults(func=cmd_prototypes)


def cmd_prototypes(args: argparse.Namespace) -> int:
    from qmedgen.config import from_dict
    from qmedgen.train.distributed import Dist, resolve_device
    from qmedgen.train.loop import load_training_data

    if not str(args.out).endswith(".safetensors"):
        raise ConfigError(f"--out must name a .safetensors file, got {args.out}")
    data_cfg = from_dict(DataConfig, {
        "name": args.data, "root": args.data_root, "split": args.split, "size": args.size,
        "n_per_class": args.n_per_class, "n_total": args.n_train, "subset_seed": args.subset_seed,
    }, path="data")
    dist = Dist()
    device = resolve_device(args.device, dist)
    data = load_training_data(data_cfg, device, dist, seed=0)
    extractor = resolve_extractor(args.extractor, device)
    values = class_mean_features(extractor, data.images, data.labels.cpu(), data.spec.n_classes,
                                 batch_size=args.batch_size, progress=True, allow_missing=True)
    counts = torch.bincount(data.labels.cpu(), minlength=data.spec.n_classes).tolist()
    path = save_prototypes(args.out, values, {
        "dataset": args.data, "split": args.split, "size": args.size, "extractor": args.extractor,
        "n_per_class": args.n_per_class, "n_total": args.n_train, "subset_seed": args.subset_seed,
        "class_counts": counts,
    })
    print(f"prototypes {tuple(values.shape)} from {len(data.labels)} images (per class {counts}) -> {path}")
    print(f"train with: --set model.prototypes.init=file --set model.prototypes.file={path} "
          f"--set model.prototypes.dim={values.shape[1]}")
    return 0
