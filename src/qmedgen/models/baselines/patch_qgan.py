"""The patch quantum GAN generator of Huang et al. (Phys. Rev. Applied 16, 024051, 2021), batched on the engine.

Each of K sub-generators is a circuit on ``n_qubits`` = n data + n_a ancilla qubits: the latent angles z (the same
z for every sub-generator of an image, drawn from U(0, pi/2)) are encoded by RY(z_i), then ``depth`` layers of
[RY(theta) on every qubit, CZ chain]. The circuit is measured *partially*: the probabilities of the 2**n data-qubit
basis states given that the ancillas read 0, ``p(j | a = 0) = p(a = 0, j) / p(a = 0)``, rescaled by their maximum so
that the patch lies in [0, 1] (the paper's non-linear post-processing), and mapped to [-1, 1]. Each sub-generator
gives one patch of 2**n consecutive pixels of the flattened ``[C, H, W]`` image (Huang et al. tile 8x8 digits by
rows in the same way); K = ceil(C * H * W / 2**n), and the surplus pixels of the last patch are dropped.

The ancillas are wires 0 .. n_a - 1 (the most significant bits), so "ancillas read 0" is the first 2**n entries of
the outcome distribution. All B x K circuits of a batch run in one engine call (weights ``[K, depth, 1, n]``
broadcast against inputs ``[B, 1, n]``), never in a per-sample loop.

Class conditioning (not in the paper, which trains one model per digit class):
``conditional="weights"`` gives every class its own circuit weights (exactly "one patch GAN per class", trained in
one run; the batch gathers each example's class weights), ``"angles"`` shares the circuits and adds learned
per-class offsets to the encoding angles.
"""

from __future__ import annotations

import torch
from torch import nn

from qmedgen.errors import ConfigError
from qmedgen.quantum import Ansatz, probabilities, simulate

CONDITIONING = ("weights", "angles")


def basis_probabilities(ansatz: Ansatz, inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Computational-basis outcome probabilities ``[..., 2**n]``, differentiable in inputs and weights.

    ``qmedgen.quantum.probabilities`` is forward-only (it serves sampling), so when gradients are needed the final
    state from :func:`qmedgen.quantum.simulate` (autograd) is squared instead; both are batched engine calls.
    """
    if ansatz.observable != "z":
        raise ConfigError(f"basis probabilities need a Z-basis readout, got observable {ansatz.observable!r}")
    if torch.is_grad_enabled() and (inputs.requires_grad or weights.requires_grad):
        state = simulate(ansatz, inputs, weights)
        return state.real.square() + state.imag.square()
    return probabilities(ansatz, inputs, weights)


def n_subgenerators(n_pixels: int, n_data_qubits: int) -> int:
    return -(-n_pixels // 2**n_data_qubits)


class SubGeneratorCircuits(nn.Module):
    """What the patch QGAN and MosaiQ generators share: ``K`` sub-generator circuits of ``n_qubits`` qubits
    ([RY(z) encoding, ``depth`` x [RY(theta), CZ chain], Z readout]) fed the same latent angles, class-conditioned by
    per-class circuit weights (``"weights"``) or learned per-class encoding offsets (``"angles"``)."""

    def _init_circuits(self, n_classes: int, n_sub: int, n_qubits: int, depth: int, conditional: str) -> None:
        if conditional not in CONDITIONING:
            raise ConfigError(f"model.conditional must be one of {CONDITIONING}, got {conditional!r}")
        self.n_sub, self.n_qubits, self.conditional = n_sub, n_qubits, conditional
        self.ansatz = Ansatz(n_qubits, depth, encoding="ry", rotations=("ry",), entangler="cz-chain", observable="z")
        n_sets = n_classes if conditional == "weights" else 1
        # U[0, 1) initial angles, as in the common reimplementation of the paper's circuits
        self.weights = nn.Parameter(torch.rand(n_sets, n_sub, *self.ansatz.weight_shape))
        self.class_angles = nn.Parameter(torch.zeros(n_classes, n_sub, n_qubits)) if conditional == "angles" else None

    @property
    def latent_dim(self) -> int:
        return self.n_qubits

    def circuit_inputs(self, z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoding angles ``[B, 1 | K, n]`` and circuit weights (broadcast against them) for latents ``z [B, n]``."""
        if z.dim() != 2 or z.shape[1] != self.n_qubits:
            raise ConfigError(f"latent angles must be [B, {self.n_qubits}], got {tuple(z.shape)}")
        x = z[:, None, :]
        if self.class_angles is not None:
            return x + self.class_angles[y], self.weights[0]
        return x, self.weights[y]

    def circuit_count(self) -> dict[str, int]:
        return {"sub_generators": self.n_sub, "qubits": self.n_qubits, "circuit_weights": self.weights.numel()}


class PatchQuantumGenerator(SubGeneratorCircuits):
    """``G(z [B, n_qubits] angles, y [B]) -> [B, C, S, S]`` in [-1, 1]."""

    def __init__(
        self,
        n_classes: int,
        image_size: int = 28,
        channels: int = 1,
        n_qubits: int = 5,
        n_ancilla: int = 1,
        depth: int = 6,
        conditional: str = "weights",
    ) -> None:
        super().__init__()
        if n_classes < 1:
            raise ConfigError(f"n_classes must be >= 1, got {n_classes}")
        if not 0 <= n_ancilla < n_qubits:
            raise ConfigError(f"model.n_ancilla must be in 0..n_qubits-1 = 0..{n_qubits - 1}, got {n_ancilla}")
        self.n_classes, self.image_size, self.channels = n_classes, image_size, channels
        self.n_ancilla = n_ancilla
        self.patch = 2 ** (n_qubits - n_ancilla)
        self.n_pixels = channels * image_size * image_size
        n_sub = n_subgenerators(self.n_pixels, n_qubits - n_ancilla)
        self._init_circuits(n_classes, n_sub, n_qubits, depth, conditional)

    def patches(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Post-selected, max-rescaled patch intensities ``[B, K, 2**n]`` in [0, 1]."""
        x, w = self.circuit_inputs(z, y)
        probs = basis_probabilities(self.ansatz, x, w)[..., : self.patch]
        cond = probs / probs.sum(-1, keepdim=True).clamp_min(1e-12)
        return cond / cond.amax(-1, keepdim=True).clamp_min(1e-12)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        p = self.patches(z, y)
        flat = p.flatten(1)[:, : self.n_pixels]
        return (flat * 2 - 1).view(-1, self.channels, self.image_size, self.image_size)
