"""``qmedgen augment``: a few-shot image set in, a filtered synthetic class-folder dataset and a utility report out.

The user's job in one command. Stages, each recorded in ``OUT/augment-state.json`` as it finishes:

1. ``prepare``: load the images (``folder:PATH`` or a dataset name, optionally a seeded few-shot draw with
   ``--n-per-class``), check them, and split off a stratified **holdout** (``--holdout``, at least one image per
   class). The holdout exists only to measure, at the end, whether the synthetic images help a classifier on the
   user's own data; it is never given to the generator, nor to the selection classifier. The remaining images
   are written as a class-folder dataset under ``OUT/work/train-images`` and that folder, nothing else, is what
   the generator trains on (the run's ``indices.json`` indexes it; ``OUT/work/split.json`` maps it back to the
   input images).
2. ``train``: train the generator (``--model``: a model, preset or YAML, as ``qmedgen train`` takes it) through
   :func:`qmedgen.train.api.train_or_resume`, under ``OUT/runs``; a killed training continues from its checkpoint.
3. ``sample``: draw ``--oversample`` x ``--n-per-class-synthetic`` images per class, so that enough remain after
   filtering.
4. ``filter``: :func:`qmedgen.evaluate.selection.select_synthetic` rejects off-class images and near copies of
   the training images.
5. ``write``: the first ``--n-per-class-synthetic`` kept images of each class (in sampling order, so the choice is
   not biased towards the most prototypical ones) go to ``OUT/synthetic/<class>/<NNNNN>.png``; ``OUT/manifest.json``
   records the generator, its config and every candidate image with its scores and fate.
6. ``utility``: :func:`qmedgen.evaluate.utility.run_utility` trains classifiers on the generator's real images
   (arm ``real``) and on them plus every written synthetic image (``real+syn@R``), evaluated on the holdout;
   ``OUT/utility.json`` and ``OUT/utility.md``.

Re-running the same command skips finished stages (a stage whose output has disappeared is redone, and so is
everything after it). A different configuration in the same ``OUT`` is an error; ``--force`` starts over.
Every file is written atomically; folders are built next to their final place and swapped in.

Class folders under ``OUT/synthetic`` (and ``OUT/work/train-images``) are the class names made file-safe; when
that would change their sorted order they are prefixed with the class id, so ``folder:OUT/synthetic`` loads with
the same label ids as the input.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qmedgen.errors import ConfigError, DataError, UserError
from qmedgen.fileio import atomic_path, read_json, write_json, write_text

DEFAULT_MODEL = "mediqgan-augment"  # the default generator (28 px, linear encoder, mode seeking); named only here
STAGES = ("prepare", "train", "sample", "filter", "write", "utility")
STATE_FORMAT = "qmedgen-augment-state/1"
MANIFEST_FORMAT = "qmedgen-augment-manifest/1"
# --set keys that would undo the guarantees of this command (the holdout, the output layout); flags cover the rest.
RESERVED_KEYS = {
    "data.name": "the input is the DATA argument", "data.split": "the input is the DATA argument",
    "data.root": "the input is the DATA argument", "data.n_per_class": "use --n-per-class",
    "data.n_total": "use --n-per-class", "data.classes": "every class of the input is used",
    "data.subset_seed": "use --seed", "data.size": "use --size", "train.steps": "use --steps",
    "train.seed": "use --seed", "train.out_dir": "runs go under OUT/runs", "train.device": "use --device",
}


@dataclass
class AugmentConfig:
    """Everything ``qmedgen augment`` does; the CLI flags map one to one (see ``qmedgen augment --help``)."""

    data: str
    out: Path
    n_per_class: int | None = None
    model: str = DEFAULT_MODEL
    steps: int | None = None            # None: the model's own (preset) value
    size: int | None = None             # None: the model's own (preset) value
    n_per_class_synthetic: int = 100
    oversample: float = 2.0
    holdout: float = 0.2
    seed: int = 0
    overrides: tuple[str, ...] = ()
    filter: bool = True
    # 0: near copies only. A 0.5 confidence floor was measured to cost 3.4 points of balanced accuracy on
    # BloodMNIST 10/class (it dropped 62 % of the samples; benchmarks/RESULTS.md), so it is opt-in.
    min_confidence: float = 0.0
    min_nn_quantile: float = 0.05
    filter_epochs: float = 100
    utility: bool = True
    utility_seeds: tuple[int, ...] = (0, 1, 2)
    utility_epochs: float = 100
    utility_augment: tuple[str, ...] | None = None   # None: chosen on validation (qmedgen.evaluate.utility)
    device: str = "auto"
    progress: bool = True
    force: bool = False
    log: Any = field(default=print, repr=False)  # where stage messages go (tests collect them)

    def validate(self) -> None:
        if not 0.0 < self.holdout < 1.0:
            raise ConfigError(f"--holdout must be a fraction in (0, 1), got {self.holdout}")
        if self.n_per_class_synthetic < 1:
            raise ConfigError(f"--n-per-class-synthetic must be >= 1, got {self.n_per_class_synthetic}")
        if self.oversample < 1.0:
            raise ConfigError(f"--oversample must be >= 1 (samples drawn per image kept), got {self.oversample}")
        if self.n_per_class is not None and self.n_per_class < 1:
            raise ConfigError(f"--n-per-class must be >= 1, got {self.n_per_class}")
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"--steps must be >= 1, got {self.steps}")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ConfigError(f"--min-confidence must be in [0, 1], got {self.min_confidence}")
        if not 0.0 <= self.min_nn_quantile <= 1.0:
            raise ConfigError(f"--min-nn-quantile must be in [0, 1], got {self.min_nn_quantile}")
        if self.utility and not self.utility_seeds:
            raise ConfigError("--utility-seeds needs at least one seed")
        for text in self.overrides:
            key = text.split("=", 1)[0].strip()
            if key in RESERVED_KEYS:
                raise ConfigError(f"--set {key}=... is not allowed in qmedgen augment: {RESERVED_KEYS[key]}")

    @property
    def n_sampled_per_class(self) -> int:
        """Images drawn per class: oversampled when filtering, so that enough survive."""
        return math.ceil(self.oversample * self.n_per_class_synthetic) if self.filter else self.n_per_class_synthetic

    def device_or_none(self) -> str | None:
        return None if self.device in (None, "", "auto") else self.device


# ----------------------------------------------------------------------------------------------------- input

@dataclass
class FewShotData:
    """The user's images (after the optional few-shot draw), as uint8 NHWC with 1-D labels."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    task: str
    sources: list[str]          # per image: its file (relative to the folder) or "train:<index>" in the dataset
    folder: Path | None

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def fingerprint(self) -> str:
        """What the results depend on in the input: the pixels, labels and class names (not where they live)."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.images).tobytes())
        h.update(np.ascontiguousarray(self.labels).tobytes())
        h.update(json.dumps(self.class_names).encode())
        return h.hexdigest()[:24]


def _folder_path(data: str) -> Path | None:
    if not data.startswith("folder:"):
        return None
    path = data[len("folder:"):]
    if not path:
        raise DataError("folder dataset needs a path: 'folder:PATH' with one sub-folder of images per class")
    return Path(path).expanduser()


def _folder_files(root: Path) -> list[Path]:
    from qmedgen.data.folder import scan_folder

    tree = scan_folder(root)
    if "all" in tree:
        part = tree["all"]
    elif "train" in tree:
        part = tree["train"]
    else:
        raise DataError(f"{root}: has split folders {sorted(tree)} but no 'train'; qmedgen augment reads "
                        f"{root}/<class>/<images> or {root}/train/<class>/<images>")
    return [f for _, files in sorted(part.items()) for f in files]


def check_image_files(root: Path) -> dict:
    """Open every image header: an unreadable file, or images of different sizes or channel counts, is a
    :class:`DataError` naming the file (for mixed inputs, an example of each kind).

    The folder loader would otherwise crop and resize every image to one square size and convert them to one
    channel count silently; for a user's own few-shot set that usually means a mistake (a stray thumbnail, a
    greyscale image among colour ones), which would quietly distort both the generator and the report.
    Returns ``{"size": (w, h), "channels": c, "n": n}``."""
    from PIL import Image, UnidentifiedImageError

    from qmedgen.data.folder import _GRAY_MODES

    sizes: dict[tuple[int, int], Path] = {}
    channels: dict[int, Path] = {}
    files = _folder_files(root)
    for f in files:
        try:
            with Image.open(f) as img:
                size, mode, bands = img.size, img.mode, img.getbands()
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
            raise DataError(f"{f}: cannot read image ({exc}); fix or remove this file") from exc
        sizes.setdefault(size, f)
        channels.setdefault(1 if mode in _GRAY_MODES else 4 if "A" in bands else 3, f)
    if len(sizes) > 1:
        examples = "; ".join(f"{w}x{h} (e.g. {p.relative_to(root)})" for (w, h), p in sorted(sizes.items()))
        raise DataError(f"{root}: images have different sizes: {examples}. Bring them to one size first (qmedgen "
                        "would otherwise crop and resize them silently)")
    if len(channels) > 1:
        examples = "; ".join(f"{c} channel(s) (e.g. {p.relative_to(root)})" for c, p in sorted(channels.items()))
        raise DataError(f"{root}: images have different channel counts: {examples}. Convert them to one format "
                        "first (all greyscale or all RGB)")
    return {"size": next(iter(sizes)), "channels": next(iter(channels)), "n": len(files)}


def load_input(data: str, size: int, n_per_class: int | None = None, seed: int = 0,
               use_cache: bool = True) -> FewShotData:
    """Load the input images at ``size``: ``folder:PATH`` (checked with :func:`check_image_files`; split layouts
    use their ``train`` part) or a dataset name (its ``train`` split); then, with ``n_per_class``, the seeded
    stratified draw of ``qmedgen train --n-per-class`` (:func:`qmedgen.data.few_shot_subset`)."""
    from qmedgen.data import few_shot_subset, load_dataset
    from qmedgen.data.folder import load_folder

    folder = _folder_path(data)
    if folder is not None:
        check_image_files(folder)
        ds = load_folder(folder, split="train", size=size, use_cache=use_cache)
        sources = list(ds.info.extra["files"])
    else:
        ds = load_dataset(data, split="train", size=size)
        sources = [f"train:{int(i)}" for i in ds.indices]
    labels = np.asarray(ds.labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or ds.info.task == "multi-label":
        raise ConfigError(f"{data} is multi-label; qmedgen augment needs one class per image")
    images = ds.images
    if n_per_class is not None:
        idx = few_shot_subset(labels, n_per_class=n_per_class, seed=seed)
        images, labels, sources = images[idx], labels[idx], [sources[i] for i in idx]
    return FewShotData(name=data, images=images, labels=labels.astype(np.int64), class_names=list(ds.info.class_names),
                       task=ds.info.task, sources=sources, folder=folder)


def holdout_split(labels: np.ndarray, class_names: list[str], fraction: float, seed: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Stratified ``(generator, holdout)`` indices: per class ``round(fraction * n)`` images, at least one, are
    held out, seeded by ``seed``. Every class must keep at least 2 images for the generator (one image is not a
    distribution to learn, and the near-copy threshold and classifier validation split need two); otherwise a
    :class:`DataError` names every such class with its counts."""
    rng = np.random.default_rng(seed + 7_919)
    train, hold, problems = [], [], []
    for c, name in enumerate(class_names):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = max(1, math.floor(fraction * len(idx) + 0.5))
        if len(idx) - k < 2:
            problems.append(f"class {name!r} has {len(idx)} image(s): {min(k, len(idx))} held out leaves "
                            f"{max(len(idx) - k, 0)}")
        hold.append(idx[:k])
        train.append(idx[k:])
    if problems:
        raise DataError("too few images after the holdout (the generator needs at least 2 per class; at least 1 per "
                        f"class is held out for the utility report): {'; '.join(problems)}. Add images to these "
                        "classes or lower --holdout")
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(hold))


def class_folder_names(class_names: list[str]) -> list[str]:
    """File-safe class folder names whose sorted order is the class-id order (prefixed with the id when needed),
    so that the folder loader gives every class back its id."""
    safe = []
    for k, name in enumerate(class_names):
        s = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._")[:48]
        safe.append(s or f"class_{k}")
    if len(set(safe)) == len(safe) and safe == sorted(safe):
        return safe
    width = len(str(len(safe) - 1))
    return [f"{k:0{width}d}_{s}" for k, s in enumerate(safe)]


def check_out_dir(out: Path, data: str) -> None:
    """``OUT`` must not be the input folder or inside it (qmedgen never writes into the user's data), and the input
    must not sit where this command writes (``OUT/runs``, ``OUT/work``, ``OUT/synthetic``)."""
    folder = _folder_path(data)
    if folder is None:
        return
    inp, res = folder.resolve(), Path(out).expanduser().resolve()
    if res == inp or inp in res.parents:
        raise ConfigError(f"--out {out} is {'the input folder' if res == inp else 'inside the input folder'} {folder}; "
                          "choose a directory outside it (qmedgen augment never writes into its input)")
    for sub in ("runs", "work", "synthetic"):
        if inp == res / sub or (res / sub) in inp.parents:
            raise ConfigError(f"the input folder {folder} lies inside {res / sub}, which qmedgen augment writes; "
                              "choose another --out")


# ---------------------------------------------------------------------------------------------------- model

def generator_overrides(cfg: AugmentConfig, train_dir: Path, size: int) -> list[str]:
    """The user's ``--set`` first, then what this command fixes: train on ``train_dir`` (all of it, nothing else)."""
    fixed = {"data.name": f"folder:{train_dir}", "data.split": "train", "data.root": None, "data.size": size,
             "data.n_per_class": None, "data.n_total": None, "data.classes": None, "data.subset_seed": 0,
             "train.seed": cfg.seed}
    if cfg.steps is not None:
        fixed["train.steps"] = cfg.steps
    if cfg.device_or_none() is not None:
        fixed["train.device"] = cfg.device
    return [*cfg.overrides, *(f"{k}={json.dumps(v)}" for k, v in fixed.items())]


def resolve_model(cfg: AugmentConfig, train_dir: Path) -> tuple[Any, Any, int]:
    """(family, resolved config, size): an unknown model or a bad ``--set`` fails here, before anything runs."""
    from qmedgen.train.api import resolve_config

    _, base = resolve_config(cfg.model, list(cfg.overrides))
    size = int(cfg.size or base.data.size)
    family, config = resolve_config(cfg.model, generator_overrides(cfg, train_dir, size))
    return family, config, size


# ---------------------------------------------------------------------------------------------------- state

class State:
    """``OUT/augment-state.json``: the configuration (and its hash) and one record per finished stage."""

    def __init__(self, out: Path, config: dict, force: bool) -> None:
        self.path = out / "augment-state.json"
        self.config = config
        self.hash = hashlib.sha256(json.dumps({k: v for k, v in config.items() if k != "data"}, sort_keys=True,
                                              default=str).encode()).hexdigest()[:16]
        self.stages: dict[str, dict] = {}
        self.reset = False
        if self.path.is_file():
            saved = read_json(self.path)
            if saved.get("format") != STATE_FORMAT:
                raise UserError(f"{self.path}: not a qmedgen augment state file; choose another --out")
            if saved.get("config_hash") == self.hash and not force:
                self.stages = dict(saved.get("stages") or {})
            elif force:
                self.reset = True
            else:
                old = saved.get("config") or {}
                diff = [f"{k}: {old.get(k)!r} -> {v!r}"[:160] for k, v in config.items()
                        if k != "data" and old.get(k) != v]
                raise ConfigError(f"{out} holds an augment run with another configuration ({'; '.join(diff[:6])}); "
                                  "use another --out, or --force to start over in this one")

    def done(self, stage: str) -> bool:
        return stage in self.stages

    def record(self, stage: str, info: dict) -> None:
        self.stages[stage] = info
        self.save()

    def drop_from(self, stage: str) -> None:
        for s in STAGES[STAGES.index(stage):]:
            self.stages.pop(s, None)

    def save(self) -> None:
        write_json(self.path, {"format": STATE_FORMAT, "config_hash": self.hash, "config": self.config,
                               "stages": self.stages})


def _generator_config(config: Any) -> dict:
    """The resolved generator config as JSON (so an edited preset or YAML file counts as a change), without the
    device (a run may move between machines) and the training folder's absolute path (OUT may move)."""
    from qmedgen.config import to_dict
    from qmedgen.fileio import json_default

    d = json.loads(json.dumps(to_dict(config), default=json_default))
    d.get("train", {}).pop("device", None)
    d.get("data", {}).pop("name", None)
    return d


def _state_config(cfg: AugmentConfig, data: FewShotData, model: str, steps: int, size: int,
                  generator: dict) -> dict:
    """What the outputs depend on (floats normalised, so 2 and 2.0 are the same setting); ``data`` is shown in
    errors but not hashed: the input's content fingerprint stands for it, wherever the input lives."""
    return {"data": cfg.data, "data_fingerprint": data.fingerprint(), "n_per_class": cfg.n_per_class,
            "model": model, "overrides": list(cfg.overrides), "steps": steps, "size": size,
            "holdout": float(cfg.holdout), "seed": cfg.seed, "n_per_class_synthetic": cfg.n_per_class_synthetic,
            "oversample": float(cfg.oversample), "filter": cfg.filter, "min_confidence": float(cfg.min_confidence),
            "min_nn_quantile": float(cfg.min_nn_quantile), "filter_epochs": float(cfg.filter_epochs),
            "utility": cfg.utility, "utility_seeds": [int(s) for s in cfg.utility_seeds],
            "utility_epochs": float(cfg.utility_epochs),
            "utility_augment": None if cfg.utility_augment is None else list(cfg.utility_augment),
            "generator_config": generator}


def _replace_dir(tmp: Path, final: Path) -> None:
    """Swap a fully written folder into place (the old one, if any, is removed only after the swap)."""
    old = final.with_name(f".{final.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)


def _fresh_tmp(final: Path) -> Path:
    tmp = final.with_name(f".{final.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


# ---------------------------------------------------------------------------------------------------- stages

def _stage_prepare(out: Path, data: FewShotData, train_idx: np.ndarray, hold_idx: np.ndarray) -> dict:
    from qmedgen.images import save_png

    folders = class_folder_names(data.class_names)
    final = out / "work" / "train-images"
    tmp = _fresh_tmp(final)
    counters = [0] * data.n_classes
    train_rows = []
    for i in train_idx:  # the folder loader reads classes in sorted-folder order, files in sorted-name order
        c = int(data.labels[i])
        rel = f"{folders[c]}/{counters[c]:05d}.png"
        counters[c] += 1
        save_png(data.images[i], tmp / rel)
        train_rows.append({"file": rel, "label": c, "source": data.sources[i], "input_index": int(i)})
    _replace_dir(tmp, final)
    train_rows.sort(key=lambda r: r["file"])
    write_json(out / "work" / "split.json", {
        "data": data.name, "fingerprint": data.fingerprint(),
        "train": train_rows,
        "holdout": [{"label": int(data.labels[i]), "source": data.sources[i], "input_index": int(i)}
                    for i in hold_idx]})
    return {"train_dir": str(final), "n_train": len(train_idx), "n_holdout": len(hold_idx)}


def _check_run(run_dir: Path, data: FewShotData, n_train: int) -> None:
    """The run must have trained on every generator image of every class, with the input's class ids."""
    rec = read_json(run_dir / "indices.json")
    if list(rec.get("class_ids", [])) != list(range(data.n_classes)) or len(rec.get("indices", [])) != n_train:
        raise UserError(f"{run_dir}/indices.json: the run trained on {len(rec.get('indices', []))} images of classes "
                        f"{rec.get('class_ids')}, expected {n_train} images of classes 0..{data.n_classes - 1}")


def _stage_filter(out: Path, cfg: AugmentConfig, real: tuple[np.ndarray, np.ndarray], samples: Path,
                  n_classes: int) -> dict:
    from qmedgen.evaluate.samples import load_npz
    from qmedgen.evaluate.selection import select_synthetic

    syn, syn_labels = load_npz(samples / "samples.npz")
    with warnings.catch_warnings():
        if not cfg.filter:  # nothing is rejected below, so an "empty class" warning would be wrong
            warnings.simplefilter("ignore", UserWarning)
        sel = select_synthetic(real[0], real[1], syn, syn_labels, n_classes, min_confidence=cfg.min_confidence,
                               min_nn_quantile=cfg.min_nn_quantile, seed=cfg.seed, device=cfg.device_or_none(),
                               progress=cfg.progress, classifier_epochs=cfg.filter_epochs,
                               filter_confidence=cfg.filter)
    if not cfg.filter:  # --no-filter: distances are still computed and reported, nothing is rejected
        sel.keep[:] = True
        sel.reasons = [() for _ in sel.reasons]
        sel.floored, sel.empty_classes = {}, []
    path = out / "work" / "selection.npz"
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, keep=sel.keep, confidence=sel.confidence, nn_distance=sel.nn_distance, nn_index=sel.nn_index,
                 labels=sel.labels, reasons=np.asarray([",".join(r) for r in sel.reasons], dtype=str))
    summary = sel.summary()
    summary["enabled"] = cfg.filter
    return {"file": str(path), "summary": summary}


def _load_selection(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _written_indices(keep: np.ndarray, labels: np.ndarray, n_per_class: int) -> np.ndarray:
    """The first ``n_per_class`` kept images of each class, in sampling order (unbiased among those kept)."""
    chosen = [np.flatnonzero(keep & (labels == c))[:n_per_class] for c in np.unique(labels)]
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)


def _stage_write(out: Path, cfg: AugmentConfig, data: FewShotData, state: State, family: str,
                 n_train_per_class: np.ndarray, n_hold_per_class: np.ndarray) -> dict:
    from qmedgen.evaluate.samples import load_npz
    from qmedgen.images import save_png
    from qmedgen.train.api import list_presets

    samples = Path(state.stages["sample"]["samples"])
    syn, syn_labels = load_npz(samples / "samples.npz")
    sel = _load_selection(Path(state.stages["filter"]["file"]))
    chosen = set(_written_indices(sel["keep"], sel["labels"], cfg.n_per_class_synthetic).tolist())
    folders = class_folder_names(data.class_names)
    final = out / "synthetic"
    tmp = _fresh_tmp(final)
    counters = [0] * data.n_classes
    sample_counters = [0] * data.n_classes
    rows = []
    for i in range(len(syn)):
        c = int(syn_labels[i])
        sample_file = f"class_{c}/{sample_counters[c]:05d}.png"  # the name qmedgen.images.write_samples gave it
        sample_counters[c] += 1
        file = None
        if i in chosen:
            file = f"{folders[c]}/{counters[c]:05d}.png"
            counters[c] += 1
            save_png(syn[i], tmp / file)
        conf = float(sel["confidence"][i])
        rows.append({"file": None if file is None else f"synthetic/{file}",
                     "sample_file": str((samples / sample_file).relative_to(out)), "index": i, "label": c,
                     "class_name": data.class_names[c], "confidence": conf if math.isfinite(conf) else None,
                     "nn_distance": float(sel["nn_distance"][i]), "kept": bool(sel["keep"][i]),
                     "written": file is not None, "reasons": [r for r in str(sel["reasons"][i]).split(",") if r]})
    _replace_dir(tmp, final)
    run_dir = Path(state.stages["train"]["run_dir"])
    summary = state.stages["filter"]["summary"]
    classes = []
    for c, name in enumerate(data.class_names):
        pc = summary["per_class"].get(str(c), summary["per_class"].get(c, {}))
        classes.append({"id": c, "name": name, "folder": folders[c], "n_real_generator": int(n_train_per_class[c]),
                        "n_holdout": int(n_hold_per_class[c]), "n_sampled": int((syn_labels == c).sum()),
                        "n_kept": pc.get("kept", 0), "kept_by_floor": pc.get("kept_by_floor", 0),
                        "n_written": counters[c]})
    manifest = {
        "format": MANIFEST_FORMAT, "data": cfg.data, "n_per_class": cfg.n_per_class,
        "classes": classes,
        "generator": {"model": cfg.model, "family": family,
                      "preset": cfg.model if cfg.model in list_presets() else None, "seed": cfg.seed,
                      "steps": state.config["steps"], "size": state.config["size"], "overrides": list(cfg.overrides),
                      "run_dir": str(run_dir), "config": str(run_dir / "config.json")},
        "sampling": {"n_per_class": cfg.n_sampled_per_class, "oversample": cfg.oversample if cfg.filter else 1.0,
                     "seed": cfg.seed, "samples": str(samples)},
        "filter": summary,
        "split": str(out / "work" / "split.json"),
        "images": rows,
    }
    write_json(out / "manifest.json", manifest)
    shortfall = {data.class_names[c]: counters[c] for c in range(data.n_classes)
                 if counters[c] < cfg.n_per_class_synthetic and (syn_labels == c).any()}
    return {"n_written": int(sum(counters)), "per_class": counters, "shortfall": shortfall}


def _stage_utility(out: Path, cfg: AugmentConfig, data: FewShotData, real: tuple[np.ndarray, np.ndarray],
                   holdout: tuple[np.ndarray, np.ndarray], state: State) -> dict:
    from qmedgen.evaluate.samples import load_npz
    from qmedgen.evaluate.utility import UtilityConfig, run_utility
    from qmedgen.report.markdown import utility_markdown

    manifest = read_json(out / "manifest.json")
    idx = np.asarray([r["index"] for r in manifest["images"] if r["written"]], dtype=np.int64)
    syn, syn_labels = load_npz(Path(state.stages["sample"]["samples"]) / "samples.npz")
    if len(idx) == 0:
        raise DataError("no synthetic image survived the filter, so there is nothing to evaluate; see "
                        f"{out / 'manifest.json'} (lower --min-confidence, or train longer)")
    ratio = math.ceil(len(idx) / len(real[0]) * 100) / 100  # rounded up: every written image is used
    ucfg = UtilityConfig(arms=("real", "real+syn", "syn>real"), ratios=(ratio,), seeds=tuple(cfg.utility_seeds),
                         epochs=cfg.utility_epochs, augment=cfg.utility_augment, progress=cfg.progress,
                         device=cfg.device_or_none(), baseline="real",
                         extra={"real_subset": f"the generator's {len(real[0])} real images",
                                "test_set": f"holdout of {len(holdout[0])} of the user's images"})
    dataset = data.name if data.folder is None else "folder"
    result = run_utility(real, holdout, data.n_classes, data.task, (syn[idx], syn_labels[idx]), ucfg,
                         dataset=dataset)
    result.update({"data": cfg.data, "holdout_per_class": np.bincount(holdout[1], minlength=data.n_classes).tolist(),
                   "n_synthetic": len(idx)})
    write_json(out / "utility.json", result)
    md = (f"## Does the synthetic data help? ({cfg.data})\n\n"
          f"Classifiers trained on the generator's {len(real[0])} real images (`real`), and on them plus the "
          f"{len(idx)} written synthetic images (`real+syn@{ratio:g}`: {ratio:g}x as many synthetic as real "
          f"images), and pre-trained on the synthetic images then fine-tuned on the real ones (`syn>real`, the "
          f"use that helped most in qmedgen's own benchmark), evaluated on {len(holdout[0])} held-out images of "
          "your own that neither the generator nor any "
          f"classifier saw; seeds {list(cfg.utility_seeds)}. With this few test images the intervals are wide: read "
          "the paired differences, and treat a small gain as no gain.\n\n" + utility_markdown(result))
    write_text(out / "utility.md", md)
    return {"summary": {arm: {k: v["mean"] for k, v in s.items()} for arm, s in result["summary"].items()},
            "table": md}


# ---------------------------------------------------------------------------------------------------- driver

def _prepare_inputs(cfg: AugmentConfig, use_cache: bool = True):
    cfg.validate()
    out = Path(cfg.out).expanduser().resolve()
    check_out_dir(out, cfg.data)
    train_dir = out / "work" / "train-images"
    family, config, size = resolve_model(cfg, train_dir)
    data = load_input(cfg.data, size, cfg.n_per_class, cfg.seed, use_cache=use_cache)
    train_idx, hold_idx = holdout_split(data.labels, data.class_names, cfg.holdout, cfg.seed)
    return out, train_dir, family, config, size, data, train_idx, hold_idx


def run_augment(cfg: AugmentConfig) -> dict:
    """Run (or resume) every stage; returns ``{"out", "manifest", "synthetic", "utility", "stages"}``."""
    from tqdm.auto import tqdm

    from qmedgen.train import api

    out, train_dir, family, config, size, data, train_idx, hold_idx = _prepare_inputs(cfg)
    steps = int(config.train.steps)
    state = State(out, _state_config(cfg, data, cfg.model, steps, size, _generator_config(config)), cfg.force)
    if state.reset:
        for name in ("work", "synthetic"):
            if (out / name).exists():
                shutil.rmtree(out / name)
        for name in ("manifest.json", "utility.json", "utility.md"):
            (out / name).unlink(missing_ok=True)
    real = (data.images[train_idx], data.labels[train_idx])
    holdout = (data.images[hold_idx], data.labels[hold_idx])
    n_tr = np.bincount(real[1], minlength=data.n_classes)
    n_ho = np.bincount(holdout[1], minlength=data.n_classes)
    log = cfg.log

    def valid(stage: str) -> bool:
        rec = state.stages.get(stage)
        if rec is None:
            return False
        if stage == "prepare":
            return Path(rec["train_dir"]).is_dir() and (out / "work" / "split.json").is_file()
        if stage == "train":
            status = Path(rec["run_dir"]) / "status.json"
            return status.is_file() and read_json(status).get("state") == "finished"
        if stage == "sample":
            return (Path(rec["samples"]) / "samples.npz").is_file()
        if stage == "filter":
            return Path(rec["file"]).is_file()
        if stage == "write":
            return (out / "synthetic").is_dir() and (out / "manifest.json").is_file()
        return (out / "utility.json").is_file() and (out / "utility.md").is_file()

    stages = [s for s in STAGES if s != "utility" or cfg.utility]
    bar = tqdm(total=len(stages), desc="augment", unit="stage", disable=not cfg.progress)
    redo = False
    for stage in stages:
        bar.set_description(f"augment: {stage}")
        if not redo and valid(stage):
            log(f"[augment] {stage}: done before (recorded in {state.path.name}), skipped")
            bar.update(1)
            continue
        redo = True
        state.drop_from(stage)
        t0 = time.perf_counter()
        if stage == "prepare":
            info = _stage_prepare(out, data, train_idx, hold_idx)
            log(f"[augment] prepare: {len(train_idx)} images for the generator, {len(hold_idx)} held out "
                f"({out / 'work' / 'split.json'})")
        elif stage == "train":
            overrides = generator_overrides(cfg, train_dir, size)
            if cfg.force:
                run_dir = api.train(cfg.model, overrides, run_root=out / "runs", progress=cfg.progress)
            else:
                run_dir = api.train_or_resume(cfg.model, overrides, out / "runs", progress=cfg.progress)
            _check_run(run_dir, data, len(train_idx))
            info = {"run_dir": str(run_dir)}
            log(f"[augment] train: {run_dir}")
        elif stage == "sample":
            samples = api.sample(Path(state.stages["train"]["run_dir"]), n_per_class=cfg.n_sampled_per_class,
                                 out=out / "work" / "samples", seed=cfg.seed, device=cfg.device,
                                 progress=cfg.progress)
            info = {"samples": str(samples), "n_per_class": cfg.n_sampled_per_class}
            log(f"[augment] sample: {cfg.n_sampled_per_class} per class in {samples}")
        elif stage == "filter":
            info = _stage_filter(out, cfg, real, Path(state.stages["sample"]["samples"]), data.n_classes)
            s = info["summary"]
            log(f"[augment] filter: kept {s['kept']} of {s['n']} (rejected: {s['per_reason']}; near-copy threshold "
                f"{s['near_copy_threshold']:.4f})" + (f"; class floor used for {s['floored']}" if s["floored"] else "")
                + (f"; classes with no image: {s['empty_classes']}" if s["empty_classes"] else ""))
        elif stage == "write":
            info = _stage_write(out, cfg, data, state, family.name, n_tr, n_ho)
            log(f"[augment] write: {info['n_written']} images in {out / 'synthetic'}, manifest {out / 'manifest.json'}")
            if info["shortfall"]:
                log(f"[augment] fewer than {cfg.n_per_class_synthetic} images survived the filter for: "
                    f"{info['shortfall']} (raise --oversample or lower --min-confidence)")
        else:
            info = _stage_utility(out, cfg, data, real, holdout, state)
        info["seconds"] = round(time.perf_counter() - t0, 2)
        state.record(stage, info)
        bar.update(1)
    bar.close()
    if cfg.utility:
        log(state.stages["utility"]["table"])
    return {"out": out, "manifest": out / "manifest.json", "synthetic": out / "synthetic",
            "utility": out / "utility.json" if cfg.utility else None, "stages": dict(state.stages)}


# ---------------------------------------------------------------------------------------------------- dry run

def plan_augment(cfg: AugmentConfig) -> dict:
    """What :func:`run_augment` would do, with a time estimate; writes nothing (not even the folder cache).

    The estimate is measured, not a constant: two generator training steps on a throwaway trainer built from
    the in-memory images, one sampling batch, and three classifier steps, each scaled by the step counts the run
    would take (filter classifier, and per utility seed the policy search plus both arms)."""
    from qmedgen.evaluate.utility import UtilityConfig, candidate_policies, steps_for_epochs

    out, _train_dir, family, config, size, data, train_idx, hold_idx = _prepare_inputs(cfg, use_cache=False)
    n_tr = np.bincount(data.labels[train_idx], minlength=data.n_classes)
    n_ho = np.bincount(data.labels[hold_idx], minlength=data.n_classes)
    gen_s, sample_s, clf_s, device = _probe(family, config, data, train_idx, cfg)
    n_real = len(train_idx)
    n_syn = cfg.n_per_class_synthetic * data.n_classes
    n_sampled = cfg.n_sampled_per_class * data.n_classes
    bs = 64
    filter_steps = steps_for_epochs(n_real, cfg.filter_epochs, bs) if cfg.filter else 0
    dataset = data.name if data.folder is None else "folder"
    n_pol = len(candidate_policies(dataset, data.images.shape[-1])) if cfg.utility_augment is None else 0
    n_val_train = n_real - sum(min(max(1, round(0.2 * n)), n - 1) for n in n_tr)
    per_seed = (n_pol * steps_for_epochs(n_val_train, cfg.utility_epochs, bs)
                + steps_for_epochs(n_real, cfg.utility_epochs, bs)
                + steps_for_epochs(n_real + n_syn, cfg.utility_epochs, bs)
                + steps_for_epochs(n_syn, UtilityConfig.pretrain_epochs, bs)  # syn>real: pre-train, then fine-tune
                + steps_for_epochs(n_real, cfg.utility_epochs, bs))
    utility_steps = per_seed * len(cfg.utility_seeds) if cfg.utility else 0
    est = {"train": gen_s * config.train.steps, "sample": sample_s * n_sampled, "filter": clf_s * filter_steps,
           "utility": clf_s * utility_steps}
    return {
        "data": cfg.data, "n_per_class": cfg.n_per_class, "size": size, "channels": int(data.images.shape[-1]),
        "task": data.task, "n_images": len(data.labels),
        "classes": [{"id": c, "name": n, "images": int(n_tr[c] + n_ho[c]), "generator": int(n_tr[c]),
                     "holdout": int(n_ho[c])} for c, n in enumerate(data.class_names)],
        "holdout": cfg.holdout, "model": cfg.model, "family": family.name, "steps": int(config.train.steps),
        "overrides": list(cfg.overrides), "seed": cfg.seed, "out": str(out),
        "synthetic": {"per_class": cfg.n_per_class_synthetic, "sampled_per_class": cfg.n_sampled_per_class,
                      "filter": cfg.filter, "min_confidence": cfg.min_confidence,
                      "min_nn_quantile": cfg.min_nn_quantile},
        "utility": {"enabled": cfg.utility, "seeds": list(cfg.utility_seeds), "epochs": cfg.utility_epochs},
        "estimate": {"seconds": est, "total_seconds": sum(est.values()), "device": str(device),
                     "method": (f"measured: 2 generator steps ({gen_s:.3f} s/step), one sampling batch "
                                f"({sample_s * 1000:.1f} ms/image), 3 classifier steps ({clf_s:.3f} s/step) on "
                                f"{device}, scaled by the run's step counts")},
    }


def _probe(family, config, data: FewShotData, train_idx: np.ndarray, cfg: AugmentConfig):
    """Seconds per generator step, per sampled image and per classifier step, measured on throwaway models."""
    import torch

    from qmedgen.evaluate.utility import train_classifier
    from qmedgen.train.distributed import Dist, resolve_device
    from qmedgen.train.loop import BatchStream, DataSpec, TrainingData, seed_everything

    dist = Dist()
    device = resolve_device(config.train.device, dist)
    seed_everything(cfg.seed)
    x = torch.from_numpy(np.ascontiguousarray(data.images[train_idx])).permute(0, 3, 1, 2).float().div(127.5).sub(1)
    y = torch.as_tensor(data.labels[train_idx], dtype=torch.long)
    spec = DataSpec(dataset=config.data.name, n_classes=data.n_classes, channels=x.shape[1], size=x.shape[-1],
                    class_ids=tuple(range(data.n_classes)), class_names=tuple(data.class_names))
    td = TrainingData(x.to(device), y.to(device), spec, np.asarray(train_idx), BatchStream(len(y), cfg.seed), dist)
    trainer = family.trainer_cls(config, spec, device, dist, td)
    trainer.train_step(0)  # warm-up (allocations, lazy initialisation)
    t0 = time.perf_counter()
    trainer.train_step(1)
    gen_s = time.perf_counter() - t0
    for module in trainer.modules().values():
        module.eval()
    labels = torch.arange(min(100, cfg.n_sampled_per_class * data.n_classes), device=device) % data.n_classes
    t0 = time.perf_counter()
    with torch.no_grad():
        trainer.sample(labels)
    sample_s = (time.perf_counter() - t0) / len(labels)
    n = len(train_idx)
    t0 = time.perf_counter()
    train_classifier(data.images[train_idx], data.labels[train_idx], data.n_classes, epochs=3 * min(64, n) / n,
                     seed=cfg.seed, device=cfg.device_or_none(), progress=False)
    clf_s = (time.perf_counter() - t0) / 3
    return gen_s, sample_s, clf_s, device


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def format_plan(plan: dict) -> str:
    """The dry-run text: data and split per class, model, synthetic counts, filter, utility, time estimate."""
    lines = [f"data: {plan['data']}" + (f" ({plan['n_per_class']} per class, seed {plan['seed']})"
                                        if plan["n_per_class"] else "")
             + f": {plan['n_images']} images, {len(plan['classes'])} classes, {plan['size']}x{plan['size']}x"
               f"{plan['channels']}, task {plan['task']}",
             f"holdout: {plan['holdout']:g} per class (at least 1), for the utility report only, never seen by the "
             "generator", "", f"{'class':40s} {'images':>7s} {'generator':>10s} {'holdout':>8s}"]
    for c in plan["classes"]:
        lines.append(f"{c['name'][:40]:40s} {c['images']:7d} {c['generator']:10d} {c['holdout']:8d}")
    s, u, e = plan["synthetic"], plan["utility"], plan["estimate"]
    lines += ["", f"model: {plan['model']} (family {plan['family']}), {plan['steps']} steps, seed {plan['seed']}"
              + (f", overrides {plan['overrides']}" if plan["overrides"] else ""),
              f"synthetic: {s['per_class']} per class written, {s['sampled_per_class']} per class sampled; "
              + (f"filter: confidence >= {s['min_confidence']:g}, near-copy quantile {s['min_nn_quantile']:g}"
                 if s["filter"] else "no filter"),
              "utility: " + (f"real vs real+synthetic on the holdout, seeds {u['seeds']}, {u['epochs']:g} epochs"
                             if u["enabled"] else "skipped"),
              f"output: {plan['out']}",
              f"estimated time: about {_duration(e['total_seconds'])} ("
              + ", ".join(f"{k} {_duration(v)}" for k, v in e["seconds"].items()) + ")",
              f"  {e['method']}",
              "dry run: nothing was written"]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- CLI

def _seeds(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--utility-seeds takes integers like 0,1,2, got {text!r}") from exc


def _ops(text: str) -> tuple[str, ...]:
    return tuple(op for op in text.replace("+", ",").split(",") if op and op != "none")


def _config_option(p: argparse.ArgumentParser, flag: str, kind, help: str) -> None:
    """``--flag`` whose default is the AugmentConfig field of the same name (the one place the defaults live)."""
    p.add_argument(flag, type=kind, default=getattr(AugmentConfig, flag[2:].replace("-", "_")), help=help)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "augment", help="few-shot images in: a filtered synthetic class-folder dataset and a utility report out",
        description="Train a generator on DATA (minus a held-out part), sample, filter off-class images and near "
        "copies, write OUT/synthetic/<class>/*.png with OUT/manifest.json, and report on the held-out images "
        "whether the synthetic images help a classifier. Re-running the same command resumes it.")
    p.add_argument("data", metavar="DATA", help="folder:PATH (one sub-folder of images per class) or a dataset name "
                   "(qmedgen data list)")
    p.add_argument("--out", type=Path, required=True, help="output directory (never inside the input folder)")
    p.add_argument("--n-per-class", type=int, help="few-shot: draw this many images per class from DATA (seeded)")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"model, preset or YAML config (default {DEFAULT_MODEL})")
    p.add_argument("--steps", type=int, help="generator training steps (default: the model's)")
    p.add_argument("--size", type=int, help="image size for training and output (default: the model's)")
    _config_option(p, "--n-per-class-synthetic", int, "synthetic images to write per class (default %(default)s)")
    _config_option(p, "--oversample", float,
                   "images sampled per image written, so that enough survive the filter (default %(default)s)")
    _config_option(p, "--holdout", float,
                   "fraction of each class held out for the utility report (default %(default)s; >= 1 image)")
    p.add_argument("--seed", type=int, default=0, help="few-shot draw, holdout, training, sampling (default 0)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a generator config key (repeatable), e.g. --set model.depth=4")
    _config_option(p, "--min-confidence", float, "reject synthetic images whose intended class has a lower "
                   "probability (default %(default)s: near copies only; 0.5 was measured to hurt on BloodMNIST)")
    _config_option(p, "--min-nn-quantile", float, "near-copy threshold: this quantile of real-to-real "
                   "nearest-neighbour distances (default %(default)s)")
    p.add_argument("--no-filter", action="store_true", help="keep every sample (scores are still reported)")
    _config_option(p, "--filter-epochs", float, "epochs of the selection classifier (default %(default)s)")
    _config_option(p, "--utility-seeds", _seeds, "classifier seeds of the utility report (default 0,1,2)")
    _config_option(p, "--utility-epochs", float, "classifier epochs of the utility report (default %(default)s)")
    p.add_argument("--utility-augment", type=_ops, help="fix the classifiers' augmentation (e.g. crop+hflip or none) "
                   "instead of choosing it on a validation split")
    p.add_argument("--no-utility", action="store_true", help="skip the utility report")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--force", action="store_true", help="start over in OUT, discarding recorded progress")
    p.add_argument("--dry-run", action="store_true", help="print the plan and a measured time estimate; write nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_augment)


def config_from_args(args: argparse.Namespace) -> AugmentConfig:
    return AugmentConfig(
        data=args.data, out=args.out, n_per_class=args.n_per_class, model=args.model, steps=args.steps,
        size=args.size, n_per_class_synthetic=args.n_per_class_synthetic, oversample=args.oversample,
        holdout=args.holdout, seed=args.seed, overrides=tuple(args.overrides), filter=not args.no_filter,
        min_confidence=args.min_confidence, min_nn_quantile=args.min_nn_quantile, filter_epochs=args.filter_epochs,
        utility=not args.no_utility, utility_seeds=tuple(args.utility_seeds), utility_epochs=args.utility_epochs,
        utility_augment=args.utility_augment, device=args.device, progress=not args.no_progress, force=args.force)


def cmd_augment(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    if args.dry_run:
        print(format_plan(plan_augment(cfg)))
        return 0
    result = run_augment(cfg)
    print(json.dumps({k: str(v) for k, v in result.items() if k != "stages" and v is not None}))
    return 0


__all__ = ["DEFAULT_MODEL", "AugmentConfig", "FewShotData", "check_image_files", "check_out_dir",
           "class_folder_names", "format_plan", "holdout_split", "load_input", "plan_augment", "register",
           "run_augment"]
