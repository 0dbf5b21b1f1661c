"""Latent geometry of a generator: perceptual path length, local isometry, latent-space utilisation, 2-D embeddings.

* Perceptual path length (Karras et al. 2019, StyleGAN): for latent pairs (z0, z1) and t ~ U(0, 1),
  PPL = E[ ||phi(G(zt)) - phi(G(zt+eps))||^2 / eps^2 ] with zt = lerp(z0, z1, t) (or slerp for Gaussian latents),
  phi a feature map (the domain classifier's features by default in the CLI; any callable here). As in StyleGAN
  the 1 % tails are trimmed before averaging. Images are fed to phi as floats (no uint8 rounding, which would
  swallow the eps-sized steps).
* Local isometry: for random unit directions u, the stretch r(z, u) = ||G(z + eps u) - G(z)|| / eps. An isometric
  generator (up to scale) has r constant over z and u; we report the mean, the coefficient of variation over all
  (z, u), and the mean per-sample anisotropy max_u r / min_u r.
* Utilisation: the explained-variance spectrum of features (PCA), the participation ratio
  PR = (sum l_i)^2 / sum l_i^2 (the "effective number of dimensions" used), and the components for 90/95/99 %.
* 2-D embeddings of real vs generated features per class: PCA always, UMAP when ``umap-learn`` is installed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from qmedgen.errors import ConfigError

FeatureFn = Callable[[torch.Tensor], torch.Tensor]


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1).double()


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of rows of ``a`` and ``b`` (falls back to lerp for (anti)parallel rows)."""
    an, bn = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.acos((an * bn).sum(-1).clamp(-1 + 1e-7, 1 - 1e-7)).unsqueeze(-1)
    so = torch.sin(omega)
    t = t.unsqueeze(-1)
    out = (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b
    lerp = a + t * (b - a)
    return torch.where(so.abs() < 1e-6, lerp, out)


@torch.no_grad()
def perceptual_path_length(
    generate: Callable[[torch.Tensor], torch.Tensor],
    features: FeatureFn,
    z0: torch.Tensor,
    z1: torch.Tensor,
    eps: float = 1e-4,
    interpolation: str = "lerp",
    generator: torch.Generator | None = None,
    trim: float = 0.01,
) -> dict:
    """PPL of ``generate: z -> images`` in the space of ``features`` over the latent pairs ``(z0[i], z1[i])``."""
    if interpolation not in ("lerp", "slerp"):
        raise ConfigError(f"interpolation must be 'lerp' or 'slerp', got {interpolation!r}")
    t = torch.rand(z0.shape[0], generator=generator, dtype=z0.dtype).to(z0.device)
    interp = slerp if interpolation == "slerp" else (lambda a, b, s: a + s.unsqueeze(-1) * (b - a))
    za, zb = interp(z0, z1, t), interp(z0, z1, t + eps)
    fa, fb = _flat(features(generate(za))), _flat(features(generate(zb)))
    d = ((fa - fb) ** 2).sum(-1).cpu().numpy() / eps**2
    lo, hi = np.quantile(d, [trim, 1 - trim]) if len(d) >= 3 else (d.min(), d.max())
    kept = d[(d >= lo) & (d <= hi)]
    return {
        "ppl": float(kept.mean()),
        "ppl_median": float(np.median(d)),
        "n_pairs": len(d),
        "eps": eps,
        "interpolation": interpolation,
        "trim": trim,
    }


@torch.no_grad()
def local_isometry(
    f: Callable[[torch.Tensor], torch.Tensor],
    z: torch.Tensor,
    eps: float = 1e-3,
    n_dirs: int = 8,
    generator: torch.Generator | None = None,
) -> dict:
    """Stretch statistics of ``f`` around each row of ``z`` along ``n_dirs`` random unit directions."""
    base = _flat(f(z))
    ratios = []
    for _ in range(n_dirs):
        u = torch.randn(z.shape, generator=generator, dtype=z.dtype).to(z.device)
        u = u / u.norm(dim=-1, keepdim=True)
        ratios.append(((_flat(f(z + eps * u)) - base).norm(dim=-1) / eps).cpu())
    r = torch.stack(ratios, dim=1).numpy()  # [B, n_dirs]
    mean = float(r.mean())
    with np.errstate(divide="ignore", invalid="ignore"):
        aniso = r.max(axis=1) / r.min(axis=1)
    return {
        "stretch_mean": mean,
        "stretch_std": float(r.std()),
        "stretch_cv": float(r.std() / mean) if mean > 0 else None,
        "anisotropy_mean": float(np.mean(aniso[np.isfinite(aniso)])) if np.isfinite(aniso).any() else None,
        "collapsed_fraction": float((r < 1e-6 * max(mean, 1e-300)).mean()),
        "eps": eps,
        "n_dirs": n_dirs,
        "n_samples": int(z.shape[0]),
    }


def utilisation(features: np.ndarray | torch.Tensor) -> dict:
    """Explained-variance spectrum and participation ratio of ``features [N, D]``."""
    x = np.asarray(features.detach().cpu() if isinstance(features, torch.Tensor) else features, dtype=np.float64)
    x = x.reshape(x.shape[0], -1)
    if x.shape[0] < 2:
        raise ConfigError(f"utilisation needs at least 2 feature vectors, got {x.shape[0]}")
    xc = x - x.mean(axis=0)
    s = np.linalg.svd(xc, compute_uv=False)
    lam = s**2 / (x.shape[0] - 1)
    total = lam.sum()
    if total <= 0:
        return {"participation_ratio": 0.0, "explained_variance_ratio": [0.0] * len(lam), "components_90": 0,
                "components_95": 0, "components_99": 0, "dim": x.shape[1], "n": x.shape[0]}
    ratio = lam / total
    cum = np.cumsum(ratio)

    def comps(q):
        return int(np.searchsorted(cum, q - 1e-12) + 1)

    return {
        "participation_ratio": float(total**2 / (lam**2).sum()),
        "explained_variance_ratio": ratio.tolist(),
        "components_90": comps(0.90),
        "components_95": comps(0.95),
        "components_99": comps(0.99),
        "dim": int(x.shape[1]),
        "n": int(x.shape[0]),
    }


def pca_2d(x: np.ndarray) -> np.ndarray:
    """Projection of rows of ``x`` on their first two principal components."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    xc = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    out = xc @ vt[:2].T
    return out if out.shape[1] == 2 else np.pad(out, ((0, 0), (0, 2 - out.shape[1])))


def umap_2d(x: np.ndarray, seed: int = 0) -> np.ndarray | None:
    """UMAP embedding, or None when ``umap-learn`` is not installed."""
    try:
        import umap
    except ImportError:
        return None
    return umap.UMAP(n_components=2, random_state=seed).fit_transform(np.asarray(x).reshape(len(x), -1))


def embedding_figures(real: np.ndarray, real_labels: np.ndarray, fake: np.ndarray, fake_labels: np.ndarray,
                      out_dir, prefix: str = "embedding", class_names: list[str] | None = None,
                      title: str = "") -> list:
    """Scatter plots (PCA, and UMAP when installed) of real (o) vs generated (x) features, coloured by class.

    Both sets are embedded jointly so their positions are comparable.
    """
    from qmedgen.analysis.plotting import new_figure, save_figure

    fake = np.asarray(fake, dtype=np.float64).reshape(len(fake), -1)
    real = np.asarray(real, dtype=np.float64).reshape(len(real), fake.shape[1])
    joint = np.concatenate([real, fake])
    paths = []
    for method, emb in (("pca", pca_2d(joint)), ("umap", umap_2d(joint))):
        if emb is None:
            continue
        er, ef = emb[: len(real)], emb[len(real) :]
        fig, ax = new_figure(6.5, 5.0)
        classes = sorted(set(np.asarray(real_labels).tolist()) | set(np.asarray(fake_labels).tolist()))
        cmap = __import__("matplotlib").colormaps["tab10"]
        for i, c in enumerate(classes):
            name = class_names[i] if class_names and i < len(class_names) else f"class {c}"
            col = cmap(i % 10)
            m = np.asarray(real_labels) == c
            ax.scatter(er[m, 0], er[m, 1], s=14, marker="o", color=col, alpha=0.6, label=f"{name} real")
            m = np.asarray(fake_labels) == c
            ax.scatter(ef[m, 0], ef[m, 1], s=18, marker="x", color=col, alpha=0.9, label=f"{name} generated")
        ax.set_xlabel(f"{method.upper()} 1")
        ax.set_ylabel(f"{method.upper()} 2")
        ax.set_title(title or f"Real (o) vs generated (x) features, {method.upper()}")
        ax.legend(fontsize=7, ncol=2)
        paths.append(save_figure(fig, out_dir, f"{prefix}_{method}.png"))
    return paths


def utilisation_figure(spectra: dict[str, dict], out_dir, name: str = "utilisation.png", title: str = ""):
    """Cumulative explained variance of several feature sets (legend gives the participation ratio)."""
    from qmedgen.analysis.plotting import new_figure, save_figure

    fig, ax = new_figure()
    for label, u in spectra.items():
        cum = np.cumsum(u["explained_variance_ratio"])
        ax.plot(np.arange(1, len(cum) + 1), cum, label=f"{label} (PR {u['participation_ratio']:.1f})")
    ax.set_xscale("log")
    ax.set_xlabel("number of principal components")
    ax.set_ylabel("cumulative explained variance")
    ax.set_ylim(0, 1.02)
    ax.set_title(title or "Latent-space utilisation")
    ax.legend(fontsize=8)
    return save_figure(fig, out_dir, name)
