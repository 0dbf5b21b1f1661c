"""Downstream utility: do synthetic images help a diagnostic classifier?

A small ResNet is trained, with the same step budget and standard augmentation (random crops, plus flips where
they preserve the label), on:

- ``real``: the real few-shot subset (the baseline to beat), ``real-noaug``: the same without augmentation;
- ``real+syn@R``: the real subset plus R x as many synthetic images (class-balanced draw from the samples);
- ``syn``: synthetic images only (train on synthetic, test on real: TSTR).

Each arm is evaluated on the official test split (accuracy, balanced accuracy, macro one-vs-rest AUC; quadratic
weighted kappa and MAE for ordinal tasks such as RetinaMNIST) for several seeds, summarised by the mean and a
95% t-interval, and compared with the baseline seed by seed (paired t-test, Wilcoxon, difference CI). The real
subset is fixed (``subset_seed``: the images the generator saw); the seeds vary initialisation, batches and
augmentation. There is no early stopping (few-shot sets have no validation split): all arms train for the same
number of steps and the final weights are evaluated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import rankdata
from torch import nn
from tqdm.auto import tqdm

from qmedgen.errors import ConfigError, DataError
from qmedgen.evaluate.extractors import default_device, iter_batches
from qmedgen.evaluate.stats import paired_comparison, t_interval

NO_FLIP_DATASETS = ("mnist",)  # digits change meaning when mirrored


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


def augment(x: torch.Tensor, policy: tuple[str, ...], gen: torch.Generator) -> torch.Tensor:
    """Random crops (reflect-padded by size/8) and, if in ``policy``, horizontal and vertical flips, per image."""
    n, _, h, w = x.shape
    if "flip" in policy:
        fh = torch.rand(n, generator=gen) < 0.5
        fv = torch.rand(n, generator=gen) < 0.5
        x = torch.where(fh.to(x.device)[:, None, None, None], x.flip(3), x)
        x = torch.where(fv.to(x.device)[:, None, None, None], x.flip(2), x)
    if "crop" in policy:
        p = max(1, h // 8)
        padded = F.pad(x, (p, p, p, p), mode="reflect")
        oy = torch.randint(0, 2 * p + 1, (n,), generator=gen)
        ox = torch.randint(0, 2 * p + 1, (n,), generator=gen)
        x = torch.stack([padded[i, :, oy[i]:oy[i] + h, ox[i]:ox[i] + w] for i in range(n)])
    return x


def train_classifier(images: np.ndarray, labels: np.ndarray, n_classes: int, steps: int = 300,
                     batch_size: int = 64, lr: float = 2e-3, policy: tuple[str, ...] = ("crop", "flip"),
                     seed: int = 0, device=None, progress: bool = True, desc: str = "classifier") -> SmallResNet:
    """Train :class:`SmallResNet` for a fixed number of steps (AdamW, cosine LR, label smoothing 0.1)."""
    if len(images) == 0:
        raise DataError(f"{desc}: no training images")
    device = torch.device(device) if device is not None else default_device()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = SmallResNet(images.shape[-1], n_classes, size=images.shape[1]).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    x_all = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    y_all = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    model.train()
    for _ in tqdm(range(steps), desc=desc, disable=not progress, leave=False):
        idx = torch.randint(0, len(images), (min(batch_size, max(len(images), 2)),), generator=gen)
        x = x_all[idx].float().div_(127.5).sub_(1.0)
        x = augment(x, policy, gen).to(device)
        loss = F.cross_entropy(model(x), y_all[idx].to(device), label_smoothing=0.1)
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
    arms: tuple[str, ...] = ("real", "real-noaug", "real+syn", "syn")
    ratios: tuple[float, ...] = (1.0,)
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 300
    batch_size: int = 64
    lr: float = 2e-3
    augment: tuple[str, ...] | None = None   # None: crop + flip, crop only for MNIST
    baseline: str = "real"
    progress: bool = True
    device: str | None = None
    extra: dict = field(default_factory=dict)


def arm_names(cfg: UtilityConfig) -> list[str]:
    names = []
    for arm in cfg.arms:
        if arm == "real+syn":
            names += [f"real+syn@{r:g}" for r in cfg.ratios]
        elif arm in ("real", "real-noaug", "syn"):
            names.append(arm)
        else:
            raise ConfigError(f"unknown utility arm {arm!r}; choose from real, real-noaug, real+syn, syn")
    return names


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


def arm_training_set(arm: str, real: tuple[np.ndarray, np.ndarray], syn: tuple[np.ndarray, np.ndarray] | None,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
    if arm in ("real", "real-noaug"):
        return real
    if syn is None:
        raise ConfigError(f"utility arm {arm!r} needs synthetic samples")
    if arm == "syn":
        return syn
    ratio = float(arm.split("@", 1)[1])
    idx = _balanced_draw(syn[1], round(ratio * len(real[0])), np.random.default_rng(seed + 7919))
    return np.concatenate([real[0], syn[0][idx]]), np.concatenate([real[1], syn[1][idx]])


def run_utility(real_train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], n_classes: int,
                task: str, synthetic: tuple[np.ndarray, np.ndarray] | None, cfg: UtilityConfig,
                dataset: str = "") -> dict:
    """Train and evaluate every arm x seed; returns per-run metrics, summaries and paired comparisons."""
    if task == "multi-label":
        raise ConfigError("downstream utility supports single-label tasks only (not multi-label data)")
    if synthetic is not None:
        from qmedgen.evaluate.evaluation import check_compatible

        check_compatible(real_train[0], synthetic[0], real_name="real training set", fake_name="synthetic images")
        bad = sorted(set(np.unique(synthetic[1]).tolist()) - set(range(n_classes)))
        if bad:
            raise DataError(f"synthetic labels {bad} are outside the dataset's classes 0..{n_classes - 1}")
    policy = tuple(cfg.augment) if cfg.augment is not None else (
        ("crop",) if dataset.split(":")[0] in NO_FLIP_DATASETS else ("crop", "flip"))
    names = arm_names(cfg)
    runs: dict[str, dict[int, dict]] = {a: {} for a in names}
    total = len(names) * len(cfg.seeds)
    with tqdm(total=total, desc="utility runs", disable=not cfg.progress) as bar:
        for seed in cfg.seeds:
            for arm in names:
                x, y = arm_training_set(arm, real_train, synthetic, seed)
                model = train_classifier(x, y, n_classes, cfg.steps, cfg.batch_size, cfg.lr,
                                         () if arm == "real-noaug" else policy, seed, cfg.device,
                                         progress=False, desc=arm)
                m = classification_metrics(predict_proba(model, test[0]), test[1], task)
                m["n_train"] = len(x)
                runs[arm][seed] = m
                bar.update(1)
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
            "comparisons": comparisons, "baseline": cfg.baseline, "metrics": metric_names,
            "settings": {"steps": cfg.steps, "batch_size": cfg.batch_size, "lr": cfg.lr, "augment": list(policy),
                         "seeds": list(cfg.seeds), "ratios": list(cfg.ratios), "task": task,
                         "n_real_train": len(real_train[0]),
                         "n_synthetic": None if synthetic is None else len(synthetic[0]),
                         "n_test": len(test[0]), **cfg.extra}}


def utility_markdown(result: dict) -> str:
    """A markdown table: mean [95% CI] per arm and metric, then paired differences vs the baseline."""
    names = result["metrics"]
    lines = ["| arm | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for arm, s in result["summary"].items():
        lines.append(f"| {arm} | " + " | ".join(_fmt_ci(s[k]) for k in names) + " |")
    if result["comparisons"]:
        lines += ["", f"Paired differences vs `{result['baseline']}` (mean [95% CI], paired t-test p / Wilcoxon p):",
                  "", "| arm | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for arm, comp in result["comparisons"].items():
            cells = []
            for k in names:
                c = comp[k]
                ci = (f" [{c['diff_ci_low']:+.4f}, {c['diff_ci_high']:+.4f}]" if math.isfinite(c["diff_ci_low"])
                      else " (1 seed: no CI)")
                cells.append(f"{c['diff_mean']:+.4f}{ci} p={_p(c['t_pvalue'])}/{_p(c['wilcoxon_pvalue'])}")
            lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _p(p: float) -> str:
    return "n/a" if p is None or not math.isfinite(p) else f"{p:.3g}"


def _fmt_ci(s: dict) -> str:
    if not math.isfinite(s.get("ci_low", float("nan"))):
        return f"{s['mean']:.4f}"
    return f"{s['mean']:.4f} [{s['ci_low']:.4f}, {s['ci_high']:.4f}]"
