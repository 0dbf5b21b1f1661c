"""What every baseline GAN trainer shares: optimisers, the n_critic schedule, the losses, DiffAugment, EMA, sampling.

One training step (= one generator update):

1. ``n_critic`` discriminator updates, each on a *fresh* real batch (Gulrajani et al. 2017, Algorithm 1) against
   fakes generated under ``torch.no_grad``;
2. one generator update on fresh latents for the last real batch's labels, the discriminator frozen meanwhile;
3. the optional EMA of the generator (used for sampling; :func:`qmedgen.diffusion.ema_update` with its warm-up).

Losses (``loss`` is fixed by the family, it defines the baseline): ``bce`` - the standard GAN loss with the
non-saturating generator loss (DCGAN, the quantum GANs); ``wgan-gp`` - ``D(fake) - D(real) + lambda * GP`` with the
penalty of :func:`qmedgen.models.critic.gradient_penalty`; ``hinge`` - ``relu(1 - D(real)) + relu(1 + D(fake))``,
generator ``-D(fake)`` (FastGAN). DiffAugment (Zhao et al. 2020), when set, is applied to real and fake images
before every discriminator call, in both updates, so that gradients reach the generator through it.

Subclasses build the networks in :meth:`GANTrainer.build` and may override :meth:`GANTrainer.latent_spec`,
:meth:`GANTrainer.discriminate` (auxiliary discriminator losses) and :meth:`GANTrainer.after_step`.
Run directories, checkpoints, exact resume, progress and NaN stops come from :mod:`qmedgen.train.loop`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from qmedgen.config import check_betas, option
from qmedgen.diffusion.ema import ema_copy, ema_update
from qmedgen.errors import ConfigError
from qmedgen.models.critic import gradient_penalty
from qmedgen.train import loop

LOSSES = ("bce", "wgan-gp", "hinge")


@dataclass
class GANOptimConfig:
    optimizer: str = option("adam", choices=("adam", "sgd"), help="optimiser of both networks")
    lr_g: float = option(2e-4, min=0.0, help="generator learning rate")
    lr_d: float = option(2e-4, min=0.0, help="discriminator / critic learning rate")
    g_betas: list[float] = option([0.5, 0.999], help="Adam betas of the generator")
    d_betas: list[float] = option([0.5, 0.999], help="Adam betas of the discriminator")
    grad_clip: float | None = option(None, min=0.0, help="clip gradient norms (per update) at this value")

    def validate(self) -> None:
        check_betas(self, "optim", ("g_betas", "d_betas"))


@dataclass
class GANConfig:
    n_critic: int = option(1, min=1, help="discriminator updates (each on a fresh real batch) per generator update")
    gp_weight: float = option(10.0, min=0.0, help="gradient-penalty weight (wgan-gp only)")
    diffaugment: str = option("", help="DiffAugment policy on real and fake, e.g. 'translation,cutout,color' ('' off)")
    ema: bool = option(False, help="keep an exponential moving average of the generator for sampling")
    ema_decay: float = option(0.999, min=0.0, max=1.0, help="EMA decay per step (with warm-up)")

    def validate(self) -> None:
        if self.diffaugment:
            from qmedgen.data.diffaugment import parse_policy

            parse_policy(self.diffaugment)


def make_optimizer(params: Any, cfg: GANOptimConfig, lr: float, betas: list[float]) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr)
    return loop.adam(params, lr=lr, betas=tuple(betas))


def d_loss(kind: str, d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """The discriminator's adversarial loss (without any penalty)."""
    if kind == "bce":
        return F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
    if kind == "hinge":
        return F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
    return d_fake.mean() - d_real.mean()


def g_loss(kind: str, d_gen: torch.Tensor) -> torch.Tensor:
    return F.softplus(-d_gen).mean() if kind == "bce" else -d_gen.mean()


class GANTrainer(loop.Trainer):
    """Base of the baseline GAN trainers (``self.generator``, ``self.discriminator``, optional ``self.ema``)."""

    loss: ClassVar[str] = "bce"

    def __init__(self, config: Any, spec: loop.DataSpec, device: torch.device, dist=None, data=None) -> None:
        super().__init__(config, spec, device, dist, data)
        if self.loss not in LOSSES:
            raise ConfigError(f"{type(self).__name__}.loss must be one of {LOSSES}, got {self.loss!r}")
        generator, discriminator = self.build()
        self.generator: nn.Module = generator.to(device)
        self.discriminator: nn.Module = discriminator.to(device)
        g, o = config.gan, config.optim
        self.ema = ema_copy(self.generator) if g.ema else None
        self.opt_g = make_optimizer(self.generator.parameters(), o, o.lr_g, o.g_betas)
        self.opt_d = make_optimizer(self.discriminator.parameters(), o, o.lr_d, o.d_betas)

    # --- hooks ----------------------------------------------------------------------------------------------
    def build(self) -> tuple[nn.Module, nn.Module]:
        """(generator, discriminator) for ``self.spec`` and ``self.config`` (``self.data`` may be None)."""
        raise NotImplementedError

    def latent_spec(self) -> tuple[str, int, float]:
        """(``"normal"`` or ``"uniform"``, dimension, scale): z ~ scale * N(0, 1) or U(0, scale)."""
        return "normal", int(self.config.model.latent_dim), 1.0

    def discriminate(self, x: torch.Tensor, y: torch.Tensor, real: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and an auxiliary discriminator loss (0 here; FastGAN adds its reconstruction loss on reals)."""
        del real
        return self.discriminator(x, y).float(), x.new_zeros((), dtype=torch.float32)

    def after_step(self, metrics: dict[str, float]) -> None:
        """Called after both updates (e.g. MosaiQ's adaptive noise bound)."""

    # --- helpers --------------------------------------------------------------------------------------------
    def latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Latents for ``n`` examples: this rank's slice of the global batch's noise, or from ``generator``."""
        kind, dim, scale = self.latent_spec()
        if generator is None:
            u = self.local_randn(n, dim) if kind == "normal" else self.local_rand(n, dim)
        else:
            draw = torch.randn if kind == "normal" else torch.rand
            u = draw(n, dim, generator=generator, device=generator.device).to(self.device)
        return u * scale

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        policy = self.config.gan.diffaugment
        if not policy:
            return x
        from qmedgen.data.diffaugment import diff_augment

        return diff_augment(x, policy)

    # --- the loop's interface -------------------------------------------------------------------------------
    def modules(self) -> dict[str, nn.Module]:
        mods = {"generator": self.generator, "discriminator": self.discriminator}
        if self.ema is not None:
            mods["generator_ema"] = self.ema
        return mods

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"generator": self.opt_g, "discriminator": self.opt_d}

    def train_step(self, step: int) -> dict[str, float]:
        if self.data is None:
            raise RuntimeError("this trainer was built without training data (sampling only)")
        cfg = self.config
        clip = cfg.optim.grad_clip
        self.generator.train()
        self.discriminator.train()
        for _ in range(cfg.gan.n_critic):
            real, y = self.data.next_batch(cfg.train.batch_size)
            with torch.no_grad(), self.autocast():
                fake = self.generator(self.latent(len(y)), y)
            real_in, fake_in = self.augment(real), self.augment(fake.float())
            with self.autocast():
                d_real, aux = self.discriminate(real_in, y, real=True)
                d_fake, _ = self.discriminate(fake_in, y, real=False)
            loss_d = d_loss(self.loss, d_real, d_fake) + aux
            gp = torch.zeros((), device=self.device)
            if self.loss == "wgan-gp" and cfg.gan.gp_weight > 0:
                gp = gradient_penalty(self.discriminator, real_in, fake_in, y)
                loss_d = loss_d + cfg.gan.gp_weight * gp
            self.optimize(loss_d, self.opt_d, clip=clip)

        self.discriminator.requires_grad_(False)
        try:
            with self.autocast():
                fake = self.generator(self.latent(len(y)), y)
                d_gen, _ = self.discriminate(self.augment(fake.float()), y, real=False)
            loss_g = g_loss(self.loss, d_gen)
            self.optimize(loss_g, self.opt_g, clip=clip)
        finally:
            self.discriminator.requires_grad_(True)
        if self.ema is not None:
            ema_update(self.ema, self.generator, cfg.gan.ema_decay, step)
        metrics = {
            "loss_d": float(loss_d.detach()),
            "loss_g": float(loss_g.detach()),
            "d_real": float(d_real.detach().mean()),
            "d_fake": float(d_fake.detach().mean()),
        }
        if self.loss == "wgan-gp":
            metrics["gp"] = float(gp.detach())
        if aux.requires_grad:  # an auxiliary discriminator loss was computed (FastGAN's reconstruction)
            metrics["recon"] = float(aux.detach())
        self.after_step(metrics)
        return metrics

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, generator: torch.Generator | None = None, use_ema: bool = True,
               **opts: Any) -> torch.Tensor:
        """Images in [-1, 1] for class ids ``labels`` (the EMA generator when kept, in eval mode).

        Option: ``use_ema`` (default True)."""
        if opts:
            raise ConfigError(f"{self.family} sampling has no option(s) {sorted(opts)}; valid: ['use_ema']")
        net = self.ema if (use_ema and self.ema is not None) else self.generator
        was_training = net.training
        net.eval()
        try:
            labels = labels.to(self.device).long()
            with self.autocast():
                return net(self.latent(len(labels), generator), labels).float()
        finally:
            net.train(was_training)

    def parameter_counts(self) -> dict[str, int]:
        counts = super().parameter_counts()
        circuit = getattr(self.generator, "circuit_count", None)
        if callable(circuit):
            counts.update({f"circuit_{k}": v for k, v in circuit().items()})
        return counts
