"""MosaiQ (Silver et al., ICCV 2023): quantum sub-generators that produce PCA coefficients, decoded to images.

Instead of one pixel per basis state (patch QGAN), MosaiQ learns in a principal-component space fitted on the
training images: ``K`` sub-generators of ``n_qubits`` qubits each give ``n_qubits`` expectation values <Z_i> in
[-1, 1], together ``K * n_qubits`` PCA coefficients (scaled per component to [-1, 1] by the training set's largest
absolute coefficient), which the fixed PCA decoder turns into an image. Expectation values need few shots and the
circuits stay shallow, which is what makes the method NISQ-friendly.

* Feature redistribution (MosaiQ): component j goes to sub-generator ``j mod K``, so every sub-generator learns a
  mix of high- and low-variance components instead of one sub-generator carrying all the dominant ones.
* Latent angles z ~ U(0, ub), the same z for all sub-generators of an image (RY encoding); the adaptive bound ``ub``
  (MosaiQ's adaptive input noise, :class:`qmedgen.train.gan.AdaptiveNoiseBound`) is set by the trainer from the
  loss ratio and stored in the ``noise_bound`` buffer.
* Circuits: RY(z_i) encoding, then ``depth`` layers of [RY(theta), CZ chain], read <Z_i> - all ``B x K`` circuits
  in one batched engine call (:func:`qmedgen.quantum.expval`, adjoint gradients).
* Class conditioning (not in the paper, one model per class there): ``weights`` = per-class circuit weights (one
  MosaiQ per class, trained jointly), ``angles`` = shared circuits plus learned per-class encoding offsets. One PCA
  is fitted on all training images (all classes).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from qmedgen.errors import ConfigError
from qmedgen.models.baselines.patch_qgan import SubGeneratorCircuits
from qmedgen.quantum import expval


class PCADecoder(nn.Module):
    """A PCA of flattened images held in buffers (checkpointed with the weights): fit, encode, decode."""

    def __init__(self, n_pixels: int, n_components: int) -> None:
        super().__init__()
        if n_components < 1 or n_components > n_pixels:
            raise ConfigError(f"PCA: n_components must be in 1..{n_pixels}, got {n_components}")
        self.n_pixels, self.n_components = n_pixels, n_components
        self.register_buffer("mean", torch.zeros(n_pixels))
        self.register_buffer("components", torch.zeros(n_components, n_pixels))
        self.register_buffer("scale", torch.ones(n_components))
        self.register_buffer("explained", torch.zeros(n_components))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def fit(self, images: torch.Tensor) -> PCADecoder:
        """Principal axes of ``images [N, ...]`` (SVD in float64), and per-component scales to [-1, 1]."""
        x = images.reshape(images.shape[0], -1).double()
        if x.shape[1] != self.n_pixels:
            raise ConfigError(f"PCA expects {self.n_pixels} values per image, got {x.shape[1]}")
        if x.shape[0] <= self.n_components:
            raise ConfigError(
                f"MosaiQ needs more training images than PCA components: {self.n_components} components "
                f"(model.n_subgenerators x model.n_qubits) but {x.shape[0]} images; lower one of them"
            )
        mean = x.mean(0)
        _, s, vt = torch.linalg.svd(x - mean, full_matrices=False)
        comps = vt[: self.n_components]
        # a deterministic sign per axis (SVD signs are arbitrary): largest-magnitude loading positive
        signs = torch.sign(comps.gather(1, comps.abs().argmax(1, keepdim=True))).clamp_min(0) * 2 - 1
        comps = comps * signs
        coeffs = (x - mean) @ comps.T
        var = s.square()
        self.mean.copy_(mean.float())
        self.components.copy_(comps.float())
        self.scale.copy_(coeffs.abs().amax(0).clamp_min(1e-6).float())
        self.explained.copy_((var[: self.n_components] / var.sum().clamp_min(1e-12)).float())
        self.fitted.fill_(True)
        return self

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Scaled coefficients ``[N, k]`` (about [-1, 1] on the training images)."""
        x = images.reshape(images.shape[0], -1).to(self.mean.dtype)
        return ((x - self.mean) @ self.components.T) / self.scale

    def decode(self, coeffs: torch.Tensor) -> torch.Tensor:
        """Flattened images ``[N, n_pixels]`` from scaled coefficients."""
        return (coeffs.to(self.mean.dtype) * self.scale) @ self.components + self.mean


class MosaiQGenerator(SubGeneratorCircuits):
    """``G(z [B, n_qubits] angles, y [B]) -> [B, C, S, S]`` in [-1, 1] through the fitted PCA."""

    def __init__(
        self,
        n_classes: int,
        image_size: int = 28,
        channels: int = 1,
        n_subgenerators: int = 5,
        n_qubits: int = 8,
        depth: int = 6,
        conditional: str = "weights",
    ) -> None:
        super().__init__()
        if n_classes < 1 or n_subgenerators < 1:
            raise ConfigError(f"n_classes and model.n_subgenerators must be >= 1, got {n_classes}, {n_subgenerators}")
        self.n_classes, self.image_size, self.channels = n_classes, image_size, channels
        self._init_circuits(n_classes, n_subgenerators, n_qubits, depth, conditional)
        self.pca = PCADecoder(channels * image_size * image_size, n_subgenerators * n_qubits)
        self.register_buffer("noise_bound", torch.tensor(math.pi / 8))

    def set_noise_bound(self, value: float) -> None:
        self.noise_bound.fill_(float(value))

    def features(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Generated scaled PCA coefficients ``[B, K * n_qubits]`` in [-1, 1] (redistributed order)."""
        out = expval(self.ansatz, *self.circuit_inputs(z, y))  # [B, K, n]
        # component j = q * K + k comes from sub-generator k = j mod K, qubit q = j div K
        return out.transpose(1, 2).reshape(z.shape[0], -1)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if not bool(self.pca.fitted):
            raise ConfigError("MosaiQ's PCA is not fitted: call generator.pca.fit(training_images) first")
        flat = self.pca.decode(self.features(z, y)).clamp(-1, 1)
        return flat.view(-1, self.channels, self.image_size, self.image_size)
