"""Class prototypes: per-class feature vectors that set each class's latent Gaussian (MediQ-GAN).

A prototype ``p_c`` is warm-started from the mean feature vector of the class's training images under a frozen,
local, pretrained extractor (the metrics stack's Inception network, 2048-d, a user TorchScript file, or a saved
prototype file). The generator's latent is then ``z = mu_c + sigma_c * eps`` with ``mu_c = MLP(p_c)``
(dim -> 512 -> ReLU -> latent_dim) and ``sigma_c = clamp(softplus(s_c), sigma_min, sigma_max)``. Prototypes stay
trainable; :meth:`PrototypeBank.separation_loss` keeps the classes apart:
``lambda * mean_{i != j} ReLU(margin - ||p_i - p_j||)`` on L2-normalised prototypes.

Extractors are called on float images ``[N, C, H, W]`` in ``[-1, 1]`` and must return ``[N, D]`` features
(trailing singleton dimensions are flattened).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from qmedgen.errors import ConfigError, DataError, UserError
from qmedgen.fileio import atomic_path

Extractor = Callable[[torch.Tensor], torch.Tensor]

PROTOTYPE_KEY = "prototypes"


class PrototypeBank(nn.Module):
    """Learnable class prototypes, their MLP to latent means, and per-class latent scales."""

    def __init__(
        self,
        n_classes: int,
        dim: int,
        latent_dim: int,
        *,
        hidden: int = 512,
        sigma_min: float = 0.2,
        sigma_max: float = 0.8,
        sigma_init: float = 0.5,
        init: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if n_classes < 1 or dim < 1 or latent_dim < 1 or hidden < 1:
            raise ConfigError(
                f"PrototypeBank needs positive sizes, got n_classes={n_classes}, dim={dim}, "
                f"latent_dim={latent_dim}, hidden={hidden}"
            )
        if not 0 < sigma_min <= sigma_max:
            raise ConfigError(f"prototypes: need 0 < sigma_min <= sigma_max, got {sigma_min} and {sigma_max}")
        if not sigma_min <= sigma_init <= sigma_max:
            raise ConfigError(f"prototypes.sigma_init must lie in [{sigma_min}, {sigma_max}], got {sigma_init}")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        if init is None:
            init = torch.randn(n_classes, dim) / math.sqrt(dim)
        init = torch.as_tensor(init, dtype=torch.float32)
        if tuple(init.shape) != (n_classes, dim):
            raise ConfigError(f"prototype init must have shape ({n_classes}, {dim}), got {tuple(init.shape)}")
        self.prototypes = nn.Parameter(init.clone())
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, latent_dim))
        # inverse softplus, so that sigma starts at sigma_init
        raw = sigma_init + math.log(-math.expm1(-sigma_init))
        self.sigma_raw = nn.Parameter(torch.full((n_classes,), raw))

    @property
    def n_classes(self) -> int:
        return self.prototypes.shape[0]

    @property
    def dim(self) -> int:
        return self.prototypes.shape[1]

    def load_prototypes(self, values: torch.Tensor) -> None:
        """Overwrite the prototype vectors (e.g. with class means from an extractor)."""
        values = torch.as_tensor(values, dtype=self.prototypes.dtype)
        if values.shape != self.prototypes.shape:
            raise ConfigError(
                f"prototypes have shape {tuple(values.shape)}, the model expects {tuple(self.prototypes.shape)} "
                "(n_classes, feature dim)"
            )
        with torch.no_grad():
            self.prototypes.copy_(values.to(self.prototypes.device))

    def mu(self, y: torch.Tensor | None = None) -> torch.Tensor:
        """Latent means: ``[n_classes, latent_dim]``, or ``[B, latent_dim]`` for labels ``y``."""
        p = self.prototypes if y is None else self.prototypes[y]
        return self.mlp(p)

    def sigma(self, y: torch.Tensor | None = None) -> torch.Tensor:
        s = F.softplus(self.sigma_raw).clamp(self.sigma_min, self.sigma_max)
        return s if y is None else s[y]

    def sample(self, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``z = mu_y + sigma_y * eps`` with ``eps ~ N(0, I)`` (differentiable in the prototype parameters)."""
        mu = self.mu(y)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + self.sigma(y).unsqueeze(-1) * eps

    def separation_loss(self, weight: float = 5e-3, margin: float = 1.0) -> torch.Tensor:
        """``weight * mean_{i != j} ReLU(margin - ||p_i - p_j||)`` on L2-normalised prototypes (0 for 1 class)."""
        c = self.n_classes
        if c < 2:
            return self.prototypes.sum() * 0.0
        p = F.normalize(self.prototypes, dim=-1)
        diff = p.unsqueeze(0) - p.unsqueeze(1)
        # sqrt with an epsilon: the diagonal (i == j) has zero distance and an undefined gradient
        dist = (diff.pow(2).sum(-1) + 1e-12).sqrt()
        off = ~torch.eye(c, dtype=torch.bool, device=p.device)
        return weight * F.relu(margin - dist[off]).mean()


# ---------------------------------------------------------------------------------------------------------------
# computing, saving and loading warm-start prototypes


@torch.no_grad()
def class_mean_features(
    extractor: Extractor,
    images: torch.Tensor,
    labels: torch.Tensor,
    n_classes: int,
    *,
    batch_size: int = 64,
    device: torch.device | str | None = None,
    progress: bool = False,
    allow_missing: bool = False,
) -> torch.Tensor:
    """Mean extractor feature per class, ``[n_classes, D]``; images ``[N, C, H, W]`` in ``[-1, 1]``.

    A class without images is an error (its prototype would be undefined) unless ``allow_missing``, where such a
    class gets the mean feature of all images (a neutral start for a class that is never trained on).
    """
    labels = torch.as_tensor(labels).long()
    if labels.dim() != 1:
        raise DataError(f"prototypes need one class per image (labels [N]), got labels of shape {tuple(labels.shape)}")
    counts = torch.bincount(labels, minlength=n_classes)
    missing = [c for c in range(n_classes) if counts[c] == 0]
    if missing and not allow_missing:
        raise DataError(f"no images for class(es) {missing}: every class needs at least one image for its prototype")
    sums: torch.Tensor | None = None
    batches = range(0, images.shape[0], batch_size)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="prototype features", unit="batch")
    for start in batches:
        x = images[start : start + batch_size]
        if device is not None:
            x = x.to(device)
        feats = extractor(x)
        if feats.dim() > 2:
            feats = feats.flatten(1)
        if feats.dim() != 2 or feats.shape[0] != x.shape[0]:
            raise DataError(f"the extractor must return features [N, D]; got {tuple(feats.shape)} for {x.shape[0]}")
        feats = feats.float().cpu()
        if sums is None:
            sums = torch.zeros(n_classes, feats.shape[1])
        sums.index_add_(0, labels[start : start + batch_size], feats)
    assert sums is not None
    means = sums / counts.clamp(min=1).unsqueeze(1).float()
    if missing:
        means[missing] = sums.sum(0) / counts.sum()
    if not torch.isfinite(means).all():
        raise DataError("the extractor returned non-finite features; cannot build prototypes")
    return means


def resolve_extractor(spec: str, device: torch.device | str | None = None) -> Extractor:
    """A frozen feature extractor of the metrics stack as a callable on float images in [-1, 1].

    ``spec``: ``"inception"`` (2048-d FID Inception), ``"domain:<dataset>"`` or a TorchScript file path; images are
    quantised to uint8 first, exactly as the metrics do, so prototypes and evaluation see the same inputs.
    """
    from qmedgen.evaluate.extractors import load_extractor
    from qmedgen.images import to_uint8

    try:
        extractor = load_extractor(spec, device, progress=False)
    except UserError as exc:
        raise type(exc)(
            f"{exc}. For prototypes without this extractor pass a TorchScript file (--extractor PATH), a prototype "
            "file (model.prototypes.init=file) or set model.prototypes.init=random"
        ) from exc

    def features(x: torch.Tensor) -> torch.Tensor:
        return extractor.features(to_uint8(x))

    features.dim = getattr(extractor, "dim", 0)  # type: ignore[attr-defined]
    return features


def save_prototypes(path: str | Path, prototypes: torch.Tensor, metadata: dict[str, str] | None = None) -> Path:
    """Write ``[n_classes, D]`` prototypes to a ``.safetensors`` file (atomically), with string metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ConfigError(f"prototype files use the .safetensors extension, got {path.name}")
    meta = {k: str(v) for k, v in (metadata or {}).items()}
    meta["n_classes"], meta["dim"] = str(prototypes.shape[0]), str(prototypes.shape[1])
    with atomic_path(path) as tmp:
        save_file({PROTOTYPE_KEY: prototypes.detach().float().cpu().contiguous()}, str(tmp), metadata=meta)
    return path


def load_prototypes(path: str | Path) -> tuple[torch.Tensor, dict[str, str]]:
    """Read prototypes written by :func:`save_prototypes` -> (``[n_classes, D]`` tensor, metadata)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"prototype file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            if PROTOTYPE_KEY not in set(f.keys()):
                raise DataError(f"{path}: no {PROTOTYPE_KEY!r} tensor (found {list(f.keys())})")
            values = f.get_tensor(PROTOTYPE_KEY)
            meta = dict(f.metadata() or {})
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: not a readable safetensors prototype file ({exc})") from exc
    if values.dim() != 2:
        raise DataError(f"{path}: prototypes must be [n_classes, D], got {tuple(values.shape)}")
    return values.float(), meta
