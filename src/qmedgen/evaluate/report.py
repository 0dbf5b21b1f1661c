"""Markdown and JSON output of an evaluation, and the link from samples back to the run that made them."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

from qmedgen.evaluate.evaluation import HIGHER_IS_BETTER, IDEAL_ONE
from qmedgen.fileio import json_default

DESCRIPTIONS = {
    "fid": "Fréchet distance of Gaussian feature fits",
    "kid": "kernel (cubic polynomial) MMD², unbiased",
    "precision": "share of generated images inside the real k-NN manifold",
    "recall": "share of real images inside the generated k-NN manifold",
    "density": "k-NN density of generated images around real ones (~1 = real-like)",
    "coverage": "share of real images with a generated neighbour inside their k-NN ball",
    "feature_diversity": "intra-class mean pairwise feature distance, generated / real",
    "msssim_diversity": "intra-class (1 - MS-SSIM), generated / real",
    "conditional_accuracy": "domain classifier agrees with the requested class",
    "copy_fraction": "generated images that are near-copies of one training image",
    "nn_distance_ratio": "median nearest-training distance, generated / held-out real (<< 1: copying)",
}


def _num(x) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    ax = abs(x)
    return f"{x:.3g}" if ax >= 1000 or (ax < 1e-3 and ax != 0) else f"{x:.4f}"


def metrics_markdown(result: dict, title: str = "Sample quality") -> str:
    """One table: metric, value, 95% bootstrap CI, direction, meaning; then flags and settings."""
    lines = [f"## {title}", "", f"Generated: {result['n_fake']} images; real reference: {result['n_real']} images "
             f"({result.get('real_split', 'held-out')} split); extractor: `{result['extractor']}` "
             f"({result['feature_dim']}-d).", "",
             ]
    base = (result.get("real_baseline") or {}).get("metrics")
    if base:
        rb = result["real_baseline"]
        lines += [f"'real vs real': {rb['n']} real images of the {rb['split']} split with the samples' class counts, "
                  "scored the same way (what a perfect generator would get at this sample size).", ""]
        lines += ["| metric | value | 95% CI | real vs real | better | meaning |", "|---|---|---|---|---|---|"]
    else:
        lines += ["| metric | value | 95% CI | better | meaning |", "|---|---|---|---|---|"]
    for name, m in result["metrics"].items():
        arrow = "≈1" if name in IDEAL_ONE else "↑" if HIGHER_IS_BETTER.get(name, True) else "↓"
        ci = f"[{_num(m.get('ci_low'))}, {_num(m.get('ci_high'))}]"
        note = DESCRIPTIONS.get(name, "")
        if name == "kid":
            note += f"; {m['n_subsets']} subsets of {m['subset_size']}, subset std {_num(m['subset_std'])}"
        if name == "fid" and not m.get("reliable", True):
            note += " (UNRELIABLE: n < dim, see flags)"
        if name == "conditional_accuracy" and "real_accuracy" in m:
            note += f"; same classifier on real images: {_num(m['real_accuracy'])}"
        if name == "copy_fraction":
            note += f" (held-out real images: {_num(m.get('heldout_copy_fraction'))})"
        ref = f" {_num(base.get(name))} |" if base else ""
        lines.append(f"| {name} | {_num(m['value'])} | {ci} |{ref} {arrow} | {note} |")
    per_class = result["metrics"].get("conditional_accuracy", {}).get("per_class")
    if per_class:
        lines += ["", "Conditional accuracy per class: " + ", ".join(f"{k}: {_num(v)}" for k, v in per_class.items())]
    if result.get("flags"):
        lines += ["", "**Flags**", ""] + [f"- {f}" for f in result["flags"]]
    s = result.get("settings", {})
    lines += ["", f"CIs: percentile bootstrap within classes ({s.get('n_boot')} replicates; FID {s.get('fid_boot')}), "
              f"seed {s.get('seed')}; class weighting: {s.get('class_weighting')}; k-NN k = {s.get('k')}."]
    dc = result.get("domain_classifier")
    if dc:
        acc = dc.get("test_accuracy")
        lines.append(f"Domain classifier: {dc.get('recipe')} trained on {dc.get('n_train')} images of "
                     f"{dc.get('dataset')} (test accuracy {_num(acc)}).")
    return "\n".join(lines) + "\n"




def _clean(o):
    """NaN/inf -> None so the JSON is standard."""
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def write_json_atomic(path: Path, data) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(_clean(json.loads(json.dumps(data, default=json_default))), fh, indent=2, allow_nan=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def run_info(samples_src: Path) -> dict | None:
    """What the run behind a sample output trained on: ``{"run_dir", "dataset", "split", "indices", ...}``.

    Follows ``sampling.json`` (written by ``qmedgen sample``) to the run directory and reads its ``indices.json``;
    also accepts a run directory itself. None when there is no such record.
    """
    d = samples_src.parent if samples_src.is_file() else samples_src
    for candidate in (d, d.parent):
        if (candidate / "indices.json").is_file():
            run_dir = candidate
            break
    else:
        sj = d / "sampling.json"
        if not sj.is_file():
            return None
        try:
            run_dir = Path(json.loads(sj.read_text())["run_dir"])
        except (ValueError, KeyError):
            return None
        if not (run_dir / "indices.json").is_file():
            return None
    try:
        info = json.loads((run_dir / "indices.json").read_text())
    except ValueError:
        return None
    info["run_dir"] = str(run_dir)
    return info
