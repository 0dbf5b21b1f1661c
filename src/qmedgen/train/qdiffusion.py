"""Quantum diffusion (arXiv 2504.00034, done as the paper describes): the ``qdiffusion`` model family.

A noise-prediction U-Net (the paper's lightweight one, or a stronger configurable one) with a bottleneck gate
(``model.gate``: ``quantum`` VQC gate, ``none`` = the paper's classical counterpart, ``matched-se`` = a
parameter-matched squeeze-and-excitation gate), trained on the epsilon-prediction MSE with optional min-SNR
weighting and importance-sampled time steps (``diffusion.schedule = tailored``), with Gaussian, quantum-measured
or hybrid noise in the forward process and the sampler, Adam 3e-4 and EMA 0.999 weights for sampling.

The shared loop (:mod:`qmedgen.train.loop`) does data, run directories, checkpoints, resume, progress and NaN
stops; this module only builds the networks and defines one training step and sampling.

What the authors' public code did differently, and what qmedgen does instead:

* circuit = RY encoding + [RZ, CNOT] layers: every <Z_i> is independent of the weights (dead weights), and the
  input was detached -> here [RZ, RY] layers (every weight moves <Z>; tested) and no detach anywhere;
* classical counterpart = no gate only -> also ``matched-se``, a gate with the same parameter count;
* noise = torch.randn only -> ``diffusion.noise = quantum | hybrid`` (measured bitstrings, see
  :mod:`qmedgen.diffusion.noise`);
* schedule = plain cosine -> also ``tailored`` (importance-sampled time steps + min-SNR weighting) and ``linear``;
* per-sample PennyLane QNode calls -> one batched call of the engine per batch (see benchmarks/bench_qdiffusion.py);
* FID on 5-13 images -> use ``qmedgen sample RUN --n 1000`` and ``qmedgen evaluate`` (KID with intervals).

Randomness: time steps, label dropout and Gaussian noise come from torch's global RNG (checkpointed by the loop);
the quantum noise source and the importance sampler's loss history are in :meth:`Trainer.extra_state`, so a
resumed run continues bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from qmedgen.config import option
from qmedgen.diffusion import (
    loss_weights,
    make_noise,
    make_schedule,
    make_timestep_sampler,
    training_policy,
)
from qmedgen.diffusion import sample as diffusion_sample
from qmedgen.diffusion.noise import SOURCES, TRANSFORMS
from qmedgen.diffusion.samplers import SAMPLERS
from qmedgen.diffusion.schedules import SCHEDULES
from qmedgen.errors import ConfigError
from qmedgen.models.bottleneck import ACTIVATIONS, GATES, GateSpec
from qmedgen.models.unet import LightUNet, UNet
from qmedgen.train import loop
from qmedgen.train.ema import ema_copy, ema_update
from qmedgen.train.sections import DataConfig, TrainConfig


@dataclass
class ModelConfig:
    arch: str = option("light", choices=("light", "unet"),
                       help="light = the paper's 446k-parameter U-Net (28x28 .. ); unet = configurable DDPM U-Net")
    gate: str = option("quantum", choices=GATES,
                       help="bottleneck gate: quantum VQC, none (paper's classical model), matched-se (same #params)")
    n_qubits: int = option(16, min=1, max=20, help="qubits of the bottleneck circuit (and matched-se width)")
    depth: int = option(3, min=0, max=50, help="circuit layers of [RZ, RY] rotations + CNOT chain")
    gate_activation: str = option("tanh", choices=ACTIVATIONS, help="tanh: h*(1+tanh z); sigmoid: h*sigmoid(z)")
    gate_residual: bool = option(False, help="residual gate h + h*g(z) instead of h*g(z)")
    bottleneck_shots: int | None = option(None, min=1, help="shot noise on the circuit readout (None = exact <Z>)")
    class_conditional: bool = option(True, help="condition on the class label (classifier-free guidance)")
    label_dropout: float = option(0.1, min=0.0, max=1.0, help="probability of dropping the label while training")
    base_channels: int = option(64, min=8, help="unet: channels at full resolution")
    channel_mults: list[int] = option([1, 2, 2], help="unet: channel multiplier per resolution level")
    num_res_blocks: int = option(2, min=1, max=8, help="unet: residual blocks per level")
    attention_resolutions: list[int] = option([7], help="unet: feature-map sides that get self-attention")
    dropout: float = option(0.0, min=0.0, max=0.9, help="unet: dropout inside residual blocks")

    def validate(self) -> None:
        if self.bottleneck_shots is not None and self.gate != "quantum":
            raise ConfigError(f"model.bottleneck_shots needs model.gate=quantum, got gate={self.gate!r}")


@dataclass
class DiffusionConfig:
    schedule: str = option("cosine", choices=SCHEDULES,
                           help="linear, cosine (the paper) or tailored (cosine + importance-sampled t + min-SNR)")
    timesteps: int = option(1000, min=2, max=100000, help="T, the number of diffusion steps")
    timestep_sampler: str = option("auto", choices=("auto", "uniform", "importance"),
                                   help="auto: importance for tailored, else uniform")
    loss_weighting: str = option("auto", choices=("auto", "none", "min-snr"),
                                 help="auto: min-snr for tailored, else none")
    min_snr_gamma: float = option(5.0, min=1e-3, help="gamma of min-SNR weighting")
    importance_bins: int = option(20, min=1, help="time-step bins of the importance sampler")
    importance_history: int = option(10, min=1, help="losses remembered per bin")
    importance_uniform_mix: float = option(0.1, min=1e-3, max=1.0, help="uniform share of the importance sampler")
    noise: str = option("gaussian", choices=SOURCES, help="noise of the forward process (training)")
    sample_noise: str | None = option(None, choices=SOURCES, help="noise of the sampler (default: same as noise)")
    noise_qubits: int = option(16, min=1, max=20, help="qubits of the noise circuit (bits per shot)")
    quantum_transform: str = option("box-muller", choices=TRANSFORMS, help="bits -> normal: box-muller or clt")
    hybrid_weight: float = option(0.5, min=0.0, max=1.0, help="hybrid: z = sqrt(a) gaussian + sqrt(1-a) quantum")
    sampler: str = option("ddim", choices=SAMPLERS, help="default sampler for grids and `qmedgen sample`")
    sample_steps: int = option(50, min=1, help="default sampling steps (ddpm: use timesteps for the full chain)")
    eta: float = option(0.0, min=0.0, help="DDIM eta (0 = deterministic)")
    guidance: float = option(1.0, min=0.0, help="classifier-free guidance scale (1 = plain conditional)")

    def validate(self) -> None:
        if self.sample_steps > self.timesteps:
            raise ConfigError(
                f"diffusion.sample_steps ({self.sample_steps}) cannot exceed diffusion.timesteps ({self.timesteps})"
            )


@dataclass
class OptimConfig:
    lr: float = option(3e-4, min=0.0, help="Adam learning rate")
    beta1: float = option(0.9, min=0.0, max=1.0)
    beta2: float = option(0.999, min=0.0, max=1.0)
    weight_decay: float = option(0.0, min=0.0)
    grad_clip: float | None = option(1.0, min=0.0, help="gradient-norm clip (None = off)")
    ema_decay: float = option(0.999, min=0.0, max=1.0, help="EMA decay of the sampling weights")


@dataclass
class QDiffusionTrainConfig(TrainConfig):
    batch_size: int = option(64, min=1, help="global batch size (the paper: 64)")


@dataclass
class Config:
    data: DataConfig = option(default_factory=DataConfig)
    train: QDiffusionTrainConfig = option(default_factory=QDiffusionTrainConfig)
    model: ModelConfig = option(default_factory=ModelConfig)
    diffusion: DiffusionConfig = option(default_factory=DiffusionConfig)
    optim: OptimConfig = option(default_factory=OptimConfig)


def build_model(cfg: ModelConfig, spec: loop.DataSpec) -> torch.nn.Module:
    """The configured U-Net for ``spec``'s channels, size and classes."""
    n_classes = spec.n_classes if cfg.class_conditional else 0
    gate = GateSpec(
        kind=cfg.gate, n_qubits=cfg.n_qubits, depth=cfg.depth, activation=cfg.gate_activation,
        residual=cfg.gate_residual, shots=cfg.bottleneck_shots,
    )
    if cfg.arch == "light":
        return LightUNet(in_channels=spec.channels, image_size=spec.size, n_classes=n_classes, gate=gate)
    return UNet(
        in_channels=spec.channels, image_size=spec.size, n_classes=n_classes, base_channels=cfg.base_channels,
        channel_mults=tuple(cfg.channel_mults), num_res_blocks=cfg.num_res_blocks,
        attention_resolutions=tuple(cfg.attention_resolutions), dropout=cfg.dropout, gate=gate,
    )


SAMPLE_OPTIONS = ("sampler", "steps", "eta", "guidance", "noise", "use_ema", "bottleneck_shots", "progress")


class Trainer(loop.Trainer):
    """Builds the U-Net, its EMA copy, the schedule, time-step sampler and noise source; one step = one update."""

    family = "qdiffusion"

    def __init__(self, config: Config, spec: loop.DataSpec, device: torch.device, dist=None, data=None) -> None:
        super().__init__(config, spec, device, dist, data)
        d, o = config.diffusion, config.optim
        self.model = build_model(config.model, spec).to(device)
        self.ema = ema_copy(self.model)
        self.null_label = self.model.n_classes
        self.opt = loop.adam(self.model.parameters(), lr=o.lr, betas=(o.beta1, o.beta2), weight_decay=o.weight_decay)
        self.schedule = make_schedule(d.schedule, d.timesteps)
        sampler_name, self.weighting = training_policy(d.schedule, d.timestep_sampler, d.loss_weighting)
        self.timesteps = make_timestep_sampler(
            sampler_name, d.timesteps, min(d.importance_bins, d.timesteps), d.importance_history,
            d.importance_uniform_mix,
        )
        self.noise = self._make_noise(d.noise, seed=config.train.seed)

    def _make_noise(self, name: str, seed: int | None):
        d = self.config.diffusion
        return make_noise(name, d.noise_qubits, d.quantum_transform, d.hybrid_weight, seed=seed)

    # --- the loop's interface -------------------------------------------------------------------------------
    def modules(self) -> dict[str, torch.nn.Module]:
        return {"model": self.model, "ema": self.ema}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": self.opt}

    def _train_noise(self, b: int, shape: tuple[int, ...]) -> torch.Tensor:
        """Per-example noise for this rank's ``b`` examples (a slice of the global batch's noise)."""
        if self.noise.name == "gaussian":
            return self.local_randn(b, *shape)
        q = self.noise((self._global(b), *shape), self.device)[self._slice(b)]
        if self.noise.name == "quantum":
            return q
        a = self.noise.weight
        return math.sqrt(a) * self.local_randn(b, *shape) + math.sqrt(1 - a) * q

    def train_step(self, step: int) -> dict[str, float]:
        if self.data is None:
            raise RuntimeError("this trainer was built without training data (sampling only)")
        x0, y = self.data.next_batch(self.config.train.batch_size)
        b = x0.shape[0]
        t, w_is = self.timesteps.sample(self._global(b), self.device)
        t, w_is = t[self._slice(b)], w_is[self._slice(b)]
        eps = self._train_noise(b, tuple(x0.shape[1:]))
        x_t = self.schedule.q_sample(x0, t, eps)
        labels = None
        if self.model.n_classes:
            drop = self.local_rand(b) < self.config.model.label_dropout
            labels = torch.where(drop, torch.full_like(y, self.null_label), y)
        self.model.train()
        with self.autocast():
            pred = self.model(x_t, t, labels)
        mse = (pred.float() - eps).pow(2).mean(dim=(1, 2, 3))
        w = loss_weights(self.weighting, self.schedule, t, self.config.diffusion.min_snr_gamma)
        loss = (w * w_is * mse).mean()
        self.optimize(loss, self.opt, clip=self.config.optim.grad_clip)
        ema_update(self.ema, self.model, self.config.optim.ema_decay, step)
        per_example = (w * mse).detach()
        self.timesteps.update(self.dist.all_gather_tensor(t), self.dist.all_gather_tensor(per_example))
        return {"loss": float(loss.detach()), "mse": float(mse.detach().mean())}

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, generator: torch.Generator | None = None, **opts: Any) -> torch.Tensor:
        """Images in [-1, 1] for class ids ``labels``. Options: sampler (ddpm|ddim), steps, eta, guidance,
        noise (gaussian|quantum|hybrid), use_ema (default True), bottleneck_shots, progress."""
        unknown = sorted(set(opts) - set(SAMPLE_OPTIONS))
        if unknown:
            raise ConfigError(f"unknown sampling option(s) {unknown} for qdiffusion; valid: {list(SAMPLE_OPTIONS)}")
        d = self.config.diffusion
        net = self.ema if opts.get("use_ema", True) else self.model
        sampler = opts.get("sampler") or d.sampler
        steps = opts.get("steps") or (d.sample_steps if sampler == d.sampler else None)
        eta = d.eta if opts.get("eta") is None else float(opts["eta"])
        guidance = d.guidance if opts.get("guidance") is None else float(opts["guidance"])
        noise_name = opts.get("noise") or d.sample_noise or d.noise
        seed = int(torch.randint(2**62, (1,), generator=generator, device=generator.device)) if generator else None
        noise = self._make_noise(noise_name, seed)
        y = labels.to(self.device).long() if self.model.n_classes else None
        shots_before = net.bottleneck_shots
        if "bottleneck_shots" in opts:
            net.bottleneck_shots = opts["bottleneck_shots"]
        was_training = net.training
        net.eval()
        try:
            return diffusion_sample(
                net, self.schedule, (len(labels), self.spec.channels, self.spec.size, self.spec.size),
                sampler=sampler, steps=steps, eta=eta, labels=y, guidance=guidance,
                null_label=self.null_label, noise=noise, device=self.device, generator=generator,
                progress=bool(opts.get("progress", False)),
            )
        finally:
            net.bottleneck_shots = shots_before
            net.train(was_training)

    def extra_state(self) -> dict[str, Any]:
        return {"timesteps": self.timesteps.state_dict(), "noise": self.noise.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.timesteps.load_state_dict(state.get("timesteps", {}))
        self.noise.load_state_dict(state.get("noise", {}))
