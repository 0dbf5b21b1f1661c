"""Every markdown table qmedgen writes: one evaluation's metrics (``metrics_<extractor>.md`` beside the JSON), the
downstream-utility arms (:func:`utility_markdown`) and a benchmark's ``results.md`` (:func:`results_markdown`)."""

from __future__ import annotations

import math

from qmedgen.evaluate.evaluation import HIGHER_IS_BETTER, IDEAL_ONE

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


def direction_arrow(name: str) -> str:
    """The arrow shown next to a metric: higher (↑) or lower (↓) is better, or ≈1 (as real data)."""
    base = name.split(".")[-1]
    if base in IDEAL_ONE:
        return "≈1"
    if base in ("mae", "fid", "kid", "copy_fraction"):
        return "↓"
    return "↑" if HIGHER_IS_BETTER.get(base, True) else "↓"


def _fmt(s: dict) -> str:
    m = s.get("mean")
    if m is None or not math.isfinite(m):
        return "n/a"
    if s.get("n", 0) > 1 and math.isfinite(s.get("ci_low", float("nan"))):
        return f"{m:.4g} [{s['ci_low']:.4g}, {s['ci_high']:.4g}]"
    return f"{m:.4g}"


def results_markdown(proto: dict, results: dict, real_row: str) -> str:
    """Sample-quality and utility tables (mean [95% t-interval] over seeds), then seed-paired differences."""
    quality = [k for k in results["metrics"] if not k.startswith("utility.")]
    main_metric = [m for m in ("balanced_accuracy", "qwk") if any(k.endswith(f".{m}") for k in results["metrics"])]
    utility = [k for k in results["metrics"] if k.startswith("utility.") and not k.startswith("utility.gain")
               and k.endswith(tuple(f".{m}" for m in main_metric))]
    gains = [k for k in results["metrics"] if k.startswith("utility.gain") and k.endswith(tuple(
        f".{m}" for m in main_metric))]
    lines = [f"# Benchmark {proto['name']}", "", str(proto.get("description", "")).strip(), "",
             f"Dataset {proto['data']} ({proto['size']} px), reference split {proto['split']}; seeds "
             f"{proto['seeds']}; mean over seeds [95% t-interval]. ↑/↓: higher/lower is better; ≈1: as real data. "
             f"Row `{real_row}`: real images of another split with the samples' class counts, scored the same way. "
             "Every metric of every arm is in results.json; the tables below show the headline ones."]
    sections = (("Sample quality", quality, ""), ("Downstream utility (test split)", utility, ""),
                ("Augmentation gain", gains,
                 "`gain@R`: real+synthetic at ratio R minus the validation-selected real-only arm, paired by seed "
                 "(`@val`: R chosen on validation; `@pretrain`: pre-trained on synthetic, fine-tuned on real). "
                 "`gain_vs_best_real`: minus the better real-only arm on the test split itself (a baseline chosen "
                 "with hindsight, so stricter). Mean over generator seeds [95% t-interval]."))
    for title, names, note in sections:
        if not names:
            continue
        lines += ["", f"## {title}", ""] + ([note, ""] if note else []) + [
            "| model | n/class | " + " | ".join(f"{k} {direction_arrow(k)}" for k in names) + " |",
            "|---|---" + "|---" * len(names) + "|"]
        for r in results["rows"]:
            cells_ = [_fmt(r["metrics"].get(k, {})) for k in names]
            if all(c == "n/a" for c in cells_):
                continue
            n = "all" if r["n"] is None else r["n"]
            lines.append(f"| {r['model']} | {n} | " + " | ".join(cells_) + " |")
    if results["comparisons"]:
        names = quality + [k for k in gains if k.startswith("utility.gain@")]
        lines += ["", "## Paired differences vs the reference (same seeds = same real images; paired t-test p)", "",
                  "| model - reference | n/class | " + " | ".join(names) + " |", "|---|---" + "|---" * len(names) + "|"]
        for c in results["comparisons"]:
            cells_ = []
            for k in names:
                d = c["metrics"][k]
                p = d.get("t_pvalue")
                ptxt = "" if p is None or not math.isfinite(p) else f" p={p:.2g}"
                cells_.append(_fmt({"mean": d["diff_mean"], "ci_low": d["diff_ci_low"],
                                    "ci_high": d["diff_ci_high"], "n": d["n"]}) + ptxt)
            n = "all" if c["n"] is None else c["n"]
            lines.append(f"| {c['model']} - {c['reference']} | {n} | " + " | ".join(cells_) + " |")
    return "\n".join(lines) + "\n"


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
