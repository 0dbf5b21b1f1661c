"""Benchmark harness: models x subset sizes x seeds, each cell trained, sampled, evaluated and tested for utility.

A protocol is a YAML file (shipped ones live in ``qmedgen/evaluate/protocols``; ``qmedgen benchmark --list``),
checked against the typed schema :class:`qmedgen.evaluate.protocol.Protocol` (unknown keys get a suggestion).
Keys: ``name``, ``description``, ``data``, ``size``, ``split`` (real reference split, default test), ``seeds``,
``subset_sizes`` (images per class; ``null`` = full training split), ``models`` (label -> ``{model, overrides}``),
``reference`` (model label for paired comparisons), ``train`` (overrides for every model), ``keys`` (which
config keys receive dataset, subset size, seeds: kept in the YAML so they are easy to adapt), ``sample``,
``evaluate``, ``utility``, and ``quick`` (a partial protocol applied with ``--quick``: ``train``, ``sample``,
``evaluate`` and ``utility`` merge key by key, other keys are replaced).

The cell seed sets both the few-shot draw and the training seed, so across seeds both sources of variance are
sampled, and models are compared *paired* by seed (same real images). Progress is recorded in
``OUT/state.json`` after every stage (train, sample, evaluate, utility); re-running the same command skips what
is finished, and a cell whose settings changed is recomputed.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import hashlib
import json
import math
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from qmedgen.config import from_dict, merge, to_dict
from qmedgen.errors import ConfigError
from qmedgen.evaluate.evaluation import EvalConfig
from qmedgen.evaluate.protocol import Protocol, parse_protocol
from qmedgen.evaluate.stats import paired_comparison, t_interval
from qmedgen.fileio import write_json, write_text
from qmedgen.report.markdown import direction_arrow, results_markdown

MERGE_KEYS = {"train", "keys", "sample", "evaluate", "utility"}  # quick sections that merge key by key
REAL_ROW = "real-vs-real"  # aggregated 'perfect generator' reference row
GAIN_METRICS = ("balanced_accuracy", "accuracy", "macro_auc", "qwk")  # higher is better for each
PLOT_METRICS = ("fid", "kid", "precision", "recall", "coverage", "conditional_accuracy", "msssim_diversity",
                "copy_fraction")


# ------------------------------------------------------------------------------------------------ protocols

def list_protocols() -> list[str]:
    root = resources.files("qmedgen.evaluate") / "protocols"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml")) if root.is_dir() else []


def load_protocol(spec: str | Path, quick: bool = False) -> dict:
    """A protocol by shipped name or YAML path, validated; ``quick`` merges its ``quick`` section."""
    spec = str(spec)
    if spec in list_protocols():
        text = (resources.files("qmedgen.evaluate") / "protocols" / f"{spec}.yaml").read_text()
        where = f"protocol {spec!r}"
    else:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise ConfigError(f"unknown benchmark protocol {spec!r}: not a file and not one of "
                              f"{', '.join(list_protocols()) or 'the shipped protocols'}")
        text, where = path.read_text(), str(path)
    try:
        proto = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: invalid YAML ({exc})") from exc
    if not isinstance(proto, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level")
    typed = parse_protocol(proto, where)
    if typed.quick is not None:  # checked even without --quick, so that a typo there is found before it is needed
        quick_proto = _with_quick(proto, typed.quick)
        quick_spec = parse_protocol(quick_proto, f"{where} (with its 'quick' section)")
        if quick:
            proto, typed = quick_proto, quick_spec
    if quick:
        proto["name"] = f"{proto['name']}-quick"
    proto.pop("quick", None)
    return _resolved(proto, typed)


def _with_quick(proto: dict, quick: dict) -> dict:
    """``proto`` with its ``quick`` section applied: sections merge key by key; lists and 'models' are replaced."""
    out = copy.deepcopy(proto)
    for k, v in quick.items():
        out[k] = copy.deepcopy(merge(out[k], v)) if k in MERGE_KEYS and isinstance(out.get(k), dict) else v
    return out


def _resolved(proto: dict, spec: Protocol) -> dict:
    """The protocol mapping as the runner uses and records it: as written, plus the defaults of the schema."""
    for key in ("seeds", "subset_sizes", "split", "size"):
        proto.setdefault(key, getattr(spec, key))
    proto["keys"] = to_dict(spec.keys)
    return proto


# ---------------------------------------------------------------------------------------------------- cells

def cells(proto: dict) -> list[dict]:
    """Every (model, subset size, seed) combination with its full training overrides."""
    keys = proto["keys"]
    out = []
    for n in proto["subset_sizes"]:
        for seed in proto["seeds"]:
            for label, m in proto["models"].items():
                ov = {keys["data_name"]: proto["data"], keys["size"]: proto["size"], keys["seed"]: seed,
                      keys["subset_seed"]: seed}
                if n is not None:
                    ov[keys["n_per_class"]] = n
                ov.update(proto.get("train") or {})
                ov.update(m.get("overrides") or {})
                cell = {"model": label, "family": m["model"], "n": n, "seed": seed, "overrides": ov,
                        "sample": proto.get("sample") or {}, "evaluate": proto.get("evaluate") or {},
                        "utility": proto.get("utility") or {}, "data": proto["data"], "split": proto["split"]}
                cell["id"] = f"{label}_n{'all' if n is None else n}_s{seed}"
                cell["hash"] = hashlib.sha256(json.dumps(cell, sort_keys=True, default=str).encode()).hexdigest()[:16]
                out.append(cell)
    return out


@contextlib.contextmanager
def locked(path: Path):
    """An exclusive lock on ``path`` + ``.lock``: several benchmark processes (``--models``) share one output."""
    with open(path.with_name(path.name + ".lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _read_state(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise ConfigError(f"{path}: corrupt benchmark state ({exc}); move it away to start over") from exc


class State:
    """``state.json``: per-cell stage results, written atomically after every stage. Each save merges: the cells
    this process touched are written over what is on disk, every other cell is taken from the disk, so processes
    running disjoint models (``run_benchmark(models=...)``) can share one output folder."""

    def __init__(self, path: Path, protocol: dict) -> None:
        self.path = path
        self.data = _read_state(path) or {"protocol": protocol["name"], "cells": {}}
        self.touched: set[str] = set()

    def cell(self, c: dict) -> dict:
        entry = self.data["cells"].get(c["id"])
        if entry is None or entry.get("hash") != c["hash"]:
            entry = {"hash": c["hash"], "model": c["model"], "n": c["n"], "seed": c["seed"], "stages": {}}
            self.data["cells"][c["id"]] = entry
        self.touched.add(c["id"])
        return entry

    def save(self) -> None:
        with locked(self.path):
            disk = _read_state(self.path)
            if disk is not None:
                for cid, entry in disk["cells"].items():
                    if cid not in self.touched:
                        self.data["cells"][cid] = entry
            write_json(self.path, self.data, nan_to_null=True)


def update_json_locked(path: Path, update: Callable[[dict], None]) -> None:
    """Read-modify-write of a shared JSON file under :func:`locked`."""
    with locked(path):
        data = json.loads(path.read_text()) if path.is_file() else {}
        update(data)
        write_json(path, data, nan_to_null=True)


# ---------------------------------------------------------------------------------------------------- runner

def _default_train(model: str, overrides: dict, run_root: Path, progress: bool = True) -> Path:
    """Train a cell, resuming a killed attempt or reusing a finished one (:func:`qmedgen.train.api.train_or_resume`)."""
    from qmedgen.train.api import train_or_resume

    return train_or_resume(model, overrides, run_root, progress=progress)


def _default_sample(run_dir: Path, n_per_class: int, out: Path, **opts) -> Path:
    from qmedgen.train.api import sample

    return sample(run_dir, n_per_class=n_per_class, out=out, **opts)


def run_benchmark(protocol: str | Path | dict, out: Path | None = None, quick: bool = False,
                  trainer: Callable | None = None, sampler: Callable | None = None, progress: bool = True,
                  device: str | None = None, log: Callable[[str], None] | None = None,
                  models: list[str] | None = None, run_cells: bool = True) -> dict:
    """Run (or resume) a protocol; returns the aggregated results (also written to ``OUT/results.*``).

    ``models``: run only the cells of these model labels (several processes, one per group of models, can share
    ``out``: the state merges on every save; the results cover every finished cell). ``run_cells=False`` runs
    nothing and writes the results, plots and grids of the cells already finished (after a stopped part)."""
    if isinstance(protocol, dict):
        parse_protocol(protocol)
        proto = protocol
    else:
        proto = load_protocol(protocol, quick)
    out = Path(out) if out is not None else Path("benchmarks") / proto["name"]
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "protocol.yaml", yaml.safe_dump(proto, sort_keys=False))
    log = log or (lambda msg: print(msg, flush=True))
    trainer = trainer or _default_train
    sampler = sampler or _default_sample
    state = State(out / "state.json", proto)
    all_cells = cells(proto)
    unknown = sorted(set(models or ()) - set(proto["models"]))
    if unknown:
        raise ConfigError(f"--models {unknown}: not in the protocol's models {sorted(proto['models'])}")
    extractors: dict[str, Any] = {}
    if not run_cells and not any(state.data["cells"].get(c["id"], {}).get("done") for c in all_cells):
        raise ConfigError(f"{state.path}: no finished cell of protocol {proto['name']!r} to report")
    for i, c in enumerate(all_cells, 1):
        if not run_cells or (models and c["model"] not in models):
            continue
        entry = state.cell(c)
        if entry.get("done"):
            log(f"[{i}/{len(all_cells)}] {c['id']}: done (recorded in {state.path.name}), skipped")
            continue
        log(f"[{i}/{len(all_cells)}] {c['id']}")
        t0 = time.perf_counter()
        _run_cell(c, entry, state, out, trainer, sampler, progress, device, extractors)
        entry["done"] = True
        entry["seconds"] = round(entry.get("seconds", 0) + time.perf_counter() - t0, 1)
        state.save()
    state.save()  # picks up the cells other processes finished meanwhile
    results = aggregate(proto, state.data)
    write_json(out / "results.json", results, nan_to_null=True)
    write_text(out / "results.md", results_markdown(proto, results, REAL_ROW))
    results["plots"] = [str(p) for p in make_plots(results, out / "plots")]
    results["grids"] = [str(p) for p in write_grids(proto, state.data, out / "grids")]
    write_json(out / "results.json", results, nan_to_null=True)
    return results


def write_grids(proto: dict, state: dict, out: Path, per_class: int = 8) -> list[Path]:
    """Small sample grids to look at next to the real images: ``<cell id>.png`` (the first ``per_class`` samples of
    every class of each finished cell) and ``real_n<N>_s<seed>.png`` (the real few-shot images that cell saw)."""
    from qmedgen.evaluate.realdata import few_shot, load_split
    from qmedgen.images import save_class_grid

    def first(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in np.unique(labels)])
        return images[idx], labels[idx]

    paths, train = [], None
    for cid, entry in sorted(state["cells"].items()):
        npz = Path(entry["stages"].get("sample", {}).get("samples", "")) / "samples.npz"
        if not entry.get("done") or not npz.is_file():
            continue
        if train is None:
            train = load_split(proto["data"], "train", size=proto["size"])
            names = list(train.info.class_names)
            labels = np.asarray(train.labels).reshape(-1)
        d = np.load(npz)
        paths.append(save_class_grid(*first(d["images"], d["labels"]), names, out / f"{cid}.png"))
        real_path = out / f"real_n{'all' if entry['n'] is None else entry['n']}_s{entry['seed']}.png"
        if not real_path.is_file():
            idx = few_shot(labels, entry["n"], entry["seed"])
            paths.append(save_class_grid(*first(train.images[idx], labels[idx]), names, real_path))
    return paths


def _run_cell(c: dict, entry: dict, state: State, out: Path, trainer, sampler, progress, device, extractors) -> None:
    from qmedgen.evaluate.pipeline import SampleEvalOptions, evaluate_samples, utility_for_samples
    from qmedgen.evaluate.utility import UtilityConfig

    stages = entry["stages"]
    cell_dir = out / "cells" / c["id"]
    if "train" not in stages or not Path(stages["train"]["run_dir"]).is_dir():
        run_dir = trainer(c["family"], c["overrides"], cell_dir / "runs", progress=progress)
        stages.clear()
        stages["train"] = {"run_dir": str(run_dir)}
        state.save()
    run_dir = Path(stages["train"]["run_dir"])
    if "sample" not in stages or not Path(stages["sample"]["samples"]).is_dir():
        opts = {k: v for k, v in c["sample"].items() if k != "n_per_class"}
        samples = sampler(run_dir, int(c["sample"].get("n_per_class", 100)), cell_dir / "samples", **opts)
        stages["sample"] = {"samples": str(samples)}
        state.save()
    samples = Path(stages["sample"]["samples"])
    ev = dict(c["evaluate"])
    if "evaluate" not in stages:
        spec = ev.pop("extractor", "domain")
        conditional = bool(ev.pop("conditional", True))
        baseline = bool(ev.pop("real_baseline", True))
        train_data = ev.pop("train_data", "auto")
        cfg = _build(EvalConfig, "evaluate", {"progress": progress, "seed": c["seed"], **ev})
        key = spec if spec != "domain" else f"domain:{c['data']}"
        if key not in extractors and not key.startswith("domain:"):
            from qmedgen.evaluate.extractors import load_extractor

            extractors[key] = load_extractor(key, device, size=c["overrides"].get("data.size", 28), progress=progress)
        options = SampleEvalOptions(data=c["data"], split=c["split"], extractor=spec, train_data=train_data,
                                    out=samples, metrics=cfg, conditional=conditional, real_baseline=baseline,
                                    device=device, extractor_obj=extractors.get(key))
        result, json_path, _ = evaluate_samples(samples, options)
        stages["evaluate"] = {"metrics": {k: v["value"] for k, v in result["metrics"].items()},
                              "real_baseline": (result.get("real_baseline") or {}).get("metrics"),
                              "flags": result["flags"], "file": str(json_path)}
        state.save()
    ut = dict(c["utility"])
    if ut.pop("enabled", False) and "utility" not in stages:
        ut = {"seeds": [c["seed"]], "arms": ["real", "real+syn", "syn"], "device": device, "progress": progress, **ut}
        for k in ("seeds", "arms", "ratios", "augment"):
            if ut.get(k) is not None:
                ut[k] = tuple(ut[k])
        ucfg = _build(UtilityConfig, "utility", ut)
        cache_path = out / "utility-cache.json"  # real-only arms, shared by the models of one (n, seed)
        cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
        result, json_path, _ = utility_for_samples(samples, c["data"], c["n"], c["seed"], c["split"], ucfg, samples,
                                                   size=c["overrides"].get("data.size"), cache=cache)
        update_json_locked(cache_path, lambda disk: disk.update(cache))
        stages["utility"] = {arm: {k: v["mean"] for k, v in s.items()} for arm, s in result["summary"].items()}
        stages["utility_selection"] = result["selection"]
        if result.get("filter"):
            stages["utility_filter"] = {k: result["filter"][k] for k in ("n", "kept", "per_reason")}
        stages["utility_file"] = str(json_path)
        state.save()


def _build(cls, section: str, values: dict):
    """``cls(**values)``, checked first like the protocol (:func:`qmedgen.config.from_dict`: unknown keys with a
    suggestion, types); built from the values as given, so that e.g. ``epochs: 100`` stays an int in cache keys."""
    from_dict(cls, values, path=section, label="key")
    return cls(**values)


# ----------------------------------------------------------------------------------------------- aggregation

def _cell_values(entry: dict) -> dict[str, float]:
    """A cell's metrics, flattened; plus the augmentation gains ``utility.gain@R.<metric>`` (real+syn@R minus real,
    both means over the same classifier seeds, so paired) and, stricter, ``utility.gain_vs_best_real@R.<metric>``
    (minus the better of real and real-noaug on the test split itself: a baseline chosen with hindsight)."""
    vals = dict(entry["stages"].get("evaluate", {}).get("metrics", {}))
    ut = entry["stages"].get("utility", {})
    for arm, ms in ut.items():
        for k, v in ms.items():
            vals[f"utility.{arm}.{k}"] = v
    base = ut.get("real")
    if base:
        for arm, ms in ut.items():
            tag = arm.split("@", 1)[1] if arm.startswith("real+syn@") else "pretrain" if arm == "syn>real" else None
            if tag is None:
                continue
            for k in GAIN_METRICS:
                if k in ms and k in base:
                    vals[f"utility.gain@{tag}.{k}"] = ms[k] - base[k]
                    best = max(r[k] for a, r in ut.items() if a in ("real", "real-noaug") and k in r)
                    vals[f"utility.gain_vs_best_real@{tag}.{k}"] = ms[k] - best
    return vals


def aggregate(proto: dict, state: dict) -> dict:
    """Mean and t-CI over seeds per (model, n); paired differences vs the reference model (matched by seed)."""
    table: dict[str, dict[str, dict]] = {}
    per_seed: dict[tuple[str, Any], dict[int, dict]] = {}
    for entry in state["cells"].values():
        if entry.get("done"):
            per_seed.setdefault((entry["model"], entry["n"]), {})[entry["seed"]] = _cell_values(entry)
            base = entry["stages"].get("evaluate", {}).get("real_baseline")
            if base:  # real images of another split scored like samples: the 'perfect generator' row
                per_seed.setdefault((REAL_ROW, entry["n"]), {}).setdefault(entry["seed"], dict(base))
    metric_names: list[str] = []
    for vals in per_seed.values():
        for v in vals.values():
            metric_names += [k for k in v if k not in metric_names]
    rows = []
    for (model, n), by_seed in per_seed.items():
        seeds = sorted(by_seed)
        row = {"model": model, "n": n, "seeds": seeds, "metrics": {}}
        for k in metric_names:
            row["metrics"][k] = t_interval([by_seed[s].get(k, float("nan")) for s in seeds])
        rows.append(row)
        table.setdefault(model, {})[str(n)] = row
    comparisons = []
    ref = proto.get("reference")
    if ref is not None:
        for (model, n), by_seed in per_seed.items():
            if model in (ref, REAL_ROW) or (ref, n) not in per_seed:
                continue
            base = per_seed[(ref, n)]
            seeds = sorted(set(by_seed) & set(base))
            if not seeds:
                continue
            comp = {k: paired_comparison([by_seed[s].get(k, float("nan")) for s in seeds],
                                         [base[s].get(k, float("nan")) for s in seeds]) for k in metric_names}
            comparisons.append({"model": model, "reference": ref, "n": n, "seeds": seeds, "metrics": comp})
    order = list(proto["models"])
    sizes = list(proto["subset_sizes"])
    rows.sort(key=lambda r: (sizes.index(r["n"]) if r["n"] in sizes else 0, order.index(r["model"])
                             if r["model"] in order else len(order)))
    return {"protocol": proto["name"], "data": proto["data"], "rows": rows, "comparisons": comparisons,
            "metrics": metric_names, "n_cells_done": sum(1 for e in state["cells"].values() if e.get("done"))}


def make_plots(results: dict, out: Path) -> list[Path]:
    """``summary.png``: one panel per key metric, mean +- 95% CI against subset size, one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wanted = [m for m in results["metrics"] if m in PLOT_METRICS or (
        m.startswith("utility.") and not m.startswith("utility.gain_vs") and m.endswith(".balanced_accuracy"))]
    if not wanted or not results["rows"]:
        return []
    out.mkdir(parents=True, exist_ok=True)
    models = list(dict.fromkeys(r["model"] for r in results["rows"]))
    sizes = list(dict.fromkeys(r["n"] for r in results["rows"]))
    cols = min(4, len(wanted))
    rows_ = math.ceil(len(wanted) / cols)
    fig, axes = plt.subplots(rows_, cols, figsize=(3.6 * cols, 2.8 * rows_), squeeze=False)
    for ax, metric in zip(axes.flat, wanted):
        for j, model in enumerate(models):
            rs = [r for r in results["rows"] if r["model"] == model and metric in r["metrics"]]
            xs = [sizes.index(r["n"]) + (j - (len(models) - 1) / 2) * 0.1 for r in rs]
            ms = np.array([r["metrics"][metric]["mean"] for r in rs], float)
            lo = np.array([r["metrics"][metric]["ci_low"] for r in rs], float)
            hi = np.array([r["metrics"][metric]["ci_high"] for r in rs], float)
            err = np.vstack([np.where(np.isfinite(lo), ms - lo, 0), np.where(np.isfinite(hi), hi - ms, 0)])
            ax.errorbar(xs, ms, yerr=err, marker="o", capsize=3, label=model,
                        linestyle="-" if len(sizes) > 1 else "none")
        ax.set_xticks(range(len(sizes)), ["all" if s is None else str(s) for s in sizes])
        ax.set_xlim(-0.5, len(sizes) - 0.5)
        ax.set_title(f"{metric} {direction_arrow(metric)}", fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(wanted):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.supxlabel("real images per class (mean over seeds, 95% t-interval)", fontsize=8)
    fig.suptitle(results["protocol"], fontsize=10)
    fig.tight_layout()
    path = out / "summary.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [path]
