"""The feature-extractor interface and batched extraction, shared by every extractor and the metrics.

Kept apart from :mod:`~qmedgen.evaluate.extractors` (which loads concrete extractors, the domain classifier
among them) so that :mod:`~qmedgen.evaluate.domain` can subclass :class:`Extractor` without importing its loader.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from qmedgen.errors import ConfigError, DataError
from qmedgen.images import to_uint8


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Extractor:
    """A frozen network mapping uint8 images to feature vectors; subclasses define :meth:`features`.

    ``identity`` names the exact network (file hash or training-data hash) and is part of feature-cache keys.
    """

    name: str = "extractor"
    identity: str = ""
    dim: int = 0
    has_logits: bool = False

    def __init__(self, module: torch.nn.Module, device: torch.device | str | None = None) -> None:
        self.module = module.eval()
        self.device = torch.device(device) if device is not None else default_device()
        self.module.to(self.device)

    def to(self, device: torch.device | str) -> Extractor:
        self.device = torch.device(device)
        self.module.to(self.device)
        return self

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (or 0..255 float) ``[N, C, H, W]`` on the extractor's device -> the network's input (no in-place
        change of ``x``)."""
        return x.to(torch.float32) / 127.5 - 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Network input -> features ``[N, D]``."""
        out = self.module(x)
        return out.flatten(2).mean(-1) if out.ndim > 2 else out

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``[N, C, H, W]`` (any device) -> float32 features ``[N, D]`` on the extractor's device."""
        return self.forward(self.preprocess(images.to(self.device, non_blocking=True))).float()

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        raise ConfigError(f"extractor {self.name!r} has no classifier head; use a 'domain:<dataset>' extractor")

    def check_images(self, images: np.ndarray) -> None:
        """Raise a DataError when images cannot be fed to this extractor (overridden where inputs are fixed)."""


def iter_batches(images: np.ndarray | torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    """Yield uint8 NCHW tensor batches from uint8 NHWC arrays or NCHW tensors (uint8 or [-1, 1] floats)."""
    if not (isinstance(images, np.ndarray) and images.dtype == np.uint8):
        images = torch.as_tensor(images)
        if images.dtype != torch.uint8:
            images = to_uint8(images)
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        if isinstance(chunk, np.ndarray):
            yield torch.from_numpy(np.ascontiguousarray(chunk)).permute(0, 3, 1, 2)
        else:
            yield chunk


def extract_features(extractor: Extractor, images: np.ndarray | torch.Tensor, batch_size: int = 64,
                     progress: bool = True, desc: str = "features") -> np.ndarray:
    """Features ``float32 [N, D]`` for all images, in batches, under ``torch.no_grad``, on the extractor's device."""
    if len(images) == 0:
        raise DataError("no images to extract features from")
    if isinstance(images, np.ndarray):
        extractor.check_images(images)
    out: list[torch.Tensor] = []
    with tqdm(total=len(images), desc=f"{desc} ({extractor.name})", unit="img", disable=not progress,
              leave=False) as bar:
        for batch in iter_batches(images, batch_size):
            out.append(extractor.features(batch).cpu())
            bar.update(len(batch))
    return torch.cat(out).numpy()


def extract_logits(extractor: Extractor, images: np.ndarray | torch.Tensor, batch_size: int = 256,
                   progress: bool = True) -> np.ndarray:
    """Classifier logits ``float32 [N, K]`` (domain extractors only)."""
    if isinstance(images, np.ndarray):
        extractor.check_images(images)
    out = [extractor.logits(b).cpu() for b in tqdm(list(iter_batches(images, batch_size)), desc="logits",
                                                   disable=not progress, leave=False)]
    return torch.cat(out).numpy()
