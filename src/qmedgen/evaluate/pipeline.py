"""End-to-end evaluation of a sample folder (used by ``qmedgen evaluate``/``utility`` and the benchmark harness)."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from qmedgen.errors import ConfigError, DataError, UserError
from qmedgen.evaluate.evaluation import EvalConfig, check_compatible, evaluate_images
from qmedgen.evaluate.extractors import load_extractor
from qmedgen.evaluate.features import Extractor
from qmedgen.evaluate.metrics import SmallSampleWarning
from qmedgen.evaluate.realdata import load_split
from qmedgen.evaluate.samples import load_samples, run_info
from qmedgen.evaluate.utility import UtilityConfig, run_utility
from qmedgen.fileio import write_json, write_text
from qmedgen.report.markdown import metrics_markdown, utility_markdown


def _labels_1d(ds) -> np.ndarray:
    y = np.asarray(ds.labels)
    return y[:, 0] if y.ndim == 2 and y.shape[1] == 1 else y


def extractor_tag(spec: str) -> str:
    if spec in ("inception", "domain") or spec.startswith("domain:"):
        return spec.split(":")[0]
    return Path(spec).stem


def resolve_dataset(data: str | None, info: dict | None, where: Path) -> str:
    if data:
        return data
    if info and info.get("dataset"):
        return str(info["dataset"])
    raise ConfigError(f"{where}: cannot tell which dataset these samples imitate; pass --data NAME")


def training_images(train_data: str, data: str, info: dict | None, size: int, root: Path | None,
                    classes: list[int] | None = None):
    """Images the generator was trained on (for memorisation) and a description.

    ``auto``: the run's recorded training indices (``indices.json``) when the samples come from a run, else
    nothing (memorisation is skipped rather than measured against images the generator may never have seen);
    ``none``: skip; ``NAME[:SPLIT]``: that split, restricted to the sampled classes.
    """
    if train_data == "none":
        return None, "none"
    if train_data == "auto":
        if not (info and "indices" in info):
            return None, "unknown (no run record; pass --train-data NAME[:SPLIT])"
        ds = load_split(info.get("dataset", data), info.get("split", "train"), size=size, root=root)
        idx = np.asarray(info["indices"], dtype=np.int64)
        if len(idx) and idx.max() >= len(ds):
            raise DataError(f"{info['run_dir']}/indices.json: index {idx.max()} out of range for "
                            f"{info.get('dataset')} ({len(ds)} images)")
        return ds.images[idx], f"run {info['run_dir']} ({len(idx)} images)"
    name, _, split = train_data.partition(":")
    ds = load_split(name, split or "train", size=size, root=root)
    y = _labels_1d(ds)
    if classes is not None and y.ndim == 1:
        return ds.images[np.isin(y, classes)], f"{train_data}, classes {classes}"
    return ds.images, train_data


@dataclass
class SampleEvalOptions:
    """What :func:`evaluate_samples` compares a sample folder with, and how (defaults: ``qmedgen evaluate``'s)."""

    data: str | None = None  # the dataset the samples imitate; None: the one recorded by their run
    split: str = "test"  # the real reference split
    extractor: str = "domain"  # feature space: domain (the dataset's domain classifier), inception or a PATH
    train_data: str = "auto"  # training images for memorisation: auto (the run's), none or NAME[:SPLIT]
    out: Path | None = None  # folder of metrics_<extractor>.json/.md; None: next to the samples
    metrics: EvalConfig = field(default_factory=EvalConfig)  # bootstrap sizes, seed, batch size, progress
    conditional: bool = True  # also score class-conditional accuracy with the domain classifier
    real_baseline: bool = True  # also score real images of another split (see evaluate_samples)
    size: int | None = None  # real-image size; None: the run's recorded size, else 28
    root: Path | None = None  # data root (default: the usual data locations)
    device: str | None = None
    extractor_obj: Extractor | None = None  # an already loaded extractor for ``extractor`` (the benchmark's cache)


def evaluate_samples(samples: Path, options: SampleEvalOptions | None = None) -> tuple[dict, Path, Path]:
    """Evaluate a sample folder or run; writes ``metrics_<extractor>.json`` and ``.md``; returns (result, json, md).

    The real images are loaded at ``options.size`` (default: the run's recorded size, else 28), never silently
    resized to whatever the samples happen to be: samples of another size or channel count are an error.
    ``options.real_baseline``: also score real images from another split (val, else train), drawn with the samples'
    class counts, against the same reference: the value a perfect generator would get at this sample size.
    """
    o = options or SampleEvalOptions()
    cfg, split, extractor, train_data = o.metrics, o.split, o.extractor, o.train_data
    conditional, root, device = o.conditional, o.root, o.device
    t0 = time.perf_counter()
    images, labels, src = load_samples(Path(samples))
    info = run_info(src)
    data = resolve_dataset(o.data, info, src)
    size = int(o.size or (info or {}).get("size") or 28)
    real = load_split(data, split, size=size, root=root)
    real_images, real_labels = real.images, _labels_1d(real)
    check_compatible(real_images, images, real_name=f"{data} {split} split", fake_name=f"samples in {src}")
    classes = None
    if real_labels.ndim == 1:  # a generator of some classes is compared with real images of those classes only
        classes = sorted(int(c) for c in np.unique(labels))
        unknown = sorted(set(classes) - set(np.unique(real_labels).tolist()))
        if unknown:
            raise DataError(f"samples in {src} have class labels {unknown} that {data} {split} does not have "
                            f"(classes {sorted(np.unique(real_labels).tolist())})")
        keep = np.isin(real_labels, classes)
        real_images, real_labels = real_images[keep], real_labels[keep]
    spec = f"domain:{data}" if extractor == "domain" else extractor
    ext = o.extractor_obj
    if ext is None and not spec.startswith("domain:"):  # fail fast on a bad extractor before any training
        ext = load_extractor(spec, device, size=size, root=root, progress=cfg.progress)
    domain = None
    if (conditional or spec == f"domain:{data}") and real_labels.ndim == 1:
        domain = load_extractor(f"domain:{data}", device, size=size, root=root, progress=cfg.progress)
    if ext is None:
        ext = domain if spec == f"domain:{data}" and domain is not None else load_extractor(
            spec, device, size=size, root=root, progress=cfg.progress)
    train_images, train_desc = training_images(train_data, data, info, size, root, classes)
    result = evaluate_images(real_images, real_labels, images, labels, ext, cfg, train_images=train_images,
                             domain=domain if conditional else None)
    if train_images is None and train_data != "none":
        result["flags"].append(f"memorisation not measured: training images {train_desc}")
    trained_on = (info or {}).get("split")
    if trained_on in ("all", split):
        result["flags"].append(f"the generator was trained on the {trained_on!r} split, which contains the "
                               f"reference {split!r} images: these metrics are not held-out")
    if o.real_baseline and real_labels.ndim == 1:
        result["real_baseline"] = _real_baseline(data, split, size, root, labels, real_images, real_labels, ext,
                                                 domain if conditional else None, cfg)
    result.update({"samples": str(src), "dataset": data, "real_split": split, "train_data": train_desc,
                   "classes": classes,
                   "run": info.get("run_dir") if info else None, "seconds": round(time.perf_counter() - t0, 1)})
    out = Path(o.out) if o.out is not None else (src.parent if src.is_file() else src)
    tag = extractor_tag(extractor)
    json_path = write_json(out / f"metrics_{tag}.json", result, nan_to_null=True)
    md_path = write_text(out / f"metrics_{tag}.md",
                                metrics_markdown(result, title=f"Sample quality: {src.name} vs {data} {split}"))
    return result, json_path, md_path


def _real_baseline(data, split, size, root, fake_labels, real_images, real_labels, ext, domain, cfg) -> dict | None:
    """Metrics of real images (another split, same class counts as the samples) against the reference set."""
    other = None
    for cand in ("val", "train"):
        if cand == split:
            continue
        try:
            other = load_split(data, cand, size=size, root=root)
            break
        except UserError:
            continue
    if other is None:
        return None
    y = _labels_1d(other)
    rng = np.random.default_rng(cfg.seed + 99)
    pick = []
    for c, n in zip(*np.unique(fake_labels, return_counts=True)):
        pool = np.flatnonzero(y == c)
        pick.append(rng.choice(pool, size=min(n, len(pool)), replace=False))
    pick = np.sort(np.concatenate(pick))
    if len(pick) < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallSampleWarning)
        res = evaluate_images(real_images, real_labels, other.images[pick], y[pick], ext,
                              replace(cfg, n_boot=0, progress=False), domain=domain)
    return {"split": other.info.split, "n": len(pick), "metrics": {k: v["value"] for k, v in res["metrics"].items()}}


def utility_for_samples(samples: Path | None, data: str | None = None, n_per_class: int | None = None,
                        subset_seed: int = 0, split: str = "test", cfg: UtilityConfig | None = None,
                        out: Path | None = None, root: Path | None = None, size: int | None = None,
                        real_indices: np.ndarray | None = None, cache: dict | None = None
                        ) -> tuple[dict, Path, Path]:
    """Downstream-utility study for a sample folder (or real-only arms without samples); writes JSON and markdown.

    The real training subset is, in order of preference: ``real_indices``; ``n_per_class`` drawn with
    ``subset_seed`` from the training split; the run's recorded training indices; the full training split.
    """
    cfg = cfg or UtilityConfig()
    syn, src, info = None, None, None
    if samples is not None:
        images, labels, src = load_samples(Path(samples))
        syn = (images, labels)
        info = run_info(src)
    data = resolve_dataset(data, info, Path(samples) if samples else Path("."))
    size = int(size or (info or {}).get("size") or 28)
    train = load_split(data, "train", size=size, root=root)
    test = load_split(data, split, size=size, root=root)
    y_train = _labels_1d(train)
    if real_indices is not None:
        idx = np.asarray(real_indices, dtype=np.int64)
        how = f"{len(idx)} given indices"
    elif n_per_class is not None:
        from qmedgen.evaluate.realdata import few_shot

        idx = few_shot(y_train, n_per_class, subset_seed)
        how = f"{n_per_class} per class, subset seed {subset_seed}"
    elif info and "indices" in info and info.get("split", "train") == "train":
        idx = np.asarray(info["indices"], dtype=np.int64)
        how = f"the generator's training images ({len(idx)}, from {info['run_dir']})"
    else:
        idx = np.arange(len(train))
        how = "full training split"
    cfg = replace(cfg, extra={**cfg.extra, "real_subset": how})
    result = run_utility((train.images[idx], y_train[idx]), (test.images, _labels_1d(test)), train.info.n_classes,
                         train.info.task, syn, cfg, dataset=data, cache=cache)
    result.update({"dataset": data, "split": split, "samples": str(src) if src else None})
    out = Path(out) if out is not None else (src.parent if src is not None and src.is_file() else src)
    if out is None:
        raise ConfigError("utility without samples needs --out DIR")
    json_path = write_json(out / "utility.json", result, nan_to_null=True)
    md = f"## Downstream utility on {data} ({split} split)\n\nReal training subset: {how}.\n\n"
    md += utility_markdown(result)
    return result, json_path, write_text(out / "utility.md", md)
