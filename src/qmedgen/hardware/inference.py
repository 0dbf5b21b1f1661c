"""Inference of a trained model with its circuits run exactly, with shot noise, under a device noise model, or on
an IBM device; export of its trained circuits; and the robustness table (metric deltas vs exact inference).

A "model" here is anything shaped like the lead's trainer (:func:`qmedgen.train.api.load_run`): ``modules()`` ->
dict of ``nn.Module`` (the circuits live in ``QuantumLayer`` instances inside), ``sample(labels, generator=...)``
-> images in [-1, 1], ``spec.class_ids`` and ``device``. The same latent draws (same seed) are used in every mode,
so differences between modes are caused by the circuit executor alone.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from qmedgen.errors import ConfigError
from qmedgen.fileio import write_json
from qmedgen.hardware.backends import circuit_stats, get_backend, transpile_for
from qmedgen.hardware.circuits import build_circuit
from qmedgen.hardware.executors import ExactExecutor, RecordingExecutor, make_executor, quantum_layers, use_executor


def model_layers(model) -> list[torch.nn.Module]:
    """The circuit layers of a trainer-like object (all its modules) or of a plain module."""
    mods = model.modules().values() if hasattr(model, "spec") else [model]
    return [layer for m in mods for layer in quantum_layers(m)]


def layer_weights(layer) -> torch.Tensor:
    """The trained circuit weights ``[*batch, L, R, n]`` of a circuit layer."""
    w = getattr(layer, "weight", None)
    if w is None:
        w = getattr(layer, "weights", None)
    if w is None:
        w = next(iter(layer.parameters()))
    return w.detach()


def _module_names(model) -> list[tuple[str, torch.nn.Module]]:
    mods = model.modules() if hasattr(model, "spec") else {"model": model}
    return [(name, m) for name, m in mods.items() if quantum_layers(m)]


def export_circuits(model, backend: str, out: str | Path, optimization_level: int = 3, seed: int = 0) -> dict:
    """Every trained circuit of ``model`` (one per sub-generator / layer, weights bound, inputs free) as QASM3,
    logical and transpiled for ``backend``, plus depth and two-qubit-gate statistics in ``export.json``."""
    from qmedgen.hardware._qiskit import require

    qasm3 = require("qiskit.qasm3", "OpenQASM 3 export")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dev = get_backend(backend)
    entries = []
    for mod_name, module in _module_names(model):
        for li, layer in enumerate(quantum_layers(module)):
            w = layer_weights(layer)
            ansatz = layer.ansatz
            batch = w.shape[: w.dim() - 3]
            for idx in np.ndindex(*batch) if batch else [()]:
                tag = f"{mod_name}_layer{li}" + "".join(f"_{i}" for i in idx)
                pc = build_circuit(ansatz, weights=w[idx] if idx else w, name=tag)
                isa = transpile_for(pc.circuit, dev, optimization_level, seed)
                (out / f"{tag}.qasm").write_text(qasm3.dumps(pc.circuit))
                (out / f"{tag}.{backend}.qasm").write_text(qasm3.dumps(isa))
                logical = circuit_stats(pc.circuit)
                entries.append(
                    {
                        "circuit": tag,
                        "module": mod_name,
                        "index": list(idx),
                        "n_qubits": ansatz.n_qubits,
                        "depth_layers": ansatz.depth,
                        "logical": {k: logical[k] for k in ("depth", "two_qubit_gates", "two_qubit_depth", "ops")},
                        "transpiled": circuit_stats(isa),
                        "files": [f"{tag}.qasm", f"{tag}.{backend}.qasm"],
                    }
                )
    if not entries:
        raise ConfigError("the model has no trained circuits (no QuantumLayer) to export")
    summary = {"backend": backend, "optimization_level": optimization_level, "seed": seed, "circuits": entries}
    write_json(out / "export.json", summary)
    return summary


def generate(model, labels: torch.Tensor, executor=None, seed: int = 0, batch_size: int = 500,
             progress: bool = False, sample_opts: dict | None = None) -> np.ndarray:
    """uint8 ``[N, H, W, C]`` images for ``labels`` with every circuit run by ``executor`` (None: as trained).

    ``sample_opts`` go to ``model.sample`` (e.g. ``{"sampler": "ddim", "steps": 50}`` for a diffusion model, whose
    bottleneck circuits then run once per denoising step).
    """
    from qmedgen.images import to_pixels

    g = torch.Generator(device=model.device).manual_seed(seed)
    chunks = []
    devices = [model.device] if torch.device(model.device).type == "cuda" else []
    swap = use_executor(model, executor) if executor is not None else contextlib.nullcontext()
    with swap, torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        for start in tqdm(range(0, len(labels), batch_size), desc="inference", disable=not progress, leave=False):
            lab = labels[start : start + batch_size].to(model.device)
            chunks.append(to_pixels(model.sample(lab, generator=g, **(sample_opts or {}))))
    return np.concatenate(chunks) if chunks else np.zeros((0, 1, 1, 1), dtype=np.uint8)


def class_labels(model, n_per_class: int) -> torch.Tensor:
    if n_per_class < 1:
        raise ConfigError(f"n_per_class must be >= 1, got {n_per_class}")
    return torch.tensor([c for c in model.spec.class_ids for _ in range(n_per_class)], dtype=torch.long)


def ssim(a: np.ndarray, b: np.ndarray, win: int = 7, sigma: float = 1.0) -> np.ndarray:
    """Single-scale SSIM per image pair of uint8 ``[N, H, W, C]`` arrays (Gaussian window, 'valid' borders)."""
    x = torch.from_numpy(a).permute(0, 3, 1, 2).double() / 255.0
    y = torch.from_numpy(b).permute(0, 3, 1, 2).double() / 255.0
    win = min(win, x.shape[-1], x.shape[-2])
    t = torch.arange(win, dtype=torch.float64) - (win - 1) / 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = g / g.sum()
    c = x.shape[1]
    k = (g[:, None] * g[None, :]).expand(c, 1, win, win)

    def blur(v):
        return F.conv2d(v, k, groups=c)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.mean(dim=(1, 2, 3)).numpy()


def image_deltas(exact: np.ndarray, other: np.ndarray) -> dict:
    """Pixel MSE (on [0, 1]), PSNR and SSIM of ``other`` against ``exact`` images (same latents)."""
    if exact.shape != other.shape:
        raise ValueError(f"image sets differ in shape: {exact.shape} vs {other.shape}")
    d = (exact.astype(np.float64) - other.astype(np.float64)) / 255.0
    mse = float((d**2).mean())
    s = ssim(exact, other)
    return {
        "pixel_mse": mse,
        "psnr_db": float(10 * math.log10(1.0 / mse)) if mse > 0 else None,
        "ssim_mean": float(s.mean()),
        "ssim_min": float(s.min()),
    }


def infer(model, mode: str, out: str | Path, backend: str | None = None, shots: int = 1024, n_per_class: int = 10,
          seed: int = 0, batch_size: int = 500, record: bool = True, progress: bool = True,
          sample_opts: dict | None = None, **options) -> dict:
    """Generate ``n_per_class`` images per class in one mode; writes samples (class folders + samples.npz) and
    ``inference.json`` (timing, jobs, circuit stats, expectation-value errors vs exact)."""
    from qmedgen.images import write_samples

    executor = make_executor(mode, backend, shots, seed, **options)
    ex = RecordingExecutor(executor) if record and mode != "exact" else executor
    labels = class_labels(model, n_per_class)
    t0 = time.perf_counter()
    images = generate(model, labels, ex, seed, batch_size, progress, sample_opts)
    seconds = time.perf_counter() - t0
    out = Path(out)
    write_samples(images, labels.numpy(), out)
    info = {"mode": mode, "backend": backend, "shots": None if mode == "exact" else shots, "seed": seed,
            "n_images": len(labels), "seconds": seconds}
    if isinstance(ex, RecordingExecutor):
        info["expval_errors"] = ex.summary()
    info.update(_executor_info(executor, model))
    if hasattr(executor, "close"):
        executor.close()
    write_json(out / "inference.json", info)
    return info


def _executor_info(executor, model) -> dict:
    info = {}
    if hasattr(executor, "n_jobs"):
        info["jobs"] = executor.n_jobs
        info["bindings"] = executor.n_bindings
        info["transpiled"] = {str(layer.ansatz): executor.stats(layer.ansatz) for layer in model_layers(model)[:1]}
    if getattr(executor, "job_ids", None):
        info["job_ids"] = executor.job_ids
    return info


def robustness(model, out: str | Path, backends: Sequence[str] = ("fake_marrakesh",), shots: Iterable[int] = (1024,),
               n_per_class: int = 10, seed: int = 0, batch_size: int = 500, include_shots: bool = True,
               kid_extractor: str | None = None, progress: bool = True, sample_opts: dict | None = None,
               **aer_options) -> dict:
    """The robustness table: every (device model x shot count) against exact inference on the same latents.

    Rows: ``shots`` on our simulator (shot noise only, device "ideal") and ``aer`` per fake backend (shot + device
    noise). Columns: pixel MSE / PSNR / SSIM vs the exact images, expectation-value MAE / RMSE / max error vs the
    exact values of the same circuit inputs, wall time, and KID(mode images, exact images) when ``kid_extractor``
    (e.g. ``domain:retinamnist``) is given.
    """
    out = Path(out)
    shots = [int(s) for s in shots]
    labels = class_labels(model, n_per_class)
    t0 = time.perf_counter()
    exact = generate(model, labels, ExactExecutor(), seed, batch_size, sample_opts=sample_opts)
    exact_seconds = time.perf_counter() - t0
    kid_fn = _kid_function(kid_extractor, exact, model) if kid_extractor else None
    configs = [("ideal", "shots", s) for s in shots] if include_shots else []
    configs += [(b, "aer", s) for b in backends for s in shots]
    rows = []
    for device, mode, s in tqdm(configs, desc="robustness", disable=not progress):
        opts = aer_options if mode == "aer" else {}
        executor = make_executor(mode, None if device == "ideal" else device, s, seed, **opts)
        rec = RecordingExecutor(executor)
        t0 = time.perf_counter()
        images = generate(model, labels, rec, seed, batch_size, sample_opts=sample_opts)
        row = {"device": device, "mode": mode, "shots": s, "seconds": time.perf_counter() - t0}
        row.update(image_deltas(exact, images))
        row.update(rec.summary())
        if kid_fn is not None:
            row["kid_vs_exact"] = kid_fn(images)
        rows.append(row)
        _save_grid(images, labels, out / f"grid_{device}_{s}.png")
    _save_grid(exact, labels, out / "grid_exact.png")
    result = {"n_images": len(labels), "seed": seed, "exact_seconds": exact_seconds, "rows": rows,
              "kid_extractor": kid_extractor}
    write_json(out / "robustness.json", result)
    (out / "robustness.md").write_text(robustness_table(rows))
    plot_robustness(rows, out)
    return result


def _kid_function(spec: str, exact: np.ndarray, model) -> Callable[[np.ndarray], float]:
    from qmedgen.evaluate.extractors import load_extractor
    from qmedgen.evaluate.features import extract_features
    from qmedgen.evaluate.metrics import kid

    extractor = load_extractor(spec, size=int(model.spec.size))
    ref = extract_features(extractor, exact, progress=False)

    def fn(images: np.ndarray) -> float:
        return float(kid(ref, extract_features(extractor, images, progress=False)).value)

    return fn


def _save_grid(images: np.ndarray, labels: torch.Tensor, path: Path) -> None:
    from qmedgen.images import grid, save_png

    per_class = max(1, int((labels == labels[0]).sum()))
    n = min(len(images), 8 * per_class)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(grid(images[:n], nrow=per_class), path, scale=2)


def robustness_table(rows: list[dict]) -> str:
    """A Markdown table of the robustness rows."""
    head = (
        "| device | mode | shots | pixel MSE | PSNR (dB) | SSIM | <O> MAE | <O> RMSE | <O> max err "
        "| KID vs exact | s |"
    )
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        kid = r.get("kid_vs_exact")
        psnr = r["psnr_db"]
        lines.append(
            f"| {r['device']} | {r['mode']} | {r['shots']} | {r['pixel_mse']:.2e} | "
            f"{'inf' if psnr is None else f'{psnr:.1f}'} | {r['ssim_mean']:.4f} | {r['expval_mae']:.4f} | "
            f"{r['expval_rmse']:.4f} | {r['expval_max_abs_err']:.3f} | {'-' if kid is None else f'{kid:.2e}'} | "
            f"{r['seconds']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def plot_robustness(rows: list[dict], out: Path) -> Path:
    """Expectation-value RMSE and image SSIM vs shots, one line per device."""
    from qmedgen.analysis.plotting import new_figure, save_figure

    fig, (ax1, ax2) = new_figure(ncols=2)
    for device in dict.fromkeys(r["device"] for r in rows):
        sub = sorted((r for r in rows if r["device"] == device), key=lambda r: r["shots"])
        s = [r["shots"] for r in sub]
        label = "shot noise only (no device noise)" if device == "ideal" else f"{device} (Aer noise model)"
        ax1.plot(s, [r["expval_rmse"] for r in sub], marker="o", label=label)
        ax2.plot(s, [r["ssim_mean"] for r in sub], marker="o", label=label)
    for ax, ylabel, title in (
        (ax1, "RMSE of <O> vs exact", "circuit outputs"),
        (ax2, "SSIM vs exact images", "generated images"),
    ):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("shots per circuit")
        ax.set_ylabel(ylabel)
        ax.set_title(f"Robustness of {title}")
        ax.legend(fontsize=8)
    return save_figure(fig, out, "robustness.png")
