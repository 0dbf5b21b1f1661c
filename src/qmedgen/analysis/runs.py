"""Analysis of trained runs: Jacobian spectra per stream and per circuit, tracked over checkpoints, latent geometry,
and a side-by-side comparison of several runs (a quantum model and its classical counterparts).

What is analysed depends on what the model exposes:

* A MediQ-GAN-style generator (``streams``, ``sample_latent``, ``circuit_inputs``, ``circuit_map``): Jacobians
  d/dz of the whole generator (decoder noise off), of the classical, quantum and fused streams, and of the
  circuit map angles -> expectations at the angles the circuits actually receive; the rank of the quantum stream is
  bounded by K (the K averaged readouts), which the ``max_rank`` column makes visible. Latent geometry (PPL,
  isometry, utilisation, real-vs-generated embeddings) on generated images.
* Any model with circuit layers (e.g. the diffusion bottleneck gate): the circuit map of every circuit at random
  angles U[0, 2*pi), and utilisation/embeddings of generated images.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from qmedgen.analysis import geometry
from qmedgen.analysis.ansatz import linearised_expval
from qmedgen.analysis.jacobian import Spectrum, log_spectrum_figure, spectrum
from qmedgen.analysis.plotting import new_figure, save_figure
from qmedgen.errors import UserError
from qmedgen.fileio import write_json


def find_generator(model) -> torch.nn.Module | None:
    """The module exposing ``streams``/``sample_latent`` (EMA copy preferred), or None."""
    mods = model.modules() if hasattr(model, "spec") else {"model": model}
    cands = [(name, m) for name, m in mods.items() if hasattr(m, "streams") and hasattr(m, "sample_latent")]
    cands.sort(key=lambda nm: "ema" not in nm[0])
    return cands[0][1] if cands else None


def circuit_layers(model) -> list[tuple[str, torch.nn.Module]]:
    """(name, module) of every circuit layer (a module with an ``ansatz`` and a weight tensor)."""
    mods = model.modules() if hasattr(model, "spec") else {"model": model}
    prefer = [n for n in mods if "ema" in n] or list(mods)
    out = []
    for name in prefer:
        for sub, m in mods[name].named_modules():
            if hasattr(m, "ansatz") and any(True for _ in m.parameters(recurse=False)):
                out.append((f"{name}.{sub}" if sub else name, m))
    return out


def _weights(layer) -> torch.Tensor:
    w = getattr(layer, "weight", None)
    if w is None:
        w = getattr(layer, "weights", None)
    return (w if w is not None else next(layer.parameters(recurse=False))).detach()


def circuit_spectra(model, n_samples: int = 8, seed: int = 0, angles: torch.Tensor | None = None) -> dict:
    """Spectra of angles -> expectations for every circuit (every sub-generator of every layer)."""
    out = {}
    g = torch.Generator().manual_seed(seed)
    for name, layer in circuit_layers(model):
        w = _weights(layer).double().cpu()
        ansatz = layer.ansatz
        batch = w.shape[: w.dim() - 3]
        for idx in np.ndindex(*batch) if batch else [()]:
            if angles is not None and batch:
                a = angles[(slice(None), *idx)].double().cpu()
            else:
                a = torch.rand(n_samples, ansatz.n_qubits, generator=g, dtype=torch.float64) * 2 * np.pi
            wk = w[idx] if idx else w
            sp = spectrum(lambda x, wk=wk, ansatz=ansatz: linearised_expval(ansatz, x, wk), a, method="exact")
            out[f"circuit {name}" + "".join(f"[{i}]" for i in idx)] = sp
    return out


def generator_spectra(gen: torch.nn.Module, labels: torch.Tensor, seed: int = 0, method: str = "auto") -> dict:
    """Spectra of d/dz of the generator, its three streams, and its circuit map (at the real circuit inputs)."""
    g = torch.Generator(device=labels.device).manual_seed(seed)
    with torch.no_grad():
        z = gen.sample_latent(labels, generator=g).detach()
    targets: dict[str, Callable] = {
        "generator": lambda zz: gen(zz, labels, noise=False) if _accepts_noise(gen) else gen(zz, labels),
        "classical stream": lambda zz: gen.streams(zz, labels)["classical"],
        "quantum stream": lambda zz: gen.streams(zz, labels)["quantum"],
        "fused": lambda zz: gen.streams(zz, labels)["fused"],
    }
    out = {}
    for name, f in targets.items():
        with torch.no_grad():
            if f(z).numel() == 0:
                continue
        out[name] = spectrum(f, z, method=method)
    if hasattr(gen, "circuit_inputs") and getattr(gen, "K", 1) > 0:
        with torch.no_grad():
            angles = gen.circuit_inputs(z, labels)  # [B, K, n]
        shape = angles.shape[1:]

        def circuits(a: torch.Tensor) -> torch.Tensor:  # flattened angles [B, K*n] -> expectations [B, K*n]
            return gen.circuit_map(a.reshape(a.shape[0], *shape)).reshape(a.shape[0], -1)

        out["circuit map (all K)"] = spectrum(circuits, angles.reshape(angles.shape[0], -1), method="exact")
    return out


def _accepts_noise(gen) -> bool:
    import inspect

    try:
        return "noise" in inspect.signature(gen.forward).parameters
    except (TypeError, ValueError):
        return False


def _labels(model, n: int) -> torch.Tensor:
    ids = list(model.spec.class_ids)
    return torch.tensor([ids[i % len(ids)] for i in range(n)], dtype=torch.long, device=model.device)


def feature_function(spec: str, model) -> tuple[Callable[[torch.Tensor], torch.Tensor], str]:
    """A float-image feature map for ``spec``: ``domain`` (the run's dataset classifier), ``inception``, a
    TorchScript path, or ``pixels``. Falls back to pixels (with a warning) when the extractor cannot be loaded."""
    if spec == "pixels":
        return (lambda x: x.reshape(x.shape[0], -1).detach().float().cpu()), "pixels"
    name = f"domain:{model.spec.dataset}" if spec == "domain" else spec
    try:
        from qmedgen.evaluate.extractors import load_extractor

        ex = load_extractor(name, size=int(model.spec.size), progress=False)
    except (ImportError, UserError, OSError, RuntimeError) as exc:
        warnings.warn(f"feature extractor {name!r} unavailable ({exc}); using pixel space", stacklevel=2)
        return (lambda x: x.reshape(x.shape[0], -1).detach().float().cpu()), "pixels"

    @torch.no_grad()
    def feats(x: torch.Tensor) -> torch.Tensor:
        # the extractor's own preprocessing on [0, 255] floats (no uint8 rounding)
        return ex.forward(ex.preprocess(((x.float() + 1) * 127.5).to(ex.device))).cpu()

    return feats, name


def real_images(model, per_class: int) -> tuple[torch.Tensor, np.ndarray] | None:
    """Up to ``per_class`` training images of each trained class, [-1, 1] floats, or None when unavailable."""
    try:
        from qmedgen.data import load_dataset

        ds = load_dataset(model.spec.dataset, split="train", size=int(model.spec.size))
        rng = np.random.default_rng(0)
        labels = np.asarray(ds.labels)
        if labels.ndim != 1:
            raise ValueError("multi-label datasets have no single class per image")
        idx = np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:per_class]
                                      for c in model.spec.class_ids]))
        x, y = ds.tensors(idx)
        return x, y.numpy()
    except (ImportError, UserError, OSError, ValueError, TypeError) as exc:
        warnings.warn(f"real images of {model.spec.dataset!r} unavailable ({exc}); embeddings show generated only",
                      stacklevel=2)
        return None


def geometry_report(model, gen, features: Callable, out_dir: Path, n: int = 64, seed: int = 0,
                    embed_per_class: int = 30, sample_opts: dict | None = None) -> dict:
    """PPL, isometry and utilisation (GAN), plus utilisation and embeddings of generated vs real features."""
    result: dict = {}
    g = torch.Generator(device=model.device).manual_seed(seed)
    if gen is not None:
        labels = _labels(model, n)
        with torch.no_grad():
            z0 = gen.sample_latent(labels, generator=g)
            z1 = gen.sample_latent(labels, generator=g)

        def generate(zz):
            return gen(zz, labels, noise=False) if _accepts_noise(gen) else gen(zz, labels)

        result["ppl"] = geometry.perceptual_path_length(generate, features, z0, z1, generator=torch.Generator()
                                                        .manual_seed(seed))
        result["isometry_pixels"] = geometry.local_isometry(generate, z0)
        result["isometry_features"] = geometry.local_isometry(lambda zz: features(generate(zz)), z0)
        with torch.no_grad():
            st = gen.streams(z0, labels)
        util = {k: geometry.utilisation(v) for k, v in st.items() if v.numel() > 0}
        util["latent z"] = geometry.utilisation(z0)
        result["utilisation"] = util
    # generated vs real features per class
    labels = torch.tensor([c for c in model.spec.class_ids for _ in range(embed_per_class)], dtype=torch.long,
                          device=model.device)
    with torch.no_grad():
        fake = model.sample(labels, generator=g, **(sample_opts or {}))
        ff = features(fake).numpy()
    result.setdefault("utilisation", {})["generated features"] = geometry.utilisation(ff)
    real = real_images(model, embed_per_class)
    if real is not None:
        fr = features(real[0].to(model.device)).numpy()
        result["utilisation"]["real features"] = geometry.utilisation(fr)
        geometry.embedding_figures(fr, real[1], ff, labels.cpu().numpy(), out_dir,
                                   class_names=list(model.spec.class_names))
    else:
        geometry.embedding_figures(np.zeros((0, ff.shape[1])), np.zeros(0), ff, labels.cpu().numpy(), out_dir,
                                   class_names=list(model.spec.class_names))
    geometry.utilisation_figure(result["utilisation"], out_dir, title="Explained variance (PCA) per representation")
    for u in result["utilisation"].values():
        u["explained_variance_ratio"] = u["explained_variance_ratio"][:64]  # keep JSON small
    return result


def _summaries(spectra: dict[str, Spectrum]) -> dict:
    return {k: v.summary() for k, v in spectra.items()}


def analyze_run(run_dir: str | Path, out: str | Path | None = None, checkpoint: str = "latest",
                all_checkpoints: bool = True, n_samples: int = 8, extractor: str = "domain",
                geometry_samples: int = 64, device: str = "cpu", seed: int = 0,
                sample_opts: dict | None = None, loader: Callable | None = None) -> dict:
    """Analyse one run; writes ``analysis.json`` and figures to ``out`` (default ``RUN_DIR/analysis``)."""
    from qmedgen.train.checkpoint import list_checkpoints

    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / "analysis"
    load = loader or _load_run
    model = load(run_dir, checkpoint, device)
    family = getattr(model, "family", "") or type(model).__name__
    result: dict = {"run_dir": str(run_dir), "family": family, "checkpoint": checkpoint}
    final = _spectra_for(model, n_samples, seed, sample_opts)
    result["jacobian"] = _summaries(final)
    if final:
        log_spectrum_figure({k: v for k, v in final.items() if not k.startswith("circuit ")} or final,
                            f"Jacobian spectra ({run_dir.name})", out, "jacobian_spectra.png")
    gen = find_generator(model)
    feats, feat_name = feature_function(extractor, model)
    result["feature_space"] = feat_name
    result["geometry"] = geometry_report(model, gen, feats, out, geometry_samples, seed, sample_opts=sample_opts)
    if all_checkpoints:
        track = []
        ckpts = list_checkpoints(run_dir / "checkpoints")
        for path in tqdm(ckpts, desc="checkpoints", leave=False):
            step = int(path.name.split("-")[-1])
            m = load(run_dir, step, device)
            spectra = _spectra_for(m, n_samples, seed, sample_opts)
            track.append({"step": step, "jacobian": {k: _brief(v) for k, v in spectra.items()}})
        result["checkpoints"] = track
        if track:
            plot_tracking(track, out)
    write_json(out / "analysis.json", result)
    return result


def _brief(sp: Spectrum) -> dict:
    s = sp.summary()
    return {k: s[k] for k in ("erank_mean", "numerical_rank_mean", "log10_condition_median", "max_rank")}


def _spectra_for(model, n_samples: int, seed: int, sample_opts: dict | None = None) -> dict[str, Spectrum]:
    gen = find_generator(model)
    with autograd_circuits(model):
        if gen is not None:
            return generator_spectra(gen, _labels(model, n_samples), seed)
        gates = gate_modules(model)
        if not gates:
            return circuit_spectra(model, n_samples, seed)
        pooled = capture_gate_inputs(model, gates, n_samples, seed, sample_opts)
        out = {}
        for name, gate in gates:
            p = pooled[name][:n_samples].float().to(model.device)
            out[f"gate logits {name}"] = spectrum(lambda x, gate=gate: gate_logits(gate, x), p, method="exact")
            if hasattr(gate, "circuit"):
                with torch.no_grad():
                    angles = gate.proj_in(p).double()
                layer = gate.circuit
                w = _weights(layer).double()
                sp = spectrum(lambda a, layer=layer, w=w: linearised_expval(layer.ansatz, a, w), angles,
                              method="exact")
                out[f"circuit {name}"] = sp
        return out


def gate_modules(model) -> list[tuple[str, torch.nn.Module]]:
    """Channel gates of a diffusion U-Net bottleneck (quantum or classical SE), EMA copies preferred."""
    mods = model.modules() if hasattr(model, "spec") else {"model": model}
    prefer = [n for n in mods if "ema" in n] or list(mods)
    return [(f"{n}.{sub}", m) for n in prefer for sub, m in mods[n].named_modules()
            if hasattr(m, "_gate") and hasattr(m, "proj_in") and hasattr(m, "proj_out")]


def gate_logits(gate: torch.nn.Module, pooled: torch.Tensor) -> torch.Tensor:
    """Pooled bottleneck features [B, C] -> per-channel gate logits [B, C] (before the gate activation)."""
    if hasattr(gate, "circuit"):
        return gate.proj_out(gate.circuit(gate.proj_in(pooled)).to(pooled.dtype))
    return gate.proj_out(torch.nn.functional.silu(gate.proj_in(pooled)))


@torch.no_grad()
def capture_gate_inputs(model, gates, n: int, seed: int, sample_opts: dict | None = None) -> dict[str, torch.Tensor]:
    """Pooled inputs [N, C] each gate sees while the model generates ``n`` images (all denoising steps)."""
    seen: dict[str, list[torch.Tensor]] = {name: [] for name, _ in gates}
    hooks = [gate.register_forward_pre_hook(
        lambda mod, args, name=name: seen[name].append(args[0].float().mean(dim=(2, 3)).cpu()))
        for name, gate in gates]
    try:
        g = torch.Generator(device=model.device).manual_seed(seed)
        model.sample(_labels(model, n), generator=g, **(sample_opts or {}))
    finally:
        for h in hooks:
            h.remove()
    out = {}
    rng = np.random.default_rng(seed)
    for name, chunks in seen.items():
        if not chunks:
            raise UserError(f"gate {name} was never called while sampling; cannot analyse it")
        allp = torch.cat(chunks)
        out[name] = allp[torch.from_numpy(rng.permutation(len(allp)))]  # mixed over denoising steps
    return out


@contextlib.contextmanager
def autograd_circuits(model):
    """Run every circuit layer through :func:`~qmedgen.analysis.ansatz.linearised_expval` (exact values and exact
    input derivatives in a form that jvps, repeated vjps and double vjps handle cheaply; the fast engine's adjoint
    backward allows one reverse pass per forward only)."""
    from qmedgen.hardware.executors import quantum_layers

    mods = model.modules().values() if hasattr(model, "spec") else [model]
    layers = list({id(la): la for m in mods for la in quantum_layers(m)}.values())
    old = [la.executor for la in layers]
    try:
        for la in layers:
            la.executor = linearised_expval
        yield
    finally:
        for la, ex in zip(layers, old):
            la.executor = ex


def _load_run(run_dir, checkpoint, device):
    from qmedgen.train.api import load_run

    return load_run(run_dir, checkpoint, device)


def plot_tracking(track: list[dict], out: Path) -> Path:
    """Effective rank of every analysed map against the checkpoint step."""
    fig, ax = new_figure()
    names = list(dict.fromkeys(k for t in track for k in t["jacobian"]))
    steps = [t["step"] for t in track]
    for name in names:
        ax.plot(steps, [t["jacobian"].get(name, {}).get("erank_mean", np.nan) for t in track], marker="o", label=name)
    ax.set_xlabel("training step (checkpoint)")
    ax.set_ylabel("effective rank of the Jacobian (mean)")
    ax.set_title("Jacobian effective rank over training")
    ax.legend(fontsize=8)
    return save_figure(fig, out, "jacobian_erank_checkpoints.png")


def compare_runs(results: Sequence[dict], out: str | Path) -> dict:
    """One table and one figure comparing the final Jacobian and geometry statistics of several runs."""
    out = Path(out)
    rows = []
    for r in results:
        name = Path(r["run_dir"]).name
        geo = r.get("geometry", {})
        for target, s in r.get("jacobian", {}).items():
            rows.append({"run": name, "map": target, "erank": s["erank_mean"], "max_rank": s["max_rank"],
                         "numerical_rank": s["numerical_rank_mean"], "log10_cond": s["log10_condition_median"],
                         "ppl": geo.get("ppl", {}).get("ppl"),
                         "pr_generated": geo.get("utilisation", {}).get("generated features", {})
                         .get("participation_ratio")})
    lines = ["| run | map | erank | num. rank | max rank | log10 cond | PPL | PR (generated) |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    def fmt(v, f="{:.2f}", none="-"):
        return none if v is None else f.format(v)

    for r in rows:
        cells = [r["run"], r["map"], fmt(r["erank"]), fmt(r["numerical_rank"], "{:.1f}"), str(r["max_rank"]),
                 fmt(r["log10_cond"], none="inf"), fmt(r["ppl"], "{:.3g}"), fmt(r["pr_generated"])]
        lines.append("| " + " | ".join(cells) + " |")
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.md").write_text("\n".join(lines) + "\n")
    runs = list(dict.fromkeys(r["run"] for r in rows))
    maps = list(dict.fromkeys(r["map"] for r in rows if not r["map"].startswith("circuit ")))
    fig, ax = new_figure(max(6.0, 1.2 * len(maps) * max(1, len(runs)) / 2), 4.2)
    width = 0.8 / max(1, len(runs))
    for i, run in enumerate(runs):
        vals = [next((r["erank"] for r in rows if r["run"] == run and r["map"] == m), np.nan) for m in maps]
        ax.bar(np.arange(len(maps)) + i * width, vals, width, label=run)
    ax.set_xticks(np.arange(len(maps)) + width * (len(runs) - 1) / 2, maps, rotation=20, fontsize=8)
    ax.set_ylabel("effective rank of dG/dz (mean)")
    ax.set_title("Jacobian effective rank per map and run")
    ax.legend(fontsize=8)
    save_figure(fig, out, "comparison_erank.png")
    write_json(out / "comparison.json", {"rows": rows})
    return {"rows": rows}
