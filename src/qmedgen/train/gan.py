"""The one GAN trainer: n_critic schedule, losses, DiffAugment, EMA, the adaptive noise bound, sampling.

MediQ-GAN (:mod:`qmedgen.train.mediqgan`) and the baselines (DCGAN, WGAN-GP, FastGAN, MosaiQ, Patch-QGAN in
:mod:`qmedgen.train.baselines`) are thin subclasses of :class:`GANTrainer`. One training step (= one generator
update):

1. ``n_critic`` discriminator updates on the (real, labels, fake) triples of :meth:`GANTrainer.critic_batches`
   (by default a *fresh* real batch per update, Gulrajani et al. 2017, Algorithm 1; fakes under ``torch.no_grad``);
2. one generator update on fresh latents for the last real batch's labels, the discriminator frozen meanwhile:
   the adversarial loss plus the named terms of :meth:`GANTrainer.generator_terms` (regularisers);
3. the optional EMA of the generator (used for sampling; :func:`qmedgen.train.ema.ema_update` with its warm-up),
   then :meth:`GANTrainer.after_step` (e.g. the adaptive noise bound, :class:`AdaptiveNoiseBound`).

Losses (``loss``, fixed by the family or its config): ``bce`` - the standard GAN loss with the non-saturating
generator loss (DCGAN, the quantum GANs, MediQ-GAN's ``model.critic=bce``); ``wgan-gp`` - ``D(fake) - D(real) +
lambda * GP`` with the penalty of :func:`qmedgen.models.critic.gradient_penalty`; ``hinge`` - ``relu(1 - D(real)) +
relu(1 + D(fake))``, generator ``-D(fake)`` (FastGAN). DiffAugment (Zhao et al. 2020), when set, is applied to real
and fake images before every discriminator call, in both updates, so that gradients reach the generator through it.

Hooks: :meth:`~GANTrainer.build` (the networks), :meth:`~GANTrainer.build_optimizers`, :meth:`~GANTrainer.latent_spec`
and :meth:`~GANTrainer.latent_from_noise` (the latent rule), :meth:`~GANTrainer.critic_batches`,
:meth:`~GANTrainer.critic_logits` and :meth:`~GANTrainer.discriminate` (auxiliary discriminator losses),
:meth:`~GANTrainer.generator_copies` and :meth:`~GANTrainer.generator_terms`, :meth:`~GANTrainer.step_metrics`,
:meth:`~GANTrainer.after_step`. The order in which a step draws random numbers is part of each family's contract
(exact resume and seeded runs depend on it): a hook must draw exactly what the code it replaces drew, in order.
Run directories, checkpoints, exact resume, progress and NaN stops come from :mod:`qmedgen.train.loop`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from qmedgen.config import check_betas, option
from qmedgen.data.catalog import GENERATED_SIZES
from qmedgen.errors import ConfigError
from qmedgen.models.critic import gradient_penalty
from qmedgen.train import loop
from qmedgen.train.ema import ema_copy, ema_update
from qmedgen.train.sections import DataConfig, TrainConfig

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
    ema_decay: float = option(0.999, min=0.0, max=1.0, help="EMA decay per step (warm-up: min(decay, (1+t)/(10+t)))")
    ada_target: float = option(0.0, min=0.0, max=1.0, help="adaptive augmentation (ADA, Karras et al. 2020): the "
                               "DiffAugment probability p rises while the critic's overfitting signal r_t is above "
                               "this target and falls below it; 0 = off (every op on every image); ADA uses 0.6")
    ada_speed: int = option(500, min=1, help="ADA: steps for p to travel from 0 to 1 while r_t stays above target")
    ada_interval: int = option(4, min=1, help="ADA: adjust p every this many steps, from r_t averaged over them")

    def validate(self) -> None:
        if self.diffaugment:
            from qmedgen.data.diffaugment import parse_policy

            parse_policy(self.diffaugment)
        elif self.ada_target > 0:
            raise ConfigError("gan.ada_target: adaptive augmentation tunes the DiffAugment probability, so it needs "
                              "a policy in gan.diffaugment (e.g. 'translation,cutout,color'), got ''")


def check_generated_size(size: int, model: str) -> None:
    """``data.size`` must be one the generators produce (:data:`qmedgen.data.catalog.GENERATED_SIZES`)."""
    if size not in GENERATED_SIZES:
        *head, last = map(str, GENERATED_SIZES)
        raise ConfigError(f"data.size: {model} generates {', '.join(head)} or {last} px images, got {size}")


@dataclass
class GANFamilyConfig:
    """A GAN family's config. A family subclasses it, setting its own ``model`` section and the sections whose
    defaults (or, for MediQ-GAN's ``optim``, types) differ; overridden fields keep their place, so config files keep
    this order."""

    data: DataConfig = option(default_factory=DataConfig)
    train: TrainConfig = option(default_factory=TrainConfig)
    model: Any = None  # the family's section
    optim: GANOptimConfig = option(default_factory=GANOptimConfig)
    gan: GANConfig = option(default_factory=GANConfig)

    #: the model named by the ``data.size`` check, for generators of GENERATED_SIZES only (None: any size)
    sized_model: ClassVar[str | None] = None

    def validate(self) -> None:
        if self.sized_model is not None:
            check_generated_size(self.data.size, self.sized_model)


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


def adaptive_noise_bound(ratio: float, r0: float = 1.0) -> float:
    """MosaiQ's adaptive input-noise bound ``pi/8 + (5 pi / 8) * ReLU(tanh(R - R0))`` for the loss ratio ``R``."""
    return math.pi / 8 + 5 * math.pi / 8 * max(0.0, math.tanh(ratio - r0))


class AdaptiveNoiseBound:
    """MosaiQ's adaptive latent range (Silver et al. 2023), used by MosaiQ and MediQ-GAN without prototypes.

    ``ub = adaptive_noise_bound(R, R0)`` with ``R = |L_D| / max(|L_G|, 1e-8)`` smoothed by an exponential moving
    average (``momentum``; 0 = the raw per-step ratio). Magnitudes, because WGAN losses are signed and cross zero,
    which makes the raw ratio flip sign and explode; the average, so that one noisy step cannot swing the bound.
    ``r0=None`` takes R0 from the first step (MediQ-GAN's default). ``checkpoint_r0`` adds R0 to the checkpointed
    state (MediQ-GAN's format; MosaiQ's R0 is a fixed config value and its checkpoints hold only the average).
    """

    def __init__(self, r0: float | None, momentum: float, checkpoint_r0: bool) -> None:
        self.r0, self.momentum, self.checkpoint_r0 = r0, momentum, checkpoint_r0
        self.ratio_ema: float | None = None

    def update(self, loss_d: float, loss_g: float) -> float:
        """Feeds one step's losses; returns the new bound."""
        ratio = abs(loss_d) / max(abs(loss_g), 1e-8)
        mom = self.momentum
        self.ratio_ema = ratio if self.ratio_ema is None else mom * self.ratio_ema + (1 - mom) * ratio
        if self.r0 is None:
            self.r0 = ratio
        return adaptive_noise_bound(self.ratio_ema, self.r0)

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"ratio_ema": self.ratio_ema}
        if self.checkpoint_r0:
            state["ratio_r0"] = self.r0
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        self.ratio_ema = state.get("ratio_ema")
        self.r0 = state.get("ratio_r0", self.r0)


class AdaptiveAugment:
    """ADA's controller (Karras et al., NeurIPS 2020) for the DiffAugment probability ``p``, starting at 0.

    The overfitting signal is ``r_t = E[sign(D(real) - c)]``, the share of real logits on the real side of the
    boundary, averaged over ``interval`` steps: ``c = 0`` for bce and hinge as in ADA, and the batch's mean fake logit
    for the WGAN critic, whose loss is shift-invariant (so its 0 means nothing). ``r_t`` near 1 means the critic has
    memorised the few real images; then ``p += interval / speed``, below target ``p -= interval / speed``, clipped to
    [0, 1]. Data-parallel ranks sum their signs before each adjustment, so every rank holds the same ``p``.
    """

    def __init__(self, target: float, speed: int, interval: int, shift_free: bool,
                 device: torch.device | None = None) -> None:
        self.target, self.speed, self.interval, self.shift_free = target, speed, interval, shift_free
        self.device = device or torch.device("cpu")  # where ranks exchange their sums (NCCL needs CUDA tensors)
        self.p = 0.0
        self.r_t: float | None = None  # the last adjustment's signal
        self._sum = torch.zeros(1, 2, dtype=torch.float64)  # (sum of signs, count) since the last adjustment

    def observe(self, d_real: torch.Tensor, d_fake: torch.Tensor) -> None:
        real = d_real.detach().float().reshape(-1)
        ref = d_fake.detach().float().mean() if self.shift_free else 0.0
        self._sum += torch.tensor([[float(torch.sign(real - ref).sum()), real.numel()]], dtype=torch.float64)

    def adjust(self, step: int, dist: Any) -> None:
        """After step ``step`` (0-based): every ``interval`` steps, move ``p`` towards the target."""
        if (step + 1) % self.interval:
            return
        total = dist.all_gather_tensor(self._sum.to(self.device)).sum(0).cpu()
        self._sum.zero_()
        if total[1] == 0:
            return
        self.r_t = float(total[0] / total[1])
        delta = math.copysign(self.interval / self.speed, self.r_t - self.target) if self.r_t != self.target else 0.0
        self.p = min(1.0, max(0.0, self.p + delta))

    def state(self) -> dict[str, Any]:
        return {"ada_p": self.p, "ada_r_t": self.r_t, "ada_sum": self._sum.reshape(-1).tolist()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.p = float(state.get("ada_p", 0.0))
        self.r_t = state.get("ada_r_t")
        self._sum = torch.tensor([state.get("ada_sum", [0.0, 0.0])], dtype=torch.float64)


@dataclass
class StepOutputs:
    """What :meth:`GANTrainer.step_metrics` reports: the last critic update's and the generator update's tensors."""

    loss_d: torch.Tensor
    d_real: torch.Tensor
    d_fake: torch.Tensor
    gp: torch.Tensor  # 0 unless the wgan-gp penalty ran
    aux: torch.Tensor  # the auxiliary discriminator loss of :meth:`GANTrainer.discriminate` (0 if none)
    loss_g: torch.Tensor  # the generator's adversarial term
    terms: dict[str, torch.Tensor]  # the generator's extra terms (:meth:`GANTrainer.generator_terms`)


def _scalar(t: torch.Tensor) -> float:
    return float(t.detach())


class GANTrainer(loop.Trainer):
    """Base of the GAN trainers: ``self.generator``, ``self.discriminator``, optional ``self.ema`` (see the module)."""

    loss: str = "bce"  # the family's loss (a subclass may set it per config, before ``__init__``)
    discriminator_name: ClassVar[str] = "discriminator"  # its name in checkpoints (MediQ-GAN: "critic")
    cast_fakes: ClassVar[bool] = True  # hand the discriminator float32 fakes (MediQ-GAN keeps autocast's dtype)
    penalty_in_autocast: ClassVar[bool] = False  # see gradient_penalty(in_autocast=...)

    def __init__(self, config: Any, spec: loop.DataSpec, device: torch.device, dist=None, data=None) -> None:
        super().__init__(config, spec, device, dist, data)
        if self.loss not in LOSSES:
            raise ConfigError(f"{type(self).__name__}.loss must be one of {LOSSES}, got {self.loss!r}")
        generator, discriminator = self.build()
        self.generator: nn.Module = generator.to(device)
        self.discriminator: nn.Module = discriminator.to(device)
        self.ema = ema_copy(self.generator) if config.gan.ema else None
        self.opt_g, self.opt_d = self.build_optimizers()
        self.noise_rule: AdaptiveNoiseBound | None = None  # set by families with an adaptive latent range
        g = config.gan
        self.ada = (AdaptiveAugment(g.ada_target, g.ada_speed, g.ada_interval, shift_free=self.loss == "wgan-gp",
                                    device=device) if g.ada_target > 0 else None)

    # --- hooks ----------------------------------------------------------------------------------------------
    def build(self) -> tuple[nn.Module, nn.Module]:
        """(generator, discriminator) for ``self.spec`` and ``self.config`` (``self.data`` may be None)."""
        raise NotImplementedError

    def build_optimizers(self) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
        """(generator's, discriminator's) optimiser; here from a :class:`GANOptimConfig` ``optim`` section."""
        o = self.config.optim
        return (make_optimizer(self.generator.parameters(), o, o.lr_g, o.g_betas),
                make_optimizer(self.discriminator.parameters(), o, o.lr_d, o.d_betas))

    def latent_spec(self) -> tuple[str, int]:
        """(``"normal"`` or ``"uniform"``, dimension) of the raw latent noise: N(0, 1) or U(0, 1)."""
        return "normal", int(self.config.model.latent_dim)

    def latent_from_noise(self, noise: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The latents the generator reads, from raw noise ``[B, dim]`` and labels ``[B]`` (the noise itself here)."""
        del y
        return noise

    def critic_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(real, labels, fake) for each of the ``n_critic`` updates: a fresh real batch each (Algorithm 1)."""
        cfg = self.config
        for _ in range(cfg.gan.n_critic):
            real, y = self.data.next_batch(cfg.train.batch_size)
            with torch.no_grad(), self.autocast():
                fake = self.generator(self.latent(y), y)
            yield real, y, fake

    def discriminate(self, x: torch.Tensor, y: torch.Tensor, real: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and an auxiliary discriminator loss (0 here; FastGAN adds its reconstruction loss on reals)."""
        del real
        return self.discriminator(x, y).float(), x.new_zeros((), dtype=torch.float32)

    def critic_logits(
        self, real: torch.Tensor, fake: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(D(real), D(fake), auxiliary loss): two calls, so a BatchNorm discriminator sees each batch alone."""
        d_real, aux = self.discriminate(real, y, real=True)
        d_fake, _ = self.discriminate(fake, y, real=False)
        return d_real, d_fake, aux

    def generator_copies(self) -> int:
        """Latents per label in the generator update (MediQ-GAN's mode-seeking term compares two)."""
        return 1

    def generator_terms(self, z: torch.Tensor, fake: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named terms added, in order, to the generator's adversarial loss (regularisers); none here."""
        del z, fake, y
        return {}

    def step_metrics(self, out: StepOutputs) -> dict[str, float]:
        """The step's logged scalars."""
        metrics = {
            "loss_d": _scalar(out.loss_d),
            "loss_g": _scalar(out.loss_g),
            "d_real": float(out.d_real.detach().mean()),
            "d_fake": float(out.d_fake.detach().mean()),
        }
        if self.loss == "wgan-gp":
            metrics["gp"] = _scalar(out.gp)
        if out.aux.requires_grad:  # an auxiliary discriminator loss was computed (FastGAN's reconstruction)
            metrics["recon"] = _scalar(out.aux)
        metrics.update({name: _scalar(t) for name, t in out.terms.items()})
        return metrics

    def after_step(self, metrics: dict[str, float]) -> None:
        """Called after both updates and the EMA (e.g. MosaiQ's adaptive noise bound); may add metrics."""

    # --- helpers --------------------------------------------------------------------------------------------
    def latent(self, y: torch.Tensor, copies: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        """Latents for ``copies`` copies of the labels ``y`` (concatenated). Each copy's raw noise is this rank's
        slice of a global batch (so data-parallel runs see the numbers of one process), or drawn from ``generator``."""
        kind, dim = self.latent_spec()
        n = len(y)
        if generator is None:
            draw = self.local_randn if kind == "normal" else self.local_rand
            noise = [draw(n, dim) for _ in range(copies)]
        else:
            gdraw = torch.randn if kind == "normal" else torch.rand
            noise = [gdraw(n, dim, generator=generator, device=generator.device).to(self.device) for _ in range(copies)]
        if copies == 1:
            return self.latent_from_noise(noise[0], y)
        return self.latent_from_noise(torch.cat(noise), y.repeat(copies))

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """DiffAugment with ``gan.diffaugment`` (identity when unset), at ADA's probability when ``gan.ada_target``."""
        policy = self.config.gan.diffaugment
        if not policy:
            return x
        from qmedgen.data.diffaugment import diff_augment

        return diff_augment(x, policy) if self.ada is None else diff_augment(x, policy, p=self.ada.p)

    def penalty(self, real: torch.Tensor, fake: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return gradient_penalty(self.discriminator, real, fake, y, in_autocast=self.penalty_in_autocast)

    def update_ema(self, step: int) -> None:
        if self.ema is not None:
            ema_update(self.ema, self.generator, self.config.gan.ema_decay, step)

    def update_noise_bound(self, loss_d: float, loss_g: float) -> float:
        """Feeds :attr:`noise_rule` and sets the new bound on the generator (and its EMA); returns it."""
        ub = self.noise_rule.update(loss_d, loss_g)
        self.generator.set_noise_bound(ub)
        if self.ema is not None:
            self.ema.set_noise_bound(ub)
        return ub

    def _to_critic(self, fake: torch.Tensor) -> torch.Tensor:
        return self.augment(fake.float() if self.cast_fakes else fake)

    # --- the loop's interface -------------------------------------------------------------------------------
    def modules(self) -> dict[str, nn.Module]:
        mods = {"generator": self.generator, self.discriminator_name: self.discriminator}
        if self.ema is not None:
            mods["generator_ema"] = self.ema
        return mods

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"generator": self.opt_g, self.discriminator_name: self.opt_d}

    def extra_state(self) -> dict[str, Any]:
        state = {} if self.noise_rule is None else self.noise_rule.state()
        if self.ada is not None:
            state.update(self.ada.state())
        return state

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if self.noise_rule is not None:
            self.noise_rule.load_state(state)
        if self.ada is not None:
            self.ada.load_state(state)

    def train_step(self, step: int) -> dict[str, float]:
        if self.data is None:
            raise RuntimeError("this trainer was built without training data (sampling only)")
        cfg = self.config
        clip = cfg.optim.grad_clip
        penalised = self.loss == "wgan-gp" and cfg.gan.gp_weight > 0
        self.generator.train()
        self.discriminator.train()
        for real, y, fake in self.critic_batches():
            real_in, fake_in = self.augment(real), self._to_critic(fake)
            with self.autocast():
                d_real, d_fake, aux = self.critic_logits(real_in, fake_in, y)
                gp = self.penalty(real_in, fake_in, y) if penalised else torch.zeros((), device=self.device)
            if self.ada is not None:
                self.ada.observe(d_real, d_fake)
            loss_d = d_loss(self.loss, d_real, d_fake) + aux
            if penalised:
                loss_d = loss_d + cfg.gan.gp_weight * gp
            self.optimize(loss_d, self.opt_d, clip=clip)

        self.discriminator.requires_grad_(False)
        try:
            copies = self.generator_copies()
            y_g = y if copies == 1 else y.repeat(copies)
            with self.autocast():
                z = self.latent(y, copies)
                fake = self.generator(z, y_g)
                d_gen, _ = self.discriminate(self._to_critic(fake), y_g, real=False)
            adv = g_loss(self.loss, d_gen)
            terms = self.generator_terms(z, fake, y_g)
            loss_g = adv
            for term in terms.values():
                loss_g = loss_g + term
            self.optimize(loss_g, self.opt_g, clip=clip)
        finally:
            self.discriminator.requires_grad_(True)
        self.update_ema(step)
        metrics = self.step_metrics(StepOutputs(loss_d, d_real, d_fake, gp, aux, adv, terms))
        if self.ada is not None:
            self.ada.adjust(step, self.dist)
            metrics["ada_p"] = self.ada.p
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
                return net(self.latent(labels, generator=generator), labels).float()
        finally:
            net.train(was_training)

    def parameter_counts(self) -> dict[str, int]:
        counts = super().parameter_counts()
        circuit = getattr(self.generator, "circuit_count", None)
        if callable(circuit):
            counts.update({f"circuit_{k}": v for k, v in circuit().items()})
        return counts
