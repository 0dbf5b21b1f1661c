"""Build one self-contained HTML file from a run directory, or from a directory of runs / benchmark results.

What is shown, when present:

* per run: its config summary and status, training curves (from ``metrics.jsonl``), the newest sample grid next
  to a grid of the real training images it learnt from, metric tables (``*metrics*.json`` / ``*.md`` tables written
  by ``qmedgen evaluate``), and figures (PNG) written by ``qmedgen analyze`` or the benchmark harness;
* for a directory: the same for every run inside it, after the directory's own tables and figures.

Images are embedded as base64 data URIs so the file can be mailed or archived alone. A tiny inline script
records how many images decoded (``data-images-loaded`` on ``<body>``), which the rendering test reads.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from qmedgen.errors import UserError
from qmedgen.fileio import atomic_path
from qmedgen.train.rundir import MetricsLog

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1150px;color:#222}
h1{font-size:1.6rem}h2{border-bottom:2px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}h3{margin-top:1.4rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.88rem}td,th{border:1px solid #ccc;padding:.25rem .55rem}
th{background:#f3f3f3;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
.pair{display:flex;gap:1.2rem;flex-wrap:wrap;align-items:flex-start}.pair figure{margin:0}
figcaption{font-size:.85rem;color:#555;margin-top:.2rem}img{max-width:100%;image-rendering:pixelated}
.muted{color:#777;font-size:.85rem}code{background:#f5f5f5;padding:0 .2rem}
"""

SCRIPT = """
window.addEventListener('load',function(){var n=0;document.querySelectorAll('img').forEach(function(i){
if(i.complete&&i.naturalWidth>0){n++;}});document.body.setAttribute('data-images-loaded',String(n));});
"""


def _img(data: bytes, alt: str, width: int | None = None) -> str:
    w = f' width="{width}"' if width else ""
    b64 = base64.b64encode(data).decode()
    return f'<img alt="{html.escape(alt)}"{w} src="data:image/png;base64,{b64}">'


def _figure(data: bytes, caption: str, width: int | None = None) -> str:
    return f"<figure>{_img(data, caption, width)}<figcaption>{html.escape(caption)}</figcaption></figure>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.4g}"
    return html.escape(str(value))


def _table(header: list[str], rows: Iterable[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{_fmt(c)}</td>' if isinstance(c, (int, float)) else f"<td>{_fmt(c)}</td>" for c in row
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _with_ci(d: dict[str, Any]) -> str | None:
    """Render ``{"value"|"mean": x, "ci_low"/"ci_high" | "ci": [lo, hi] | "se"}`` as 'x [lo, hi]'."""
    value = next((d[k] for k in ("value", "mean", "estimate") if isinstance(d.get(k), (int, float))), None)
    if value is None:
        return None
    lo = d.get("ci_low", d.get("low"))
    hi = d.get("ci_high", d.get("high"))
    ci = d.get("ci") or d.get("ci95")
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        lo, hi = ci
    if isinstance(lo, (int, float)) and isinstance(hi, (int, float)):
        return f"{value:.4g} [{lo:.4g}, {hi:.4g}]"
    if isinstance(d.get("se"), (int, float)):
        return f"{value:.4g} ± {d['se']:.2g} (s.e.)"
    return f"{value:.4g}"


def flatten_metrics(data: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Leaves of a metrics JSON as (dotted key, formatted value); value+CI dicts become one row."""
    rows: list[tuple[str, str]] = []
    if isinstance(data, dict):
        merged = _with_ci(data)
        if merged is not None:
            return [(prefix or "value", merged)]
        for key, value in data.items():
            rows.extend(flatten_metrics(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(data, (int, float)) and not isinstance(data, bool):
        rows.append((prefix, _fmt(float(data))))
    elif isinstance(data, (str, bool)) and len(str(data)) < 80:
        rows.append((prefix, html.escape(str(data))))
    elif isinstance(data, list) and data and all(isinstance(v, (int, float)) for v in data) and len(data) <= 8:
        rows.append((prefix, ", ".join(_fmt(float(v)) for v in data)))
    return rows


def markdown_tables_to_html(text: str) -> str:
    """Convert GitHub-style pipe tables in ``text`` to HTML tables (other lines become paragraphs)."""
    out, table = [], []

    def flush() -> None:
        if not table:
            return
        rows = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in table]
        rows = [r for r in rows if not all(set(c) <= set("-: ") for c in r)]
        if rows:
            out.append(_table(rows[0], rows[1:]))
        table.clear()

    for line in text.splitlines():
        if line.strip().startswith("|"):
            table.append(line)
            continue
        flush()
        if line.strip().startswith("#"):
            out.append(f"<h4>{html.escape(line.strip('# '))}</h4>")
        elif line.strip():
            out.append(f"<p>{html.escape(line)}</p>")
    flush()
    return "\n".join(out)


def training_curves(log: list[dict[str, Any]], title: str) -> bytes | None:
    """One PNG with a panel per logged metric against the step."""
    keys = [k for k in log[0] if k not in ("step", "steps_per_s")] if log else []
    if not keys:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = keys[:8]
    cols = min(4, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.7 * rows), squeeze=False)
    steps = [r["step"] for r in log]
    for ax, key in zip(axes.flat, keys):
        ax.plot(steps, [r.get(key, float("nan")) for r in log], lw=1.2)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def real_grid(run_dir: Path, per_class: int = 8) -> bytes | None:
    """A labelled grid of the run's own training images (the real images it learnt from)."""
    try:
        import numpy as np

        from qmedgen.data import load_dataset
        from qmedgen.images import class_grid

        cfg = json.loads((run_dir / "config.json").read_text())
        meta = json.loads((run_dir / "indices.json").read_text())
        data = cfg["data"]
        ds = load_dataset(data["name"], split=meta.get("split", "train"), size=data["size"], root=data.get("root"))
        idx = np.asarray(meta["indices"])
        labels = np.asarray(ds.labels)[idx].reshape(len(idx), -1)[:, 0]
        pick = np.concatenate([idx[labels == c][:per_class] for c in meta["class_ids"]])
        images = ds.images[pick]
        if images.shape[-1] != int(meta["channels"]):
            images = np.repeat(images, 3, axis=-1) if int(meta["channels"]) == 3 else images[..., :1]
        lab = np.asarray(ds.labels)[pick].reshape(len(pick), -1)[:, 0]
        buf = io.BytesIO()
        class_grid(images, lab, list(meta["class_names"])).save(buf, format="PNG")
        return buf.getvalue()
    except Exception:  # the data may not be on this machine: the report says so instead of failing
        return None


def _metric_files(root: Path) -> list[Path]:
    found = [p for p in root.rglob("*.json") if "metric" in p.name or p.name in ("results.json", "robustness.json")]
    return sorted(p for p in found if "checkpoints" not in p.parts)


def _figures(root: Path) -> list[Path]:
    pngs = []
    for p in sorted(root.rglob("*.png")):
        rel = p.relative_to(root).parts
        if any(part.startswith("class_") or part.startswith("samples-") or part == "samples" for part in rel[:-1]):
            continue
        if p.name.startswith("grid-step-") or p.name.startswith("."):
            continue
        pngs.append(p)
    return pngs


def run_section(run_dir: Path, level: int = 2) -> str:
    cfg = json.loads((run_dir / "config.json").read_text())
    status = json.loads((run_dir / "status.json").read_text()) if (run_dir / "status.json").exists() else {}
    h = f"h{level}"
    parts = [f"<{h} id='{html.escape(run_dir.name)}'>{html.escape(run_dir.name)}</{h}>"]
    model = cfg.get("model", {})
    steps = cfg.get("train", {}).get("steps")
    summary = [
        ["model", cfg.get("family", "?")],
        ["data", f"{cfg.get('data', {}).get('name')} (size {cfg.get('data', {}).get('size')})"],
        ["state", f"{status.get('state', '?')} at step {status.get('step', '?')} of {steps}"],
    ]
    summary += [[f"model.{k}", v] for k, v in model.items() if isinstance(v, (int, float, str, bool))][:14]
    parts.append(_table(["setting", "value"], summary))
    log = MetricsLog(run_dir / "metrics.jsonl").read()
    curves = training_curves(log, f"{run_dir.name}: training curves")
    if curves:
        parts.append(f"<h{level + 1}>Training curves</h{level + 1}>" + _figure(curves, "training metrics"))
    grids = sorted((run_dir / "samples").glob("grid-step-*.png")) if (run_dir / "samples").is_dir() else []
    real = real_grid(run_dir)
    if grids or real:
        figs = []
        if grids:
            figs.append(_figure(grids[-1].read_bytes(), f"generated ({grids[-1].stem})"))
        figs.append(_figure(real, "real training images") if real else "<p class='muted'>real images unavailable</p>")
        parts.append(f"<h{level + 1}>Samples next to real images</h{level + 1}><div class='pair'>{''.join(figs)}</div>")
    parts.append(_tables_and_figures(run_dir, level + 1, skip=[]))
    return "\n".join(parts)


def _tables_and_figures(root: Path, level: int, skip: list[Path]) -> str:
    """Metric JSON tables, markdown tables and PNG figures found under ``root``, except under ``skip`` dirs."""

    def skipped(path: Path) -> bool:
        return any(d in path.parents for d in skip)

    parts = []
    for path in _metric_files(root):
        if skipped(path):
            continue
        try:
            rows = flatten_metrics(json.loads(path.read_text()))
        except (json.JSONDecodeError, OSError):
            continue
        if rows:
            rel = path.relative_to(root)
            parts.append(f"<h{level}>Metrics: {html.escape(str(rel))}</h{level}>" + _table(["metric", "value"], rows))
    for md in sorted(root.glob("*.md")):
        parts.append(f"<h{level}>{html.escape(md.name)}</h{level}>" + markdown_tables_to_html(md.read_text()))
    figs = [p for p in _figures(root) if not skipped(p)]
    if figs:
        parts.append(f"<h{level}>Figures</h{level}><div class='pair'>")
        parts.extend(_figure(p.read_bytes(), str(p.relative_to(root)), width=520) for p in figs)
        parts.append("</div>")
    return "\n".join(parts)


def build_report(path: str | Path, out: str | Path | None = None, title: str | None = None) -> Path:
    """Write ``report.html`` for a run directory or a directory of runs/benchmark results; return its path."""
    root = Path(path)
    if not root.is_dir():
        raise UserError(f"report: {root} is not a directory (give a run directory or a benchmark/demo directory)")
    runs = [root] if (root / "config.json").exists() else sorted(
        p.parent for p in root.rglob("config.json") if (p.parent / "metrics.jsonl").exists()
    )
    body = []
    if root not in runs:
        top = _tables_and_figures(root, 3, skip=runs)
        if top:
            body.append("<h2>Summary</h2>" + top)
    if runs and root not in runs:
        body.append("<h2>Runs</h2><ul>" + "".join(
            f"<li><a href='#{html.escape(r.name)}'>{html.escape(str(r.relative_to(root)))}</a></li>" for r in runs
        ) + "</ul>")
    for run in runs:
        body.append(run_section(run, level=2))
    if not body:
        raise UserError(f"report: nothing to report in {root} (no run directories, metrics or figures found)")
    title = title or f"qmedgen report: {root.resolve().name}"
    page = (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style><script>{SCRIPT}</script></head><body><h1>{html.escape(title)}</h1>"
        f"<p class='muted'>Generated by qmedgen from <code>{html.escape(str(root))}</code>. Images are mapped "
        f"from [-1, 1] by (x+1)/2; metrics carry 95% confidence intervals where the evaluation computed them.</p>"
        + "\n".join(body)
        + "</body></html>"
    )
    out = Path(out) if out is not None else root / "report.html"
    with atomic_path(out) as tmp:
        tmp.write_text(page)
    return out
