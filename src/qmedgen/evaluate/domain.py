"""Domain classifier: the evaluation instrument behind ``load_extractor("domain:<dataset>")``.

A small CNN trained by qmedgen on the dataset's full official training split. Its penultimate activations
(256-d) are a feature space that knows the medical domain (Inception-v3 was trained on ImageNet and sees
28x28 blood cells as blurry blobs), and its logits give the per-class conditional accuracy of generated
images. It is an *instrument*: trained once per (dataset, size, training-data hash, recipe) with a fixed seed,
cached under ``$QMEDGEN_CACHE/domain`` (default ``~/.qmedgen/cache``), never trained on generated data.
Its accuracy on the official test split is recorded in the cache metadata and reported with every evaluation.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from qmedgen.errors import DataError
from qmedgen.evaluate.cache import cache_dir, content_hash
from qmedgen.evaluate.features import Extractor, default_device, iter_batches
from qmedgen.fileio import atomic_path, write_json

RECIPE_VERSION = "domain-cnn-v2"
EMBED_DIM = 256


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DomainCNN(nn.Module):
    """Three conv stages (width w, 2w, 4w; w = 16) with pooling, global average pool, 256-d embedding, linear head.

    Images larger than 40 px first pass through stride-2 stems so the trunk always runs at ~28-32 px.
    """

    def __init__(self, in_channels: int, n_classes: int, size: int = 28, width: int = 16) -> None:
        super().__init__()
        stems: list[nn.Module] = []
        s, c = size, in_channels
        while s > 40:
            stems += [nn.Conv2d(c, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
            s, c = s // 2, width
        self.trunk = nn.Sequential(
            *stems,
            _block(c, width), _block(width, width), nn.MaxPool2d(2),
            _block(width, 2 * width), _block(2 * width, 2 * width), nn.MaxPool2d(2),
            _block(2 * width, 4 * width), _block(4 * width, 4 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.embed = nn.Sequential(nn.Linear(4 * width, EMBED_DIM), nn.ReLU(inplace=True))
        self.head = nn.Linear(EMBED_DIM, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.trunk(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class DomainExtractor(Extractor):
    """Penultimate features and logits of a trained :class:`DomainCNN`; input uint8 -> ``x / 127.5 - 1``."""

    dim = EMBED_DIM
    has_logits = True

    def __init__(self, model: DomainCNN, meta: dict, device=None) -> None:
        super().__init__(model, device)
        self.meta = meta
        self.name = f"domain:{meta['dataset']}"
        self.identity = f"{RECIPE_VERSION}-{meta['data_hash'][:16]}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module.features(x)

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.module(self.preprocess(images.to(self.device))).float()

    def check_images(self, images: np.ndarray) -> None:
        want = (self.meta["size"], self.meta["size"], self.meta["n_channels"])
        if tuple(images.shape[1:]) != want:
            raise DataError(f"{self.name}: the domain classifier takes images of shape HxWxC = {list(want)} "
                            f"(the dataset at size {self.meta['size']}); got {list(images.shape[1:])}")


def _default_epochs(n: int) -> int:
    """About 40k image presentations, 1 to 4 epochs: RetinaMNIST 4, BloodMNIST 3, MNIST 1 (a few CPU minutes)."""
    return int(min(4, max(1, round(40000 / max(n, 1)))))


def train_domain_classifier(images: np.ndarray, labels: np.ndarray, n_classes: int, multi_label: bool = False,
                            epochs: int | None = None, batch_size: int = 128, seed: int = 0,
                            device: torch.device | str | None = None, progress: bool = True) -> DomainCNN:
    """Train a :class:`DomainCNN` on uint8 NHWC images (AdamW, one-cycle LR, flips/translations, fixed seed)."""
    if len(images) == 0:
        raise DataError("cannot train a domain classifier on an empty training split")
    device = torch.device(device) if device is not None else default_device()
    epochs = epochs or _default_epochs(len(images))
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = DomainCNN(images.shape[-1], n_classes, size=images.shape[1]).to(device)
    steps_per_epoch = math.ceil(len(images) / batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=epochs * steps_per_epoch)
    x_all = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    y_all = torch.from_numpy(np.asarray(labels))
    model.train()
    bar = tqdm(total=epochs * steps_per_epoch, desc="training domain classifier", disable=not progress, leave=False)
    for _ in range(epochs):
        perm = torch.randperm(len(images), generator=gen)
        for start in range(0, len(images), batch_size):
            idx = perm[start:start + batch_size]
            x = x_all[idx].to(device).float().div_(127.5).sub_(1.0)
            y = y_all[idx].to(device)
            shift = torch.randint(-2, 3, (2,), generator=gen).tolist()  # small translations: cheap, label-safe
            x = torch.roll(x, shifts=shift, dims=(2, 3))
            logits = model(x)
            loss = F.binary_cross_entropy_with_logits(logits, y.float()) if multi_label else F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    return model.eval()


@torch.no_grad()
def classifier_accuracy(model: DomainCNN, images: np.ndarray, labels: np.ndarray, batch_size: int = 512) -> float:
    """Top-1 accuracy (single-label) or mean per-label accuracy (multi-label) of ``model`` on uint8 images."""
    device = next(model.parameters()).device
    preds = []
    for b in iter_batches(images, batch_size):
        preds.append(model(b.to(device).float().div_(127.5).sub_(1.0)).cpu())
    logits = torch.cat(preds)
    y = torch.from_numpy(np.asarray(labels))
    if y.ndim == 2:
        return float(((logits > 0).long() == y).float().mean())
    return float((logits.argmax(1) == y).float().mean())


def domain_cache_paths(dataset: str, size: int, data_hash: str) -> tuple[Path, Path]:
    stem = f"{dataset.replace(':', '_').replace('/', '_')}-{size}-{data_hash[:16]}"
    d = cache_dir() / "domain"
    return d / f"{stem}.safetensors", d / f"{stem}.json"


def domain_extractor_for(train_set, test_set=None, device=None, epochs: int | None = None,
                         progress: bool = True) -> DomainExtractor:
    """The cached domain classifier for ``train_set`` (an ``ImageDataset``), training it on a cache miss."""
    info = train_set.info
    multi_label = train_set.labels.ndim == 2
    data_hash = content_hash(train_set.images, train_set.labels, RECIPE_VERSION, f"epochs={epochs}")
    weights_path, meta_path = domain_cache_paths(info.name, info.size, data_hash)
    device = torch.device(device) if device is not None else default_device()
    if weights_path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        model = DomainCNN(meta["n_channels"], meta["n_classes"], size=meta["size"])
        model.load_state_dict(load_file(str(weights_path)))
        return DomainExtractor(model, meta, device)
    t0 = time.perf_counter()
    model = train_domain_classifier(train_set.images, train_set.labels, info.n_classes, multi_label=multi_label,
                                    epochs=epochs, device=device, progress=progress)
    meta = {
        "dataset": info.name, "size": int(train_set.images.shape[1]), "n_channels": int(train_set.images.shape[-1]),
        "n_classes": int(info.n_classes), "task": info.task, "n_train": len(train_set), "data_hash": data_hash,
        "recipe": RECIPE_VERSION, "epochs": epochs or _default_epochs(len(train_set)),
        "train_seconds": round(time.perf_counter() - t0, 1),
        "train_accuracy": classifier_accuracy(model, train_set.images, train_set.labels),
    }
    if test_set is not None:
        meta["test_accuracy"] = classifier_accuracy(model, test_set.images, test_set.labels)
        meta["test_split"] = test_set.info.split
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(weights_path) as tmp:
        save_file(state, str(tmp))
    write_json(meta_path, meta)
    return DomainExtractor(model, meta, device)


def load_domain_extractor(dataset: str, size: int = 28, root: Path | None = None, device=None,
                          progress: bool = True, epochs: int | None = None) -> DomainExtractor:
    """Domain extractor for a dataset name: loads its official training split (and test split for the record)."""
    from qmedgen.evaluate.realdata import load_split

    train_set = load_split(dataset, "train", size=size, root=root)
    try:
        test_set = load_split(dataset, "test", size=size, root=root)
    except Exception:  # folder datasets may have no test split; the record is then simply absent
        test_set = None
    return domain_extractor_for(train_set, test_set, device=device, epochs=epochs, progress=progress)
