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

The step itself (its n_critic schedule, losses, EMA, noise bound) is :class:`qmedgen.train.gan.GANTrainer`'s; this
module fills in its hooks. Run directories, checkpoints, resume, progress bars, NaN checks and DDP come from
:mod:`qmedgen.train.loop`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from qmedgen.config import check_betas, option
from qmedgen.errors import ConfigError
from qmedgen.models.critic import ConditionalCritic
from qmedgen.models.mediqgan import MediQGANGenerator, ModelConfig
from qmedgen.models.prototypes import class_mean_features, load_prototypes, resolve_extractor
from qmedgen.train import gan
from qmedgen.train.gan import AdaptiveNoiseBound, GANFamilyConfig, GANTrainer, StepOutputs, check_generated_size
from qmedgen.train.loop import DataSpec, TrainingData, adam


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
class GANConfig(gan.GANConfig):
    n_critic: int = option(3, min=1, help="critic updates (all on the step's one real batch) per generator update")
    noise_bound_r0: float | None = option(None, help="R0 of the adaptive noise bound (default: the first step's R)")
    noise_ratio_momentum: float = option(0.9, min=0.0, max=0.999, help="smoothing of R = |L_D| / |L_G|")
    prototype_batch_size: int = option(64, min=1, help="batch size of the warm-start feature extraction")
    mode_seeking: float = option(
        0.0, min=0.0, help="weight of the mode-seeking term (Mao et al. 2019, MSGAN): two latents per label, the "
        "generator is penalised by w / (mean|G(z1)-G(z2)| / mean|z1-z2| + 1e-5); raises few-shot diversity")


@dataclass
class Config(GANFamilyConfig):
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)  # per-group learning rates (no optimiser choice)
    gan: GANConfig = field(default_factory=GANConfig)
    sized_model: ClassVar[str | None] = "MediQ-GAN"


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


class Trainer(GANTrainer):
    """MediQ-GAN: :class:`~qmedgen.train.gan.GANTrainer` with per-group learning rates, one real batch per step,
    prototype and mode-seeking regularisers, and bf16 autocast on CPU."""

    family = "mediqgan"
    discriminator_name = "critic"
    cast_fakes = False  # the fakes reach the critic in autocast's dtype
    penalty_in_autocast = True  # with train.amp the penalty runs in bf16 too (see gradient_penalty's accuracy)

    def __init__(self, config: Config, spec: DataSpec, device: torch.device, dist=None,
                 data: TrainingData | None = None) -> None:
        self.loss = config.model.critic
        super().__init__(config, spec, device, dist, data)
        g = config.gan
        self.noise_rule = AdaptiveNoiseBound(g.noise_bound_r0, g.noise_ratio_momentum, checkpoint_r0=True)

    def build(self) -> tuple[MediQGANGenerator, ConditionalCritic]:
        m, spec = self.config.model, self.spec
        check_generated_size(spec.size, "MediQ-GAN")
        proto = warm_start_prototypes(m, spec, self.data, self.config.gan.prototype_batch_size,
                                      progress=self.dist.is_main)
        generator = MediQGANGenerator(m, spec.n_classes, spec.size, spec.channels, prototype_init=proto)
        critic = ConditionalCritic(spec.n_classes, spec.size, spec.channels, tuple(m.critic_channels),
                                   m.critic_embed_dim, kind=m.critic)
        # channels-last (NHWC) generator convolutions: ~2x faster on CPU (oneDNN) and for CUDA tensor cores. The
        # critic keeps NCHW weights: their gradients arrive from the loss and from the penalty's double backward in
        # different layouts, and channels-last parameters had every update re-lay them out (AccumulateGrad, fused
        # Adam): ~15 ms of copies per paper-config iteration, 1-2 % of it (benchmarks/RESULTS.md)
        return generator.to(self.device, memory_format=torch.channels_last), critic

    def build_optimizers(self) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
        """Adam per generator group (encoder, decoder, circuits, matched MLP, prototypes), Adam for the critic."""
        o = self.config.optim
        lrs = {"encoder": o.lr_encoder, "decoder": o.lr_decoder, "quantum": o.lr_quantum,
               "matched_mlp": o.lr_encoder if o.lr_matched_mlp is None else o.lr_matched_mlp,
               "prototypes": o.lr_prototypes}
        groups = [{"params": ps, "lr": lrs[name], "name": name}
                  for name, ps in self.generator.param_groups().items() if ps]
        return (adam(groups, betas=tuple(o.g_betas)),
                adam(self.discriminator.parameters(), lr=o.lr_critic, betas=tuple(o.d_betas)))

    def autocast(self):
        """Mixed precision: the shared loop's on CUDA; with ``train.amp`` on CPU, bfloat16 autocast (oneDNN bf16
        convolutions, ~1.8x faster on CPUs with AVX512-BF16/AMX). Circuits stay float32; the gradient penalty runs in
        bf16 too (see :func:`~qmedgen.models.critic.gradient_penalty` for its measured accuracy)."""
        if self.device.type == "cpu" and self.config.train.amp:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return super().autocast()

    # ---- GANTrainer hooks -----------------------------------------------------------------------------------

    def latent_spec(self) -> tuple[str, int]:
        return self.generator.noise_kind, self.config.model.latent_dim

    def latent_from_noise(self, noise: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.generator.sample_latent(y, eps=noise)

    def critic_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """One real batch for all n_critic updates, and their fakes in ONE batched forward without a generator
        graph (the generator does not change during critic updates, so this equals generating them one by one)."""
        n_critic = self.config.gan.n_critic
        real, y = self.data.next_batch(self.config.train.batch_size)
        with torch.no_grad(), self.autocast():
            fakes = self.generator(self.latent(y, n_critic), y.repeat(n_critic)).chunk(n_critic)
        for fake in fakes:
            yield real, y, fake

    def critic_logits(
        self, real: torch.Tensor, fake: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Real and fake in one batched forward (the critic has no batch statistics that would couple them)."""
        d_real, d_fake = self.discriminator(torch.cat([real, fake]), torch.cat([y, y])).float().chunk(2)
        return d_real, d_fake, d_real.new_zeros(())

    def generator_copies(self) -> int:
        return 2 if self.config.gan.mode_seeking > 0 else 1

    def generator_terms(self, z: torch.Tensor, fake: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """The prototype separation regulariser (0 without prototypes), and with two latents per label the
        mode-seeking term: same labels, two latents, reward images that move when the latent moves."""
        bank, pc = self.generator.prototypes, self.config.model.prototypes
        terms = {"proto_reg": torch.zeros((), device=self.device) if bank is None
                 else bank.separation_loss(pc.reg_weight, pc.reg_margin)}
        if self.generator_copies() == 2:
            f1, f2 = fake.float().chunk(2)
            z1, z2 = z.float().chunk(2)
            ratio = (f1 - f2).abs().mean() / (z1 - z2).abs().mean().clamp_min(1e-8)
            terms["mode_seeking"] = self.config.gan.mode_seeking / (ratio + 1e-5)
        return terms

    def step_metrics(self, out: StepOutputs) -> dict[str, float]:
        metrics = {"loss_d": float(out.loss_d.detach()), "loss_g": float(out.loss_g.detach()),
                   "gp": float(out.gp.detach()), **{k: float(t.detach()) for k, t in out.terms.items()}}
        if self.loss == "wgan-gp":
            metrics["w_dist"] = float((out.d_real.mean() - out.d_fake.mean()).detach())
        return metrics

    def after_step(self, metrics: dict[str, float]) -> None:
        q = self.generator.quantum_layer
        if q is not None and q.weight.grad is not None:  # watch for barren plateaus (the norm collapsing to ~0)
            metrics["grad_circuits"] = float(q.weight.grad.norm())
        if self.generator.uses_noise_bound:
            metrics["noise_bound"] = self.update_noise_bound(metrics["loss_d"], metrics["loss_g"])
        if self.generator.skips is not None:
            metrics["skip_scale"] = float(self.generator.skips.scales.detach().abs().mean())

    # ---- loop interface -------------------------------------------------------------------------------------

    def parameter_counts(self) -> dict[str, int]:
        counts = super().parameter_counts()
        q = self.generator.quantum_parameter_count
        counts["quantum_stream"], counts["circuit_equivalent"] = q["actual"], q["circuit_equivalent"]
        return counts

    def sample(self, labels: torch.Tensor, generator: torch.Generator | None = None, use_ema: bool = True,
               **opts: Any) -> torch.Tensor:
        """Images for ``labels``; the latents come from the sampled network's own prototypes and noise bound."""
        if opts:
            raise ConfigError(f"MediQ-GAN sampling has no option(s) {sorted(opts)} (those are diffusion options)")
        model = self.ema if (use_ema and self.ema is not None) else self.generator
        with torch.no_grad(), self.autocast():
            z = model.sample_latent(labels, generator=generator)
            return model(z, labels).float()
