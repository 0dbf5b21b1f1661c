"""Downstream utility: do synthetic images help a diagnostic classifier?

A small ResNet is trained on:

- ``real``: the real few-shot subset with the best real-only augmentation (the baseline to beat);
  ``real-noaug``: the same without augmentation;
- ``real+syn@R``: the real subset plus R x as many synthetic images (class-balanced draw from the samples);
  ``real+syn@val``: the same with R chosen on validation among the configured ratios;
- ``syn``: synthetic images only (train on synthetic, test on real: TSTR);
- ``syn>real``: pre-trained on the synthetic images, then fine-tuned on the real ones.

An honest baseline. The augmentation policy is chosen per seed on a validation split carved from the real
training images (never the test split), among a standard set (crops, flips and rot90 where they keep the label,
small rotations, colour jitter for RGB, mixup) restricted to the dataset's label-preserving ops, which the
catalogue lists per dataset (:data:`qmedgen.data.catalog.LABEL_PRESERVING`: e.g. no horizontal flip on the
organ sets, whose classes are left/right organs, and none on digits). Every arm uses that policy and trains for
the same number of epochs over its own training set: a fixed step count would starve the larger real+synthetic
sets. The final weights are evaluated.

Each arm is evaluated on the official test split (accuracy, balanced accuracy, macro one-vs-rest AUC; quadratic
weighted kappa and MAE for ordinal tasks such as RetinaMNIST) for several seeds, summarised by the mean and a
95% t-interval, and compared with the baseline seed by seed (paired t-test, Wilcoxon, difference CI). The real
subset is fixed (``subset_seed``: the images the generator saw); the seeds vary initialisation, batches,
augmentation and the validation split.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import rankdata
from torch import nn
from tqdm.auto import tqdm

from qmedgen.data.catalog import AUGMENT_OPS, label_preserving_ops
from qmedgen.errors import ConfigError, DataError
from qmedgen.evaluate.features import default_device, iter_batches
from qmedgen.evaluate.stats import paired_comparison, t_interval


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.skip = nn.Sequential() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.b1(self.c1(x)))
        return F.relu(self.b2(self.c2(h)) + self.skip(x))


class SmallResNet(nn.Module):
    """ResNet with one basic block per stage (widths w/2w/4w, w = 16 by default: ~0.1M parameters, enough for
    few-shot 28-128 px data and quick on a CPU); stride-2 stems keep the trunk at ~28-32 px."""

    def __init__(self, in_channels: int, n_classes: int, size: int = 28, width: int = 16) -> None:
        super().__init__()
        stem: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, 1 if size <= 40 else 2, 1, bias=False),
                                 nn.BatchNorm2d(width), nn.ReLU()]
        if size > 80:
            stem.append(nn.MaxPool2d(2))
        self.net = nn.Sequential(*stem, BasicBlock(width, width, 1), BasicBlock(width, 2 * width, 2),
                                 BasicBlock(2 * width, 4 * width, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                 nn.Linear(4 * width, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def augment(x: torch.Tensor, ops: tuple[str, ...], gen: torch.Generator) -> torch.Tensor:
    """Per-image random augmentation of a batch in [-1, 1] with the label-preserving ``ops`` (see
    :data:`qmedgen.data.catalog.AUGMENT_OPS`): flips and rot90 exactly, then one affine resample for ``rotate``
    (+-15 degrees) and ``crop`` (translation by up to size/8, reflected borders), then colour jitter. ``mixup``
    mixes pairs of images and labels, so it lives in the training loop, not here."""
    unknown = set(ops) - set(AUGMENT_OPS) - {"mixup"}
    if unknown:
        raise ConfigError(f"unknown augmentation(s) {sorted(unknown)}; choose from {', '.join(AUGMENT_OPS)}, mixup")
    n, c, h, w = x.shape
    dev = x.device

    def coin() -> torch.Tensor:
        return (torch.rand(n, generator=gen) < 0.5).to(dev)[:, None, None, None]

    if "hflip" in ops:
        x = torch.where(coin(), x.flip(3), x)
    if "vflip" in ops:
        x = torch.where(coin(), x.flip(2), x)
    if "rot90" in ops and h == w:
        k = torch.randint(0, 4, (n,), generator=gen).to(dev)[:, None, None, None]
        x = torch.where(k == 1, x.rot90(1, (2, 3)), torch.where(k == 2, x.rot90(2, (2, 3)),
                        torch.where(k == 3, x.rot90(3, (2, 3)), x)))
    if "rotate" in ops or "crop" in ops:
        ang = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(15) if "rotate" in ops else torch.zeros(n)
        shift = ((torch.rand(n, 2, generator=gen) * 2 - 1) * 2 * max(1, h // 8) / h if "crop" in ops
                 else torch.zeros(n, 2))
        cos, sin = torch.cos(ang), torch.sin(ang)
        theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
        grid = F.affine_grid(theta.to(dev, x.dtype), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if "color" in ops and c == 3:
        def factor() -> torch.Tensor:
            return (1 + (torch.rand(n, generator=gen) * 2 - 1) * 0.2).to(dev, x.dtype)[:, None, None, None]

        x = (x + 1) * factor() - 1  # brightness
        mean = x.mean((1, 2, 3), keepdim=True)
        x = (x - mean) * factor() + mean  # contrast
        grey = x.mean(1, keepdim=True)
        x = ((x - grey) * factor() + grey).clamp(-1, 1)  # saturation
    return x


def steps_for_epochs(n_images: int, epochs: float, batch_size: int) -> int:
    """The budget rule shared by every arm: ``epochs`` passes over the arm's own training set."""
    return max(1, math.ceil(epochs * n_images / min(batch_size, max(n_images, 2))))


def train_classifier(images: np.ndarray, labels: np.ndarray, n_classes: int, epochs: float = 100,
                     batch_size: int = 64, lr: float = 2e-3, policy: tuple[str, ...] = ("crop",),
                     seed: int = 0, device=None, progress: bool = True, desc: str = "classifier",
                     init: SmallResNet | None = None) -> SmallResNet:
    """Train :class:`SmallResNet` for ``epochs`` passes over ``images`` (AdamW, cosine LR, label smoothing 0.1).

    ``policy``: augmentation ops (:func:`augment`) plus ``mixup`` (Beta(0.4, 0.4) pairs within the batch).
    ``init``: start from these weights (fine-tuning after pre-training on synthetic images)."""
    if len(images) == 0:
        raise DataError(f"{desc}: no training images")
    device = torch.device(device) if device is not None else default_device()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    if init is not None:
        model = copy.deepcopy(init).to(device)
    else:
        model = SmallResNet(images.shape[-1], n_classes, size=images.shape[1]).to(device)
    model = model.to(memory_format=torch.channels_last)  # 2x faster convs on the CPU at these sizes
    steps = steps_for_epochs(len(images), epochs, batch_size)
    bs = min(batch_size, max(len(images), 2))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    x_all = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    y_all = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    ops = tuple(op for op in policy if op != "mixup")
    mix = torch.distributions.Beta(0.4, 0.4) if "mixup" in policy else None
    model.train()
    for _ in tqdm(range(steps), desc=desc, disable=not progress, leave=False):
        idx = torch.randint(0, len(images), (bs,), generator=gen)
        x = x_all[idx].float().div_(127.5).sub_(1.0)
        x = augment(x, ops, gen).to(device).contiguous(memory_format=torch.channels_last)
        y = y_all[idx].to(device)
        if mix is not None:
            lam = float(mix.sample())  # torch's global generator, seeded above
            perm = torch.randperm(bs, generator=gen).to(device)
            logits = model(lam * x + (1 - lam) * x[perm])
            loss = lam * F.cross_entropy(logits, y, label_smoothing=0.1) + (1 - lam) * F.cross_entropy(
                logits, y[perm], label_smoothing=0.1)
        else:
            loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


@torch.no_grad()
def predict_proba(model: nn.Module, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    device = next(model.parameters()).device
    out = [F.softmax(model(b.to(device).float().div_(127.5).sub_(1.0)), 1).cpu() for b in
           iter_batches(images, batch_size)]
    return torch.cat(out).double().numpy()


def macro_auc(probs: np.ndarray, y: np.ndarray) -> float:
    """Mean one-vs-rest ROC AUC over classes that have positives and negatives (Mann-Whitney U with ties)."""
    aucs = []
    for c in range(probs.shape[1]):
        pos = y == c
        n_pos, n_neg = int(pos.sum()), int((~pos).sum())
        if n_pos == 0 or n_neg == 0:
            continue
        ranks = rankdata(probs[:, c])
        aucs.append((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    return float(np.mean(aucs)) if aucs else float("nan")


def quadratic_weighted_kappa(y: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    """Cohen's kappa with quadratic disagreement weights (ordinal agreement)."""
    o = np.zeros((n_classes, n_classes))
    np.add.at(o, (y, pred), 1)
    i, j = np.indices(o.shape)
    w = (i - j) ** 2 / max((n_classes - 1) ** 2, 1)
    e = np.outer(o.sum(1), o.sum(0)) / max(o.sum(), 1)
    den = (w * e).sum()
    return float(1 - (w * o).sum() / den) if den > 0 else float("nan")


def classification_metrics(probs: np.ndarray, y: np.ndarray, task: str = "multi-class") -> dict[str, float]:
    """Accuracy, balanced accuracy (mean per-class recall), macro AUC; QWK and MAE for ordinal tasks."""
    y = np.asarray(y, dtype=np.int64)
    pred = probs.argmax(1)
    recalls = [float((pred[y == c] == c).mean()) for c in np.unique(y)]
    out = {"accuracy": float((pred == y).mean()), "balanced_accuracy": float(np.mean(recalls)),
           "macro_auc": macro_auc(probs, y)}
    if task.startswith("ordinal"):
        out["qwk"] = quadratic_weighted_kappa(y, pred, probs.shape[1])
        out["mae"] = float(np.abs(pred - y).mean())
    return out


@dataclass
class UtilityConfig:
    """Arms, budgets and selection rules of a utility study (see the module docstring)."""

    arms: tuple[str, ...] = ("real", "real-noaug", "real+syn", "syn")
    ratios: tuple[float, ...] = (1.0,)
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: float = 100
    pretrain_epochs: float = 30
    batch_size: int = 64
    lr: float = 2e-3
    augment: tuple[str, ...] | None = None   # None: chosen on validation among candidate_policies(dataset)
    val_fraction: float = 0.2
    filter: bool = False                      # drop off-class synthetic images and near copies first (selection)
    min_confidence: float = 0.5
    baseline: str = "real"
    progress: bool = True
    device: str | None = None
    extra: dict = field(default_factory=dict)


ARMS = ("real", "real-noaug", "real+syn", "real+syn@val", "syn", "syn>real")


def arm_names(cfg: UtilityConfig) -> list[str]:
    names = []
    for arm in cfg.arms:
        if arm == "real+syn":
            names += [f"real+syn@{r:g}" for r in cfg.ratios]
        elif arm in ARMS:
            names.append(arm)
        else:
            raise ConfigError(f"unknown utility arm {arm!r}; choose from {', '.join(ARMS)}")
    return names


def candidate_policies(dataset: str, channels: int) -> dict[str, tuple[str, ...]]:
    """The standard real-only augmentation set, restricted to the dataset's label-preserving ops (catalogue):
    none, crops, + flips/rot90 where valid, + small rotations, + colour jitter (RGB), and mixup on top."""
    allowed = label_preserving_ops(dataset, channels)
    out: dict[str, tuple[str, ...]] = {"none": ()}
    policy: tuple[str, ...] = ("crop",) if "crop" in allowed else ()
    if policy:
        out["crop"] = policy
    flips = tuple(op for op in ("hflip", "vflip", "rot90") if op in allowed)
    if flips:
        policy = policy + flips
        out["+".join(policy)] = policy
    for op in ("rotate", "color"):
        if op in allowed:
            policy = (*policy, op)
            out["+".join(policy)] = policy
    out["+".join((*policy, "mixup"))] = (*policy, "mixup")
    return out


def validation_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (train, val) indices carved from the real training images: per class round(fraction * n),
    at least one image, and at least one left for training (classes with a single image stay in train)."""
    rng = np.random.default_rng(seed + 104729)
    tr, va = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = min(max(1, round(fraction * len(idx))), len(idx) - 1)
        va.append(idx[:k])
        tr.append(idx[k:])
    return np.sort(np.concatenate(tr)), np.sort(np.concatenate(va))


def _balanced_draw(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``n`` indices spread as evenly over classes as the pool allows."""
    if n >= len(labels):
        return rng.permutation(len(labels))
    by_class = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    picked, i = [], 0
    while len(picked) < n:
        for idx in by_class:
            if i < len(idx) and len(picked) < n:
                picked.append(idx[i])
        i += 1
    return np.asarray(picked)


def with_synthetic(real: tuple[np.ndarray, np.ndarray], syn: tuple[np.ndarray, np.ndarray], ratio: float,
                   seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The real set plus ``ratio`` x as many synthetic images, drawn class-balanced with ``seed``."""
    idx = _balanced_draw(syn[1], round(ratio * len(real[0])), np.random.default_rng(seed + 7919))
    return np.concatenate([real[0], syn[0][idx]]), np.concatenate([real[1], syn[1][idx]])


def _score(model: nn.Module, data: tuple[np.ndarray, np.ndarray], task: str) -> dict[str, float]:
    return classification_metrics(predict_proba(model, data[0]), data[1], task)


def _fit_on(data: tuple[np.ndarray, np.ndarray], n_classes: int, cfg: UtilityConfig, policy: tuple[str, ...],
            seed: int, desc: str) -> SmallResNet:
    return train_classifier(*data, n_classes, cfg.epochs, cfg.batch_size, cfg.lr, policy, seed, cfg.device,
                            progress=False, desc=desc)


def select_policy(real: tuple[np.ndarray, np.ndarray], n_classes: int, task: str, cfg: UtilityConfig, dataset: str,
                  seed: int) -> dict:
    """The real-only augmentation policy with the best balanced accuracy on a validation split of the real
    training images (ties go to the simpler policy); the test split is never looked at. ``cfg.augment`` fixes it.
    Returns ``{"policy", "policy_name", "val": {name: score}, "n_train", "n_val"}``."""
    if cfg.augment is not None:
        return {"policy": tuple(cfg.augment), "policy_name": "+".join(cfg.augment) or "none", "val": {}}
    tr, va = validation_split(real[1], cfg.val_fraction, seed)
    out: dict = {"n_train": len(tr), "n_val": len(va), "val": {}}
    best = None
    for name, policy in candidate_policies(dataset, real[0].shape[-1]).items():
        model = _fit_on((real[0][tr], real[1][tr]), n_classes, cfg, policy, seed, f"val:{name}")
        score = _score(model, (real[0][va], real[1][va]), task)["balanced_accuracy"]
        out["val"][name] = score
        if best is None or score > best[0] + 1e-12:
            best = (score, name, policy)
    out["policy_name"], out["policy"] = best[1], best[2]
    return out


def select_ratio(real: tuple[np.ndarray, np.ndarray], syn: tuple[np.ndarray, np.ndarray], n_classes: int, task: str,
                 cfg: UtilityConfig, policy: tuple[str, ...], seed: int) -> tuple[float, dict[str, float]]:
    """The synthetic ratio (among ``cfg.ratios``) with the best validation balanced accuracy, on the same split."""
    tr, va = validation_split(real[1], cfg.val_fraction, seed)
    scores: dict[str, float] = {}
    best = None
    for r in cfg.ratios:
        model = _fit_on(with_synthetic((real[0][tr], real[1][tr]), syn, r, seed), n_classes, cfg, policy, seed,
                        f"val:@{r:g}")
        scores[f"{r:g}"] = _score(model, (real[0][va], real[1][va]), task)["balanced_accuracy"]
        if best is None or scores[f"{r:g}"] > best[0] + 1e-12:
            best = (scores[f"{r:g}"], r)
    return best[1], scores


def _real_key(real: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], cfg: UtilityConfig,
              dataset: str, task: str, seed: int) -> str:
    """What the real-only arms of one seed depend on: the images, the test labels and the budget settings."""
    h = hashlib.sha256()
    for a in (real[0], real[1], test[0], test[1]):
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(json.dumps([dataset, task, seed, cfg.epochs, cfg.batch_size, cfg.lr, cfg.augment, cfg.val_fraction,
                         str(cfg.device or default_device())], default=str).encode())
    return h.hexdigest()[:24]


def _train_arm(arm: str, real, syn, n_classes: int, cfg: UtilityConfig, policy: tuple[str, ...], ratio: float | None,
               seed: int) -> tuple[nn.Module, int]:
    if arm in ("real", "real-noaug"):
        return _fit_on(real, n_classes, cfg, policy if arm == "real" else (), seed, arm), len(real[0])
    if syn is None:
        raise ConfigError(f"utility arm {arm!r} needs synthetic samples")
    if arm == "syn":
        return _fit_on(syn, n_classes, cfg, policy, seed, arm), len(syn[0])
    if arm == "syn>real":  # pre-train on synthetic, then fine-tune on real
        pre = train_classifier(*syn, n_classes, cfg.pretrain_epochs, cfg.batch_size, cfg.lr, policy, seed,
                               cfg.device, progress=False, desc="syn>real:pretrain")
        return train_classifier(*real, n_classes, cfg.epochs, cfg.batch_size, cfg.lr, policy, seed, cfg.device,
                                progress=False, desc="syn>real", init=pre), len(real[0])
    data = with_synthetic(real, syn, ratio if arm == "real+syn@val" else float(arm.split("@", 1)[1]), seed)
    return _fit_on(data, n_classes, cfg, policy, seed, arm), len(data[0])


def run_utility(real_train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], n_classes: int,
                task: str, synthetic: tuple[np.ndarray, np.ndarray] | None, cfg: UtilityConfig,
                dataset: str = "", cache: dict | None = None) -> dict:
    """Train and evaluate every arm x seed; returns per-run metrics, summaries and paired comparisons.

    ``cache``: a dict (the benchmark keeps it in a JSON file) of real-only results per seed, keyed by everything
    they depend on, so that models compared on the same real images share one baseline instead of retraining it.

    Per seed, the augmentation policy (and the ratio of ``real+syn@val``) is chosen on a validation split of the
    real training images; every arm then trains on its full training set with that policy (``real-noaug``:
    none) for the same number of epochs."""
    if task == "multi-label":
        raise ConfigError("downstream utility supports single-label tasks only (not multi-label data)")
    if synthetic is not None:
        from qmedgen.evaluate.evaluation import check_compatible

        check_compatible(real_train[0], synthetic[0], real_name="real training set", fake_name="synthetic images")
        bad = sorted(set(np.unique(synthetic[1]).tolist()) - set(range(n_classes)))
        if bad:
            raise DataError(f"synthetic labels {bad} are outside the dataset's classes 0..{n_classes - 1}")
    filtered = None
    if cfg.filter and synthetic is not None:
        from qmedgen.evaluate.selection import select_synthetic

        chosen = select_synthetic(*real_train, *synthetic, n_classes, min_confidence=cfg.min_confidence,
                                  seed=cfg.seeds[0], device=cfg.device, classifier_epochs=cfg.epochs)
        filtered = chosen.summary()
        synthetic = (synthetic[0][chosen.keep], synthetic[1][chosen.keep])
    names = arm_names(cfg)
    runs: dict[str, dict[int, dict]] = {a: {} for a in names}
    selection: dict[str, dict] = {}
    total = len(names) * len(cfg.seeds)
    with tqdm(total=total, desc="utility runs", disable=not cfg.progress) as bar:
        for seed in cfg.seeds:
            key = _real_key(real_train, test, cfg, dataset, task, seed) if cache is not None else None
            hit = cache.get(key) if cache is not None else None
            sel = dict(hit["selection"]) if hit else select_policy(real_train, n_classes, task, cfg, dataset, seed)
            sel["policy"] = tuple(sel["policy"])
            if "real+syn@val" in names and synthetic is not None:
                sel["ratio"], sel["val_ratio"] = select_ratio(real_train, synthetic, n_classes, task, cfg,
                                                              sel["policy"], seed)
            selection[str(seed)] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in sel.items()}
            for arm in names:
                if hit and arm in hit["arms"]:
                    runs[arm][seed] = dict(hit["arms"][arm])
                else:
                    model, n_train = _train_arm(arm, real_train, synthetic, n_classes, cfg, sel["policy"],
                                                sel.get("ratio"), seed)
                    runs[arm][seed] = {**_score(model, test, task), "n_train": n_train}
                bar.update(1)
            if cache is not None:
                real_arms = {a: runs[a][seed] for a in ("real", "real-noaug") if a in runs}
                entry = cache.get(key) or {"selection": {k: v for k, v in selection[str(seed)].items()
                                                         if k not in ("ratio", "val_ratio")}, "arms": {}}
                entry["arms"].update(real_arms)
                cache[key] = entry
    metric_names = [k for k in next(iter(runs[names[0]].values())) if k != "n_train"]
    summary = {a: {k: t_interval([runs[a][s][k] for s in cfg.seeds]) for k in metric_names} for a in names}
    comparisons = {}
    if cfg.baseline in runs:
        for a in names:
            if a != cfg.baseline:
                comparisons[a] = {k: paired_comparison([runs[a][s][k] for s in cfg.seeds],
                                                       [runs[cfg.baseline][s][k] for s in cfg.seeds])
                                  for k in metric_names}
    return {"runs": {a: {str(s): m for s, m in r.items()} for a, r in runs.items()}, "summary": summary,
            "comparisons": comparisons, "baseline": cfg.baseline, "metrics": metric_names, "selection": selection,
            "filter": filtered,
            "settings": {"epochs": cfg.epochs, "pretrain_epochs": cfg.pretrain_epochs, "batch_size": cfg.batch_size,
                         "lr": cfg.lr, "augment": None if cfg.augment is None else list(cfg.augment),
                         "candidates": {k: list(v) for k, v in
                                        candidate_policies(dataset, real_train[0].shape[-1]).items()},
                         "val_fraction": cfg.val_fraction, "filter": cfg.filter, "min_confidence": cfg.min_confidence,
                         "seeds": list(cfg.seeds), "ratios": list(cfg.ratios),
                         "task": task, "n_real_train": len(real_train[0]),
                         "n_synthetic": None if synthetic is None else len(synthetic[0]),  # after the filter
                         "n_test": len(test[0]), **cfg.extra}}


