"""MediQ-GAN generator: a dual-stream (classical + variational-quantum-circuit) conditional image generator.

Data flow (Jiao et al., arXiv 2506.21015; the shapes below are for 64 px)::

    z [B, latent_dim] ++ LayerNorm(embed(y)) -> encoder -> F [B, 32, 8, 8]
         ("broadcast": the vector copied over the 8x8 grid, 1x1 conv -> 128, 3x3 -> 128, 3x3 -> 32, GELU;
          "linear": a linear layer to 32x8x8, 3x3 -> 64, 3x3 -> 32, GELU -- the code's "cnn" and "fc" encoders)
    F -> 1x1 conv -> classical stream [B, 32-q, 8, 8] -> 3x3 conv + LeakyReLU
    F -> 1x1 conv -> quantum stream   [B, q, 8, 8]    (q = round(32 * split_ratio))
         -> avg-pool to 4x4 = 16 sites -> shared linear per site -> angles [B, 16, n_qubits]
         -> K sub-generators; sub-generator k reads site round(linspace(0, 15, K))[k] and runs its own VQC
            (RY(x_i) RX(x_i) encoding, `depth` layers of [RY(theta) on every qubit, CZ chain], <X_i>)
            -- all K circuits are ONE batched call of ``quantum_layer`` (weights [K, depth, 1, n] against [B, K, n])
         -> readout "mean" (paper: one scalar per sub-generator) or "all" (the n expectations as n channels)
         -> placed back on the 4x4 grid: sub-generator k writes its R values (R = 1 or n) into its own channels
            at its site, zeros elsewhere ([B, K*R, 4, 4]) -> 1x1 conv -> 16 channels -> bilinear x2 to 8x8
            (``quantum_map="sites"``, the paper's; ``"linear"``: one linear layer from the K*R readouts to the
            16 x 8 x 8 map, so no position is fixed at zero)
    concat -> fused [B, 32-q+16, 8, 8] -> decoder -> tanh -> image [B, C, S, S]
         ("style2": per stage [nearest x2, 3x3 conv, LReLU, 3x3 conv, LReLU] + 1x1-conv shortcut, then learned
          noise injection and LReLU; widths 128/96/64; then 3x3 conv -> 32, LReLU, 1x1 conv -> C;
          ``decoder_upsample="bilinear"`` replaces the nearest x2 by bilinear x2.
          "vanilla": linear to 64x8x8, transposed convs 64 -> 32 -> 16 -> C.)

Sizes other than 64: 32 and 128 px use the same 8x8 fusion map with 2 and 4 decoder stages; 28 px uses a 7x7 map
(the 4x4 sites are then adaptive-average-pooled, overlapping windows) and 2 stages.

**Spatial layout and artefacts** (measured on BloodMNIST, 10 images per class, 28 px, 1500 steps; the
comparison is in ``docs/guide.md``). With ``encoder="broadcast"`` (the paper's) every position of the grid holds the
same vector and the 1x1 and 3x3 convolutions are translation-equivariant, so the map differs between positions only
through the zero padding of the 3x3 convolutions: the layout a sample can have is a function of the distance to the
border. Samples show square cells inside square frames and concentric-square texture (RetinaMNIST: orange squares
instead of discs). ``encoder="linear"`` gives every position its own weights: round cells, no frames. Prefer it
off the paper's presets (``mediqgan-fewshot`` uses it).

**Readout and rank.** With ``readout="mean"`` (the paper's), each sub-generator contributes ONE number, so the
quantum stream's Jacobian with respect to z has rank <= K whatever ``n_qubits`` is; ``readout="all"`` keeps all
``n_qubits`` expectations (rank <= K * n_qubits). The default stays the paper's mean; the choice is recorded in
the resolved config of every run.

**Prototype-guided skip connections** (claimed by the paper, absent from its public code; ``skip_connections``).
Design: the class code (the latent mean ``mu_c = MLP(p_c)`` of the class prototype, or the label embedding when
prototypes are off) is mapped by one linear layer to a small class layout map ``P_c [skip_channels, 4, 4]``. For
every decoder stage s (16, 32, 64 px at 64 px output; also the pre-tanh output of the vanilla decoder), P_c is
upsampled bilinearly to the stage's resolution, projected by a 1x1 conv to the stage's channels and added with a
learnable scalar scale ``alpha_s`` initialised to ``skip_init_scale`` (0.05). Reasons: (1) the class identity
reaches the high-resolution layers directly instead of only through the 8x8 bottleneck (where the quantum stream
has rank <= K), which is what "skip" connections guided by prototypes must do for few-shot classes with a
distinctive global layout (optic disc position, lesion colour); (2) a 4x4 code keeps it low-frequency and cheap
(~latent_dim*256 + 16*sum(C_s) parameters) so it biases layout and colour rather than memorising textures;
(3) a small initial scale leaves the model at initialisation close to the skip-free one, so the ablation flag
compares like with like and early training is not dominated by the skip path; (4) the per-stage scale is a
readable diagnostic of how much the trained model uses the prototypes.

**Counterparts.** ``n_subgenerators=0`` removes the quantum stream (the whole 32-channel map is classical; the
authors' ODIR-5k run). ``quantum_stream="matched-mlp"`` replaces every circuit with a classical MLP with the same
inputs ([B, K, n] angles) and outputs ([B, K, n] values in [-1, 1]) and, per sub-generator, the same number of
parameters as the circuit (``depth * n_qubits``): ``tanh(W2 tanh(W1 x + b1))`` with ``W1 [h, n]``, ``b1 [h]``,
``W2 [n, h]``, i.e. ``h (2n + 1)`` parameters, where ``h = max(1, round(depth * n / (2n + 1)))`` -- equal within
half a hidden unit (``n + 1/2`` parameters); :attr:`MediQGANGenerator.quantum_parameter_count` reports both.

**Interfaces** (used by the analysis and hardware tools):

- ``generator(z, y, noise=True) -> images [B, C, S, S]`` in [-1, 1];
- ``generator.sample_latent(y, generator=None) -> z``: ``mu_c + sigma_c * eps`` with prototypes, else
  ``N(0, I) * ub`` (authors' code), ``U(0, ub)`` (MosaiQ) or ``N(0, I)``, with ``ub`` the adaptive noise bound
  (buffer ``noise_bound``, set by the trainer);
- ``generator.streams(z, y) -> {"classical", "quantum", "fused"}`` feature maps at the fusion resolution;
- ``generator.circuit_inputs(z, y) -> angles [B, K, n]`` (what the circuits read);
- ``generator.circuit_map(angles [B, K, n]) -> [B, K, n]`` expectations through ``generator.quantum_layer``;
- ``generator.quantum_layer``: the :class:`qmedgen.quantum.QuantumLayer` holding all K circuits (``None`` when
  K = 0 or for the matched MLP). Swap its executor for noisy or hardware inference; nothing here bypasses it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from qmedgen.config import option
from qmedgen.data.catalog import GENERATED_SIZES
from qmedgen.errors import ConfigError
from qmedgen.models.mediqgan_quantum import MatchedMLP, make_quantum_layer, subgenerator_sites
from qmedgen.models.prototypes import PrototypeBank

# resolution of the fused map per image size (GENERATED_SIZES), and the default decoder widths per number of
# upsampling stages
_BASE = {28: 7, 32: 8, 64: 8, 128: 8}
_DEFAULT_WIDTHS = {2: (128, 64), 3: (128, 96, 64), 4: (128, 96, 64, 32)}
# the optimiser group of each top-level submodule (see MediQGANGenerator.param_groups), in the groups' order
PARAM_GROUPS: dict[str, tuple[str, ...]] = {
    "encoder": ("label_embed", "label_norm", "encoder_fc", "encoder", "to_classical", "classical_conv",
                "to_quantum", "align"),
    "quantum": ("quantum_layer",),
    "matched_mlp": ("matched_mlp",),
    "prototypes": ("prototypes",),
    "decoder": ("quantum_proj", "decoder", "skips"),
}


@dataclass
class PrototypeConfig:
    enabled: bool = option(True, help="class prototypes set each class's latent Gaussian (paper)")
    init: str = option(
        "extractor",
        choices=("extractor", "file", "random"),
        help="warm start: class-mean features of `extractor`, a saved prototype `file`, or random (explicit only)",
    )
    extractor: str = option(
        "inception", help="'inception' (metrics stack, 2048-d), 'domain:<dataset>' (256-d) or a TorchScript file"
    )
    file: str | None = option(None, help="prototype file (.safetensors) from `qmedgen prototypes`")
    dim: int = option(2048, min=1, help="prototype dimension; must equal the extractor's / file's (inception: 2048)")
    hidden: int = option(512, min=1, help="hidden width of the prototype -> latent-mean MLP")
    sigma_min: float = option(0.2, min=1e-4, help="lower clamp of the per-class latent sigma")
    sigma_max: float = option(0.8, min=1e-4, help="upper clamp of the per-class latent sigma")
    sigma_init: float = option(math.log(2.0), min=1e-4, help="initial per-class sigma (softplus(0), as the code)")
    reg_weight: float = option(5e-3, min=0.0, help="weight of the prototype separation regulariser")
    reg_margin: float = option(1.0, min=0.0, max=2.0, help="margin on distances of L2-normalised prototypes")
    max_images_per_class: int | None = option(
        None, min=1, help="cap on images per class when computing warm-start features (default: all)"
    )

    def validate(self) -> None:
        if self.sigma_min > self.sigma_max:
            raise ConfigError(
                f"model.prototypes.sigma_min ({self.sigma_min}) must be <= sigma_max ({self.sigma_max})"
            )
        if not self.sigma_min <= self.sigma_init <= self.sigma_max:
            raise ConfigError(
                f"model.prototypes.sigma_init ({self.sigma_init}) must lie in [sigma_min, sigma_max] = "
                f"[{self.sigma_min}, {self.sigma_max}]"
            )
        if self.enabled and self.init == "file" and not self.file:
            raise ConfigError("model.prototypes.init=file needs model.prototypes.file=PATH.safetensors")


@dataclass
class ModelConfig:
    latent_dim: int = option(128, min=1, help="latent size")
    label_dim: int | None = option(None, min=1, help="label-embedding size (default: 32 with prototypes, else 128)")
    encoder: str = option(
        "broadcast",
        choices=("broadcast", "linear"),
        help="broadcast [z, e(y)] over the grid then convs (paper), or a linear layer to the map",
    )
    encoder_channels: int = option(128, min=1, help="hidden width of the broadcast encoder (code: 128)")
    feature_channels: int = option(32, min=2, help="channels of the encoder map F (paper: 32)")
    split_ratio: float = option(0.25, min=0.0, max=1.0, help="fraction of F's channels in the quantum stream")
    n_subgenerators: int = option(3, min=0, max=16, help="K circuits, one per selected 4x4 site (0: classical)")
    n_qubits: int = option(16, min=1, max=20, help="qubits per circuit (= angles per site)")
    depth: int = option(6, min=1, help="variational layers per circuit")
    readout: str = option("mean", choices=("mean", "all"), help="mean of <X_i> (paper; rank <= K) or all n values")
    quantum_stream: str = option(
        "vqc", choices=("vqc", "matched-mlp"), help="VQCs, or the parameter-matched classical MLP counterpart"
    )
    circuit_init: str = option(
        "uniform", choices=("uniform", "uniform-2pi", "normal", "small"),
        help="circuit weight init: U[0, 1) (authors' code), U[0, 2pi), N(0, std^2) (std 0.1), small N (std 0.01)",
    )
    circuit_init_std: float | None = option(None, min=0.0, help="std of the normal/small circuit inits")
    quantum_channels: int = option(16, min=1, help="channels of the projected quantum map (paper: 16)")
    quantum_map: str = option(
        "sites", choices=("sites", "linear"),
        help="readouts -> quantum map: each at its own 4x4 site, zeros elsewhere, 1x1 conv, bilinear x2 (paper), "
        "or one linear layer to the whole map at the fusion resolution",
    )
    latent_noise: str = option(
        "bounded-normal",
        choices=("bounded-normal", "bounded-uniform", "normal"),
        help="latent without prototypes: N(0, I) * ub (authors' code), U(0, ub) (MosaiQ), or N(0, I); "
        "ub = the adaptive noise bound",
    )
    weight_init: str = option(
        "reference", choices=("reference", "pytorch"),
        help="generator init as the authors' code (Kaiming convs, orthogonal linears) or PyTorch defaults",
    )
    decoder: str = option("style2", choices=("style2", "vanilla"), help="decoder architecture")
    decoder_upsample: str = option(
        "nearest", choices=("nearest", "bilinear"),
        help="style2 upsampling: nearest x2 (authors' code) or bilinear x2 (smoother, no 2x2 blocks)",
    )
    decoder_channels: list[int] = option(
        [], help="widths of the upsampling stages (default by size: 28/32 [128,64], 64 [128,96,64], 128 +32)"
    )
    skip_connections: bool = option(True, help="prototype-guided skip connections into the decoder")
    skip_channels: int = option(16, min=1, help="channels of the 4x4 class layout map of the skip paths")
    skip_init_scale: float = option(0.05, help="initial value of each skip path's learnable scale")
    critic: str = option("wgan-gp", choices=("wgan-gp", "bce"), help="critic loss family")
    critic_channels: list[int] = option([64, 128, 256, 512], help="widths of the critic's stride-2 convs")
    critic_embed_dim: int = option(128, min=1, help="class-projection embedding size of the critic")
    prototypes: PrototypeConfig = field(default_factory=PrototypeConfig)

    def validate(self) -> None:
        if self.n_subgenerators > 0:
            q = self.quantum_split
            if not 0 < q < self.feature_channels:
                raise ConfigError(
                    f"model.split_ratio={self.split_ratio} gives {q} of {self.feature_channels} channels to the "
                    "quantum stream; with n_subgenerators > 0 both streams need at least one channel "
                    "(or set n_subgenerators=0 for a classical model)"
                )
        if any(c < 1 for c in self.decoder_channels):
            raise ConfigError(f"model.decoder_channels must be positive, got {self.decoder_channels}")
        if not self.critic_channels or any(c < 1 for c in self.critic_channels):
            raise ConfigError(f"model.critic_channels must be a non-empty list of positive ints, got "
                              f"{self.critic_channels}")

    @property
    def quantum_split(self) -> int:
        return 0 if self.n_subgenerators == 0 else round(self.feature_channels * self.split_ratio)

    def resolved_label_dim(self) -> int:
        if self.label_dim is not None:
            return self.label_dim
        return 32 if self.prototypes.enabled else 128


def decoder_widths(cfg: ModelConfig, image_size: int) -> tuple[int, ...]:
    n_up = round(math.log2(image_size // _BASE[image_size]))
    if cfg.decoder_channels:
        if len(cfg.decoder_channels) != n_up:
            raise ConfigError(
                f"model.decoder_channels has {len(cfg.decoder_channels)} entries; {image_size} px needs {n_up} "
                f"upsampling stages ({_BASE[image_size]} -> {image_size})"
            )
        return tuple(cfg.decoder_channels)
    return _DEFAULT_WIDTHS[n_up]


# ---------------------------------------------------------------------------------------------------------------
# building blocks


class NoiseInjection(nn.Module):
    """``x + w_c * n`` with per-pixel Gaussian noise n shared over channels and learned per-channel w (init 0)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor, noise: bool = True) -> torch.Tensor:
        if not noise:
            return x
        n = torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype)
        # one fused pass in x's dtype and memory layout (x + w * n materialised a full-size NCHW product and then
        # added it to the channels-last map: ~10x slower at 64 px); a float32 w would promote a bf16 map
        return torch.addcmul(x, self.weight.to(x.dtype), n)


def upsample_conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``conv3x3(nearest_upsample_x2(x), padding=1)`` computed at the low resolution: 2.25x fewer MACs, same result.

    Why it is exact: each output pixel (2i+a, 2j+b) sees the upsampled 3x3 neighbourhood, which covers only 2x2
    low-resolution pixels (rows i-1, i for a = 0 and i, i+1 for a = 1; the same for columns), so the 3x3 kernel
    folds into four 2x2 kernels, one per output phase: one conv with 4x the output channels, then interleaving.
    """
    w = weight
    rows = (torch.stack([w[:, :, 0], w[:, :, 1] + w[:, :, 2]], 2),  # phase a = 0: low rows i-1, i
            torch.stack([w[:, :, 0] + w[:, :, 1], w[:, :, 2]], 2))  # phase a = 1: low rows i, i+1
    kernels = []
    for r in rows:  # phase a, then b: [O, I, 2, 3] -> [O, I, 2, 2]
        kernels.append(torch.stack([r[..., 0], r[..., 1] + r[..., 2]], -1))
        kernels.append(torch.stack([r[..., 0] + r[..., 1], r[..., 2]], -1))
    o, (n, _, h, wd) = w.shape[0], x.shape
    y = F.conv2d(x, torch.cat(kernels), None if bias is None else bias.repeat(4), padding=1)
    y = y.view(n, 2, 2, o, h + 1, wd + 1)  # out row p reads low rows p-1, p: phase a takes rows a .. a+h-1
    # interleave the phases in one pass, into x's memory format (a channels-last conv after an NCHW map would
    # first copy it: measured 30 ms per 30 x 64 x 64 x 64 map on the project's CPU)
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        base = y.new_empty(n, h, 2, wd, 2, o)
        out, image = base.permute(0, 5, 1, 2, 3, 4), base.view(n, 2 * h, 2 * wd, o).permute(0, 3, 1, 2)
    else:
        base = out = y.new_empty(n, o, h, 2, wd, 2)  # [n, o, h, 2(a), w, 2(b)] = [n, o, 2h, 2w]
        image = base.view(n, o, 2 * h, 2 * wd)
    for a in (0, 1):
        for b in (0, 1):
            out[:, :, :, a, :, b] = y[:, a, b, :, a : a + h, b : b + wd]
    return image


class UpBlock(nn.Module):
    """Nearest x2 upsampling residual block: [3x3 conv, LReLU] x 2 plus a 1x1-conv shortcut (the code's SimpleUp).

    The upsampling is folded into the first conv (:func:`upsample_conv3x3`) and moved after the 1x1 shortcut
    (a pointwise conv commutes with nearest upsampling): the same function with 30-36 % fewer MACs per block.
    """

    def __init__(self, c_in: int, c_out: int, upsample: str = "nearest") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1)
        self.upsample = upsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample == "nearest":
            h = upsample_conv3x3(x, self.conv1.weight, self.conv1.bias)
        else:  # bilinear x2 then the 3x3 conv (no folding: bilinear is not piecewise constant)
            h = self.conv1(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))
        h = F.leaky_relu(self.conv2(F.leaky_relu(h, 0.2)), 0.2)
        # the 1x1 shortcut commutes with both upsamplings (linear per channel, weights summing to 1)
        return h + F.interpolate(self.shortcut(x), scale_factor=2, mode=self.upsample,
                                 **({} if self.upsample == "nearest" else {"align_corners": False}))


class Style2Decoder(nn.Module):
    """Up blocks (128/96/64 at 64 px), each followed by noise injection and LReLU; 3x3 -> 32, LReLU, 1x1 -> C."""

    def __init__(self, c_in: int, widths: tuple[int, ...], channels: int, head: int = 32,
                 upsample: str = "nearest") -> None:
        super().__init__()
        self.blocks = nn.ModuleList()
        self.noise = nn.ModuleList()
        for w in widths:
            self.blocks.append(UpBlock(c_in, w, upsample))
            self.noise.append(NoiseInjection(w))
            c_in = w
        self.head = nn.Conv2d(c_in, head, 3, padding=1)
        self.to_image = nn.Conv2d(head, channels, 1)
        self.stage_channels = tuple(widths)

    def forward(self, x: torch.Tensor, inject, noise: bool = True) -> torch.Tensor:
        for i, (block, inj) in enumerate(zip(self.blocks, self.noise)):
            x = inject(i, F.leaky_relu(inj(block(x), noise), 0.2))
        return self.to_image(F.leaky_relu(self.head(x), 0.2))


class VanillaDecoder(nn.Module):
    """Linear to 64 x r x r, then stride-2 transposed convs 64 -> 32 -> 16 -> image channels (ReLU between)."""

    def __init__(self, c_in: int, base: int, n_up: int, channels: int, width: int = 64) -> None:
        super().__init__()
        self.base, self.width = base, width
        self.fc = nn.Linear(c_in * base * base, width * base * base)
        outs = [max(width // 2 ** (i + 1), 8) for i in range(n_up - 1)] + [channels]
        self.convs = nn.ModuleList()
        c = width
        for o in outs:
            self.convs.append(nn.ConvTranspose2d(c, o, 4, stride=2, padding=1))
            c = o
        self.stage_channels = tuple(outs)

    def forward(self, x: torch.Tensor, inject, noise: bool = True) -> torch.Tensor:
        h = F.relu(self.fc(x.flatten(1))).view(x.shape[0], self.width, self.base, self.base)
        last = len(self.convs) - 1
        for i, conv in enumerate(self.convs):
            h = inject(i, conv(h))
            if i < last:
                h = F.relu(h)
        return h


def reference_init(module: nn.Module) -> None:
    """The authors' generator initialisation: Kaiming-normal convs (leaky ReLU), orthogonal linears with the leaky
    ReLU gain and bias 0.02, N(0, 0.02) embeddings, unit/zero norms."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="leaky_relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.orthogonal_(m.weight, gain=nn.init.calculate_gain("leaky_relu", 0.2))
            if m.bias is not None:
                nn.init.constant_(m.bias, 0.02)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, 0.02)


class PrototypeSkips(nn.Module):
    """Class code -> 4x4 layout map -> per-stage 1x1 projections, added with learnable scales (init 0.05)."""

    def __init__(self, code_dim: int, stage_channels: tuple[int, ...], map_channels: int, init_scale: float) -> None:
        super().__init__()
        self.map_channels = map_channels
        self.to_map = nn.Linear(code_dim, map_channels * 16)
        self.proj = nn.ModuleList(nn.Conv2d(map_channels, c, 1) for c in stage_channels)
        self.scales = nn.Parameter(torch.full((len(stage_channels),), float(init_scale)))

    def maps(self, code: torch.Tensor) -> torch.Tensor:
        return self.to_map(code).view(code.shape[0], self.map_channels, 4, 4)

    def inject(self, layout: torch.Tensor, stage: int, h: torch.Tensor) -> torch.Tensor:
        # the 1x1 projection commutes with bilinear upsampling (per-pixel linear map; interpolation weights sum to
        # 1, so the bias passes through): projecting at 4x4 and then upsampling is the same function without a
        # full-resolution 16 -> C conv (~25 % of a stage's injection cost at 64 px)
        m = self.proj[stage](layout).to(h.dtype)
        if h.is_contiguous(memory_format=torch.channels_last) and not h.is_contiguous():
            m = m.contiguous(memory_format=torch.channels_last)  # the add then runs in h's layout
        m = F.interpolate(m, size=h.shape[-2:], mode="bilinear", align_corners=False)
        return torch.addcmul(h, self.scales[stage].to(h.dtype), m)  # one pass


# ---------------------------------------------------------------------------------------------------------------
# the generator


class MediQGANGenerator(nn.Module):
    """Dual-stream MediQ-GAN generator (see the module docstring for the architecture and interfaces)."""

    def __init__(
        self,
        cfg: ModelConfig,
        n_classes: int,
        image_size: int = 64,
        channels: int = 3,
        prototype_init: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if image_size not in GENERATED_SIZES:
            raise ConfigError(f"MediQ-GAN image size must be one of {GENERATED_SIZES}, got {image_size}")
        if channels not in (1, 3):
            raise ConfigError(f"MediQ-GAN images have 1 or 3 channels, got {channels}")
        if n_classes < 1:
            raise ConfigError(f"MediQ-GAN needs at least one class, got n_classes={n_classes}")
        cfg.validate()
        self.cfg, self.n_classes, self.image_size, self.channels = cfg, n_classes, image_size, channels
        self.base = _BASE[image_size]
        pc = cfg.prototypes

        # latent and label
        label_dim = cfg.resolved_label_dim()
        self.label_embed = nn.Embedding(n_classes, label_dim)
        self.label_norm = nn.LayerNorm(label_dim)
        self.prototypes: PrototypeBank | None = None
        if pc.enabled:
            dim = prototype_init.shape[1] if prototype_init is not None else pc.dim
            self.prototypes = PrototypeBank(
                n_classes, dim, cfg.latent_dim, hidden=pc.hidden, sigma_min=pc.sigma_min,
                sigma_max=pc.sigma_max, sigma_init=pc.sigma_init, init=prototype_init,
            )
        # MosaiQ adaptive noise bound (used only without prototypes and a bounded latent_noise)
        self.register_buffer("noise_bound", torch.tensor(math.pi / 8))

        # encoder to F [B, Cf, r, r]
        cf, r, ch = cfg.feature_channels, self.base, cfg.encoder_channels
        in_dim = cfg.latent_dim + label_dim
        if cfg.encoder == "broadcast":
            self.encoder = nn.Sequential(
                nn.Conv2d(in_dim, ch, 1), nn.GELU(), nn.Conv2d(ch, ch, 3, padding=1), nn.GELU(),
                nn.Conv2d(ch, cf, 3, padding=1), nn.GELU(),
            )
        else:
            self.encoder_fc = nn.Linear(in_dim, cf * r * r)
            self.encoder = nn.Sequential(
                nn.Conv2d(cf, 2 * cf, 3, padding=1), nn.GELU(), nn.Conv2d(2 * cf, cf, 3, padding=1), nn.GELU(),
            )

        # split
        q = cfg.quantum_split
        self.K = cfg.n_subgenerators
        self.to_classical = nn.Conv2d(cf, cf - q, 1)
        self.classical_conv = nn.Conv2d(cf - q, cf - q, 3, padding=1)
        self.quantum_layer: nn.Module | None = None
        self.matched_mlp: MatchedMLP | None = None
        fused = cf - q
        if self.K > 0:
            n = cfg.n_qubits
            self.to_quantum = nn.Conv2d(cf, q, 1)
            self.align = nn.Linear(q, n)  # per-site angles (shared over sites)
            self.register_buffer("sites", subgenerator_sites(self.K), persistent=False)
            if cfg.quantum_stream == "vqc":
                self.quantum_layer = make_quantum_layer(
                    self.K, n, cfg.depth, init=cfg.circuit_init, std=cfg.circuit_init_std
                )
            else:
                self.matched_mlp = MatchedMLP(self.K, n, target_params=cfg.depth * n)
            self.readout_width = 1 if cfg.readout == "mean" else n
            if cfg.quantum_map == "sites":
                self.quantum_proj: nn.Module = nn.Conv2d(self.K * self.readout_width, cfg.quantum_channels, 1)
            else:
                self.quantum_proj = nn.Linear(self.K * self.readout_width, cfg.quantum_channels * r * r)
            fused += cfg.quantum_channels

        # decoder
        widths = decoder_widths(cfg, image_size)
        n_up = len(widths)
        if cfg.decoder == "style2":
            self.decoder: nn.Module = Style2Decoder(fused, widths, channels, upsample=cfg.decoder_upsample)
        else:
            self.decoder = VanillaDecoder(fused, self.base, n_up, channels)
        self.skips: PrototypeSkips | None = None
        if cfg.skip_connections:
            code_dim = cfg.latent_dim if self.prototypes is not None else label_dim
            self.skips = PrototypeSkips(code_dim, self.decoder.stage_channels, cfg.skip_channels, cfg.skip_init_scale)
        if cfg.weight_init == "reference":
            for name, child in self.named_children():
                if name not in {"prototypes", "quantum_layer", "matched_mlp"}:
                    reference_init(child)
            if self.skips is not None:
                with torch.no_grad():
                    self.skips.scales.fill_(cfg.skip_init_scale)

    # ---- parameter bookkeeping -------------------------------------------------------------------------------

    @property
    def quantum_parameter_count(self) -> dict[str, int]:
        """Trainable parameters of the circuits (``depth * n * K``) and of the stream that replaces them."""
        target = self.K * self.cfg.depth * self.cfg.n_qubits if self.K else 0
        if self.quantum_layer is not None:
            actual = sum(p.numel() for p in self.quantum_layer.parameters())
        elif self.matched_mlp is not None:
            actual = sum(p.numel() for p in self.matched_mlp.parameters())
        else:
            actual = 0
        return {"circuit_equivalent": target, "actual": actual}

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by optimiser group: encoder, quantum (circuits), matched_mlp, prototypes, decoder.

        Routed by :data:`PARAM_GROUPS`; a submodule missing there is an error, so that a new one cannot silently
        train with another group's learning rate."""
        route = {head: group for group, heads in PARAM_GROUPS.items() for head in heads}
        groups: dict[str, list[nn.Parameter]] = {group: [] for group in PARAM_GROUPS}
        for name, p in self.named_parameters():
            head = name.split(".")[0]
            if head not in route:
                raise RuntimeError(f"MediQGANGenerator parameter {name!r}: no optimiser group routes submodule "
                                   f"{head!r}; add it to qmedgen.models.mediqgan.PARAM_GROUPS")
            groups[route[head]].append(p)
        return groups

    # ---- latent ---------------------------------------------------------------------------------------------

    def sample_latent(
        self, y: torch.Tensor, generator: torch.Generator | None = None, eps: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Latent codes for labels ``y`` (differentiable in the prototypes when they are on).

        ``eps`` supplies the raw noise (of :attr:`noise_kind`) instead of drawing it: data-parallel trainers draw
        it as their slice of a global batch.
        """
        shape = (y.shape[0], self.cfg.latent_dim)
        device, dtype = self.noise_bound.device, self.noise_bound.dtype
        if eps is None:
            draw = torch.rand if self.noise_kind == "uniform" else torch.randn
            eps = draw(shape, generator=generator, device=device, dtype=dtype)
        elif tuple(eps.shape) != shape:
            raise ValueError(f"eps must have shape {shape}, got {tuple(eps.shape)}")
        if self.prototypes is not None:
            return self.prototypes.mu(y) + self.prototypes.sigma(y).unsqueeze(-1) * eps
        return eps if self.cfg.latent_noise == "normal" else eps * self.noise_bound

    @property
    def noise_kind(self) -> str:
        """The raw noise ``eps`` of :meth:`sample_latent`: ``"uniform"`` (U[0, 1), ``bounded-uniform`` without
        prototypes) or ``"normal"`` (standard normal)."""
        return "uniform" if self.prototypes is None and self.cfg.latent_noise == "bounded-uniform" else "normal"

    @property
    def uses_noise_bound(self) -> bool:
        """True when latents are scaled by the adaptive noise bound (prototypes off, a bounded latent)."""
        return self.prototypes is None and self.cfg.latent_noise != "normal"

    def set_noise_bound(self, value: float) -> None:
        self.noise_bound.fill_(float(value))

    def class_code(self, y: torch.Tensor) -> torch.Tensor:
        """What guides the skip paths: the class latent mean ``mu_y`` (prototypes) or the label embedding."""
        if self.prototypes is not None:
            return self.prototypes.mu(y)
        return self.label_norm(self.label_embed(y))

    # ---- forward --------------------------------------------------------------------------------------------

    def _encode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if y.dim() != 1 or y.shape[0] != z.shape[0]:
            raise ValueError(f"labels must be [B] class ids matching z [B, latent], got {tuple(y.shape)}")
        v = torch.cat([z, self.label_norm(self.label_embed(y)).to(z.dtype)], dim=1)
        r = self.base
        if self.cfg.encoder == "broadcast":
            return self.encoder(v[:, :, None, None].expand(-1, -1, r, r))
        return self.encoder(self.encoder_fc(v).view(v.shape[0], -1, r, r))

    def _angles(self, f: torch.Tensor) -> torch.Tensor:
        qmap = self.to_quantum(f)
        sites = F.adaptive_avg_pool2d(qmap, 4).flatten(2).transpose(1, 2)  # [B, 16, q]
        return self.align(sites[:, self.sites])  # [B, K, n]

    def circuit_map(self, angles: torch.Tensor) -> torch.Tensor:
        """Angles ``[B, K, n]`` -> expectations ``[B, K, n]`` (circuits in float32, outside autocast)."""
        if self.K == 0:
            raise ValueError("this generator has no quantum stream (n_subgenerators=0)")
        with torch.autocast(device_type=angles.device.type, enabled=False):
            x = angles.float()
            if self.quantum_layer is not None:
                return self.quantum_layer(x)
            return self.matched_mlp(x)

    def _quantum_stream(self, f: torch.Tensor) -> torch.Tensor:
        b, k, w = f.shape[0], self.K, self.readout_width
        out = self.circuit_map(self._angles(f))  # [B, K, n]
        vals = out.mean(-1, keepdim=True) if w == 1 else out  # [B, K, R]
        if self.cfg.quantum_map == "linear":  # every readout can shape the whole map: no fixed zero pattern
            qmap = self.quantum_proj(vals.reshape(b, k * w).to(f.dtype))
            return qmap.view(b, -1, self.base, self.base)
        # sub-generator k writes its R values into channels k*R .. k*R+R-1 at its own site, zeros elsewhere
        onehot = F.one_hot(self.sites, 16).to(vals.dtype)  # [K, 16]
        grid = vals.unsqueeze(-1) * onehot[None, :, None, :]  # [B, K, R, 16]
        qmap = self.quantum_proj(grid.reshape(b, k * w, 4, 4).to(f.dtype))
        return F.interpolate(qmap, size=(self.base, self.base), mode="bilinear", align_corners=False)

    def streams(self, z: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Feature maps at the fusion resolution: ``classical``, ``quantum`` (empty channels if K=0), ``fused``."""
        f = self._encode(z, y)
        classical = F.leaky_relu(self.classical_conv(self.to_classical(f)), 0.2)
        if self.K > 0:
            quantum = self._quantum_stream(f)
            fused = torch.cat([classical, quantum], dim=1)
        else:
            quantum = classical.new_zeros(classical.shape[0], 0, *classical.shape[2:])
            fused = classical
        return {"classical": classical, "quantum": quantum, "fused": fused}

    def circuit_inputs(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The angles ``[B, K, n]`` the K circuits receive for latents ``z`` and labels ``y``."""
        if self.K == 0:
            raise ValueError("this generator has no quantum stream (n_subgenerators=0)")
        return self._angles(self._encode(z, y))

    def forward(self, z: torch.Tensor, y: torch.Tensor, noise: bool = True) -> torch.Tensor:
        """Images ``[B, C, S, S]`` in [-1, 1]; ``noise=False`` turns off the decoder's noise injection."""
        fused = self.streams(z, y)["fused"]
        if self.skips is not None:
            layout = self.skips.maps(self.class_code(y).to(fused.dtype))

            def inject(i: int, h: torch.Tensor) -> torch.Tensor:
                return self.skips.inject(layout, i, h)

        else:

            def inject(i: int, h: torch.Tensor) -> torch.Tensor:
                return h

        return torch.tanh(self.decoder(fused, inject, noise))

    @torch.no_grad()
    def generate(
        self, y: torch.Tensor, generator: torch.Generator | None = None, batch_size: int = 256
    ) -> torch.Tensor:
        """Images for labels ``y`` (fresh latents), in batches, without building a graph."""
        outs = []
        for start in range(0, y.shape[0], batch_size):
            yb = y[start : start + batch_size]
            outs.append(self(self.sample_latent(yb, generator=generator), yb))
        return torch.cat(outs) if outs else torch.empty(0, self.channels, self.image_size, self.image_size)
