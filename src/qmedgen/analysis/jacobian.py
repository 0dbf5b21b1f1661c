"""Jacobian spectra of any batched map f: z [B, d] -> x [B, ...]: singular values, effective rank, conditioning.

Per sample b the Jacobian J_b = d f(z)_b / d z_b is an [m, d] matrix (m = output size). Two ways to its spectrum:

* ``exact``: the full Jacobian from min(d, m) products: d jvps when d <= m, else m vjps, all from one forward
  pass; each product serves the whole batch (samples are independent).
* ``randomized``: the randomised SVD of Halko, Martinsson & Tropp (2011) from Jacobian-vector products only:
  Y = J Omega (k + p jvps with Gaussian Omega), ``power_iters`` rounds of Y <- J J^T Y, Q = qr(Y), then the SVD of
  B = Q^T J (k + p vjps). Exact (to rounding) when k + p >= d (then no power iterations are run); it never forms
  the [m, d] matrix per sample, only [m, k + p] sketches, so it is the choice for large outputs AND large latents,
  or for the top-k spectrum only. ``auto`` picks ``exact`` whenever the B full Jacobians fit in memory (a
  64x64x3 generator with a 128-d latent: d = 128 jvps) and ``randomized`` beyond.
  Samples are independent, so one jvp/vjp call with a [B, ...] tangent serves the whole batch.

Randomness inside f (noise injection, dropout) would make repeated products inconsistent; every call of f is made
under a fixed torch seed (``seed``) so each product sees the same noise realisation. Put models in eval mode.

Effective rank (Roy & Vetterli 2007): erank = exp(H(p)), p_i = s_i / sum_j s_j, H the Shannon entropy; between 1
and min(m, d). Condition number: s_max / s_min over the min(m, d) singular values (inf when s_min is 0).
Numerical rank: #{s_i > rtol * s_max} with ``rtol`` = 1e-5 (about float32 resolution of the outputs); singular
values below that threshold count as 0 for the condition number (so a rank-deficient Jacobian reports inf).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from qmedgen.errors import ConfigError

METHODS = ("auto", "exact", "randomized")


@dataclass
class Spectrum:
    """Singular values per sample (descending) and their summaries."""

    singular_values: np.ndarray  # [B, r]
    in_dim: int
    out_dim: int
    method: str
    erank: np.ndarray = field(init=False)
    condition: np.ndarray = field(init=False)
    numerical_rank: np.ndarray = field(init=False)
    rtol: float = 1e-5

    def __post_init__(self) -> None:
        s = np.asarray(self.singular_values, dtype=np.float64)
        self.singular_values = s
        self.erank = effective_rank(s)
        # singular values below rtol * s_max are zero at this precision: such a Jacobian is singular (inf)
        self.condition = condition_number(np.where(s > self.rtol * s[:, :1], s, 0.0))
        self.numerical_rank = (s > self.rtol * s[:, :1]).sum(axis=1)

    def summary(self) -> dict:
        """JSON-ready statistics over samples (inf condition numbers become null)."""
        log_cond = np.log10(self.condition)
        finite = np.isfinite(log_cond)
        mean_sv = self.singular_values.mean(axis=0)
        return {
            "method": self.method,
            "in_dim": self.in_dim,
            "out_dim": self.out_dim,
            "n_samples": int(self.singular_values.shape[0]),
            "max_rank": int(min(self.in_dim, self.out_dim)),
            "erank_mean": float(self.erank.mean()),
            "erank_std": float(self.erank.std()),
            "numerical_rank_mean": float(self.numerical_rank.mean()),
            "numerical_rank_min": int(self.numerical_rank.min()),
            "log10_condition_median": float(np.median(log_cond[finite])) if finite.any() else None,
            "singular_fraction": float(1.0 - finite.mean()),
            "sigma_max_mean": float(self.singular_values[:, 0].mean()),
            "mean_singular_values": mean_sv.tolist(),
        }


def effective_rank(s: np.ndarray) -> np.ndarray:
    """Entropy effective rank exp(H(s / sum s)) along the last axis (Roy & Vetterli 2007); 0 for a zero map."""
    s = np.abs(np.asarray(s, dtype=np.float64))
    total = s.sum(axis=-1, keepdims=True)
    p = np.divide(s, total, out=np.zeros_like(s), where=total > 0)
    h = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=-1)
    return np.where(total[..., 0] > 0, np.exp(h), 0.0)


def condition_number(s: np.ndarray) -> np.ndarray:
    """s_max / s_min along the last axis (inf when s_min == 0)."""
    s = np.asarray(s, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        c = s.max(axis=-1) / s.min(axis=-1)
    return np.where(np.isnan(c), np.inf, c)


def _seeded(f: Callable, seed: int | None) -> Callable:
    if seed is None:
        return f

    def g(z):
        devices = [z.device] if z.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            return f(z)

    return g


def exact_jacobian(f: Callable, z: torch.Tensor, seed: int | None = 0) -> torch.Tensor:
    """Per-sample Jacobians ``[B, m, d]`` of a batched map ``f`` (outputs flattened per sample).

    Samples are independent, so one product with a tangent (cotangent) that is the same basis vector for every
    sample gives a column (row) of every sample's Jacobian at once: d jvps when d <= m, else m vjps.
    """
    fs = _seeded(f, seed)
    b, d = z.shape
    with torch.no_grad():
        m = fs(z).numel() // b  # whole batch: the map may close over per-sample data (labels)
    if d <= m:
        eye = torch.eye(d, dtype=z.dtype, device=z.device)
        cols = _jvps(fs, z, [eye[j].expand(b, d) for j in range(d)])
        return torch.stack([c.reshape(b, -1) for c in cols], dim=-1)
    eye = torch.eye(m, dtype=z.dtype, device=z.device)
    rows = _vjps(fs, z, [eye[i].expand(b, m) for i in range(m)])
    return torch.stack(rows, dim=1)


def _jvps(f: Callable, z: torch.Tensor, tangents: list[torch.Tensor]) -> list[torch.Tensor]:
    """Jacobian-vector products J t for several tangents from ONE forward pass.

    Reverse-over-reverse ("double vjp"): u -> J^T u is linear in u, so d/du <J^T u, t> = J t; one graph of
    J^T u serves every tangent. Faster than forward-mode AD through complex-valued simulators here; falls back to
    ``torch.func.jvp`` when the map has no double backward.
    """
    try:
        zz = z.detach().requires_grad_(True)
        with torch.enable_grad():
            y = f(zz)
            u = torch.zeros_like(y, requires_grad=True)
            (g,) = torch.autograd.grad(y, zz, u, create_graph=True)
            out = []
            for i, t in enumerate(tangents):
                (jt,) = torch.autograd.grad(g, u, t, retain_graph=i < len(tangents) - 1, allow_unused=True)
                out.append(torch.zeros_like(y) if jt is None else jt.detach())
        return out
    except RuntimeError:
        return [torch.func.jvp(f, (z,), (t,))[1].detach() for t in tangents]


def _vjps(f: Callable, z: torch.Tensor, us: list[torch.Tensor]) -> list[torch.Tensor]:
    z = z.detach().requires_grad_(True)
    with torch.enable_grad():
        y = f(z)
        out = []
        for i, u in enumerate(us):
            (g,) = torch.autograd.grad(y, z, u.reshape(y.shape), retain_graph=i < len(us) - 1, allow_unused=True)
            out.append(torch.zeros_like(z) if g is None else g.detach())
    return out


def randomized_singular_values(
    f: Callable,
    z: torch.Tensor,
    k: int | None = None,
    oversample: int = 8,
    power_iters: int = 1,
    seed: int | None = 0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Top singular values ``[B, min(k, d)]`` of each sample's Jacobian from jvp/vjp products only."""
    fs = _seeded(f, seed)
    b, d = z.shape
    k = d if k is None else min(k, d)
    ell = min(d, k + oversample)
    omega = torch.randn(ell, b, d, generator=generator, dtype=z.dtype).to(z.device)
    y = torch.stack([c.reshape(b, -1) for c in _jvps(fs, z, list(omega))], dim=-1)  # J Omega: [B, m, ell]
    for _ in range(power_iters if ell < d else 0):  # with ell = d the sketch already spans the whole range
        q = torch.linalg.qr(y).Q
        w = torch.stack(_vjps(fs, z, [q[..., j] for j in range(ell)]), dim=-1)  # J^T Q: [B, d, ell]
        w = torch.linalg.qr(w).Q
        y = torch.stack([c.reshape(b, -1) for c in _jvps(fs, z, [w[..., j] for j in range(ell)])], dim=-1)
    q = torch.linalg.qr(y).Q  # [B, m, ell]
    bt = torch.stack(_vjps(fs, z, [q[..., j] for j in range(ell)]), dim=-1)  # B^T = J^T Q: [B, d, ell]
    s = torch.linalg.svdvals(bt)
    return s[:, :k]


def spectrum(
    f: Callable,
    z: torch.Tensor,
    method: str = "auto",
    k: int | None = None,
    exact_max_elements: int = 50_000_000,
    seed: int | None = 0,
    generator: torch.Generator | None = None,
) -> Spectrum:
    """Singular values of the per-sample Jacobians of ``f`` at the latent points ``z [B, d]``.

    ``auto`` forms the exact Jacobians (min(m, d) products) when all of them together have at most
    ``exact_max_elements`` entries (e.g. 8 samples of a 64x64x3 generator with a 128-d latent: 1.3e7), and uses
    the randomised method otherwise; ``k`` (randomised only) keeps the top-k singular values.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown Jacobian method {method!r}; expected one of {METHODS}")
    if z.dim() != 2:
        raise ConfigError(f"latent points must have shape [B, d], got {tuple(z.shape)}")
    with torch.no_grad():
        m = _seeded(f, seed)(z).numel() // z.shape[0]
    d = z.shape[1]
    if method == "auto":
        method = "exact" if z.shape[0] * m * d <= exact_max_elements else "randomized"
    if method == "exact":
        jac = exact_jacobian(f, z, seed).detach()
        s = torch.linalg.svdvals(jac.to(torch.float64))
    else:
        s = randomized_singular_values(f, z, k=k, seed=seed, generator=generator).detach()
    return Spectrum(s.cpu().numpy(), in_dim=d, out_dim=m, method=method)


def log_spectrum_figure(spectra: dict[str, Spectrum], title: str, out_dir, name: str):
    """Mean normalised singular-value spectra (s_i / s_1) of several maps on one log-scale figure."""
    from qmedgen.analysis.plotting import new_figure, save_figure

    fig, ax = new_figure()
    for label, sp in spectra.items():
        s = sp.singular_values
        norm = s / np.maximum(s[:, :1], 1e-300)
        mean = norm.mean(axis=0)
        label = f"{label} (erank {sp.erank.mean():.1f})"
        ax.semilogy(np.arange(1, mean.size + 1), np.maximum(mean, 1e-16), label=label)
    ax.set_xlabel("singular value index i")
    ax.set_ylabel(r"$\sigma_i / \sigma_1$ (mean over samples)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return save_figure(fig, out_dir, name)
