"""Trainability and expressivity of a VQC ansatz: barren-plateau scans, expressibility, entangling capability.

All quantities are Monte-Carlo estimates over random circuit parameters. Both the data inputs (encoding angles)
and the trainable weights are drawn at random: in a model the encoding angles come from a learned projection and
range over the whole circle, so they are part of the parameter distribution being probed.

* Angles: inputs and weights i.i.d. uniform on [0, 2*pi).
* Gradient variance (McClean et al. 2018; Cerezo et al. 2021): Var over random parameters of dC/dtheta for every
  trainable weight theta, with the cost C one of
  ``"mean"``   -- the mean of the n single-qubit readouts <P_i> (what MediQ-GAN feeds forward; a local cost),
  ``"local"``  -- <P_0>, the readout of the first qubit alone,
  ``"global"`` -- <P x P x ... x P>, the parity of all qubits in the readout basis (a global cost, whose gradients
  vanish exponentially in n even for shallow circuits).
  We report the variance averaged over all weights and that of the first weight (layer 0, first rotation, qubit 0).
* Expressibility (Sim, Johnson, Aspuru-Guzik 2019): KL(P_PQC(F) || P_Haar(F)) of the fidelity F = |<psi|phi>|^2 of
  random state pairs, histogram of ``bins`` (default 75, as in the paper) equal-width bins on [0, 1]; the Haar bin
  masses are integrated exactly from P(F) = (N-1)(1-F)^(N-2): mass[a, b] = (1-a)^(N-1) - (1-b)^(N-1).
  Lower = more expressive. Empty PQC bins contribute 0 (0 log 0 = 0).
* Entangling capability: the Meyer-Wallach measure Q = 2 (1 - mean_k tr(rho_k^2)) averaged over random parameters
  (0 for product states, 1 for GHZ/Bell states).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from qmedgen.errors import ConfigError
from qmedgen.quantum import Ansatz, simulate

PRESETS = ("mediqgan", "qdiffusion")
COSTS = ("mean", "local", "global")
TWO_PI = 2 * math.pi


def autograd_expval(ansatz: Ansatz, inputs: torch.Tensor, weights: torch.Tensor, shots=None, generator=None):
    """Exact <P_i> through plain autograd (the engine's reference simulator), so that forward-mode AD, vmap and
    repeated backward passes work; the fast engine's adjoint backward allows one reverse pass per forward only.
    Same signature as ``expval`` (shots ignored), so it doubles as a ``QuantumLayer`` executor."""
    from qmedgen.quantum._reference import expval as reference_expval

    return reference_expval(ansatz, inputs, weights)


def linearised_expval(ansatz: Ansatz, inputs: torch.Tensor, weights: torch.Tensor, shots=None, generator=None):
    """Exact <P_i> whose derivative w.r.t. the INPUTS is exact and cheap to differentiate again.

    Values come from the fast engine; the per-circuit input Jacobian dE/dx [..., n, n] is computed with n
    adjoint backward passes, and the result is returned as ``E + J (x - stop_grad(x))``: equal to E, with exactly
    J as first derivative, built from plain tensor ops, so jvps, vjps and the double-vjp trick through a whole
    generator cost one small einsum per product instead of a pass through the simulator. No gradient reaches the
    weights (the analyses differentiate w.r.t. latents/angles). Same signature as ``expval`` (shots ignored).
    """
    from qmedgen.quantum import expval

    n = ansatz.n_qubits
    x0 = inputs.detach()
    w0 = weights.detach()
    rows = []
    with torch.enable_grad():
        for i in range(n):
            x = x0.clone().requires_grad_(True)
            e = expval(ansatz, x, w0)
            (g,) = torch.autograd.grad(e[..., i].sum(), x)  # circuits are independent: row i of every Jacobian
            rows.append(g)
    jac = torch.stack(rows, dim=-2)  # [..., n (outputs), n (inputs)]
    with torch.no_grad():
        value = expval(ansatz, x0, w0)
    delta = (inputs - x0).to(jac.dtype)
    return value.to(jac.dtype) + torch.einsum("...ij,...j->...i", jac.expand(*delta.shape[:-1], n, n), delta)


def preset_ansatz(preset: str, n_qubits: int, depth: int) -> Ansatz:
    """The ansatz family of a model: ``mediqgan`` (RY-RX encoding, RY layers, CZ chain, <X>) or
    ``qdiffusion`` (RY encoding, (RZ, RY) layers, CNOT chain, <Z>)."""
    if preset == "mediqgan":
        return Ansatz(n_qubits, depth, encoding="ry-rx", rotations=("ry",), entangler="cz-chain", observable="x")
    if preset == "qdiffusion":
        return Ansatz(n_qubits, depth, encoding="ry", rotations=("rz", "ry"), entangler="cnot-chain", observable="z")
    raise ConfigError(f"unknown ansatz preset {preset!r}; expected one of {PRESETS}")


def random_parameters(
    ansatz: Ansatz, n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random (inputs [n, q], weights [n, L, R, q]) pairs, angles uniform on [0, 2*pi)."""
    q = ansatz.n_qubits
    x = torch.rand(n, q, generator=generator, dtype=dtype) * TWO_PI
    w = torch.rand(n, *ansatz.weight_shape, generator=generator, dtype=dtype) * TWO_PI
    return x, w


def cost(ansatz: Ansatz, inputs: torch.Tensor, weights: torch.Tensor, kind: str = "mean") -> torch.Tensor:
    """The scalar cost per circuit ``[...]`` used by the gradient-variance scan (see module docstring)."""
    if kind not in COSTS:
        raise ConfigError(f"unknown cost {kind!r}; expected one of {COSTS}")
    if kind != "global":
        e = autograd_expval(ansatz, inputs, weights)
        return e[..., 0] if kind == "local" else e.mean(dim=-1)
    psi = simulate(ansatz, inputs, weights)  # [..., 2**n], differentiable through plain autograd
    n = ansatz.n_qubits
    idx = torch.arange(2**n, device=psi.device)
    parity = torch.ones(2**n, device=psi.device, dtype=psi.real.dtype)
    for i in range(n):
        parity = parity * (1 - 2 * ((idx >> i) & 1)).to(parity.dtype)  # (-1)^popcount(k): Z on every wire
    if ansatz.observable == "z":
        return (psi.abs() ** 2) @ parity
    flipped = psi.flip(-1)  # X on every wire maps basis index k to (2**n - 1) - k
    if ansatz.observable == "x":
        return (psi.conj() * flipped).sum(-1).real
    # Y^(x n) = i^n X^(x n) Z^(x n)
    return ((1j**n) * (flipped.conj() * (parity * psi)).sum(-1)).real


def gradient_variance(
    ansatz: Ansatz, n_samples: int = 200, cost_kind: str = "mean", generator: torch.Generator | None = None
) -> dict:
    """Variance over random parameters of dC/dtheta for every trainable weight (batched: one backward pass)."""
    if ansatz.n_weights == 0:
        raise ConfigError("gradient variance needs an ansatz with trainable weights (depth >= 1)")
    x, w = random_parameters(ansatz, n_samples, generator)
    w.requires_grad_(True)
    c = cost(ansatz, x, w, cost_kind)
    (grad,) = torch.autograd.grad(c.sum(), w)  # circuits are independent: row s holds dC_s/dw_s
    var = grad.reshape(n_samples, -1).var(dim=0)
    return {
        "cost": cost_kind,
        "n_samples": n_samples,
        "var_mean": float(var.mean()),
        "var_first": float(var[0]),
        "var_per_weight": var.tolist(),
        "mean_abs_grad": float(grad.abs().mean()),
    }


def haar_fidelity_bins(dim: int, bins: int) -> np.ndarray:
    """Exact Haar probability mass of each of ``bins`` equal-width fidelity bins for Hilbert dimension ``dim``."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    cdf_tail = (1.0 - edges) ** (dim - 1)
    return cdf_tail[:-1] - cdf_tail[1:]


def fidelities(ansatz: Ansatz, n_pairs: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Fidelities |<psi(a)|psi(b)>|^2 of ``n_pairs`` independent random parameter pairs."""
    xa, wa = random_parameters(ansatz, n_pairs, generator)
    xb, wb = random_parameters(ansatz, n_pairs, generator)
    with torch.no_grad():
        sa = simulate(ansatz, xa, wa)
        sb = simulate(ansatz, xb, wb)
    return (sa.conj() * sb).sum(dim=-1).abs().pow(2).clamp(0, 1)


def expressibility(
    ansatz: Ansatz, n_pairs: int = 2000, bins: int = 75, generator: torch.Generator | None = None
) -> dict:
    """KL divergence of the sampled fidelity histogram to the Haar fidelity distribution (Sim et al. 2019)."""
    if bins < 2:
        raise ConfigError(f"expressibility needs bins >= 2, got {bins}")
    f = fidelities(ansatz, n_pairs, generator).cpu().numpy()
    counts, _ = np.histogram(f, bins=bins, range=(0.0, 1.0))
    p = counts / counts.sum()
    q = np.maximum(haar_fidelity_bins(2**ansatz.n_qubits, bins), 1e-300)
    nz = p > 0
    kl = float(np.sum(p[nz] * np.log(p[nz] / q[nz])))
    return {"kl": kl, "bins": bins, "n_pairs": n_pairs, "mean_fidelity": float(f.mean()), "histogram": p.tolist()}


def meyer_wallach(states: torch.Tensor) -> torch.Tensor:
    """Meyer-Wallach Q of pure states ``[..., 2**n]`` (wire 0 = most significant bit) -> ``[...]``."""
    dim = states.shape[-1]
    n = round(math.log2(dim))
    if 2**n != dim:
        raise ValueError(f"state dimension must be a power of 2, got {dim}")
    psi = states.reshape(-1, *([2] * n))
    purities = []
    for k in range(n):
        m = psi.movedim(k + 1, 1).reshape(psi.shape[0], 2, -1)  # [B, 2, 2**(n-1)]
        rho = m @ m.conj().transpose(1, 2)  # reduced density matrix of wire k
        purities.append((rho.abs() ** 2).sum(dim=(1, 2)))
    q = 2.0 * (1.0 - torch.stack(purities, dim=-1).mean(dim=-1))
    return q.clamp(min=0.0).reshape(states.shape[:-1])


def entangling_capability(ansatz: Ansatz, n_samples: int = 500, generator: torch.Generator | None = None) -> dict:
    """Mean and standard deviation of the Meyer-Wallach Q over random parameters."""
    x, w = random_parameters(ansatz, n_samples, generator)
    with torch.no_grad():
        q = meyer_wallach(simulate(ansatz, x, w))
    return {"mean": float(q.mean()), "std": float(q.std()) if n_samples > 1 else 0.0, "n_samples": n_samples}


@dataclass
class ScanConfig:
    """Sizes of an ansatz scan; the defaults give stable estimates in about a minute for up to 8 qubits."""

    grad_samples: int = 200
    fidelity_pairs: int = 2000
    mw_samples: int = 300
    bins: int = 75
    costs: tuple[str, ...] = ("mean", "global")
    seed: int = 0


def scan(preset: str, qubits: Sequence[int], depths: Sequence[int], config: ScanConfig | None = None) -> dict:
    """Gradient variance, expressibility and entangling capability over a grid of qubit counts and depths."""
    config = config or ScanConfig()
    for c in config.costs:
        if c not in COSTS:
            raise ConfigError(f"unknown cost {c!r}; expected one of {COSTS}")
    if any(q < 1 for q in qubits) or any(d < 1 for d in depths):
        raise ConfigError(f"qubits and depths must be >= 1, got qubits={list(qubits)} depths={list(depths)}")
    gen = torch.Generator().manual_seed(config.seed)
    rows = []
    grid = [(q, d) for q in qubits for d in depths]
    for q, d in tqdm(grid, desc=f"ansatz scan ({preset})", leave=False):
        a = preset_ansatz(preset, q, d)
        row = {"n_qubits": q, "depth": d, "n_weights": a.n_weights}
        row["gradient"] = {c: _strip(gradient_variance(a, config.grad_samples, c, gen)) for c in config.costs}
        row["expressibility"] = expressibility(a, config.fidelity_pairs, config.bins, gen)
        row["entanglement"] = entangling_capability(a, config.mw_samples, gen)
        rows.append(row)
    example = preset_ansatz(preset, qubits[0], depths[0])
    return {
        "preset": preset,
        "ansatz": {
            "encoding": example.encoding,
            "rotations": list(example.rotations),
            "entangler": example.entangler,
            "observable": example.observable,
        },
        "qubits": list(qubits),
        "depths": list(depths),
        "config": {
            "grad_samples": config.grad_samples,
            "fidelity_pairs": config.fidelity_pairs,
            "mw_samples": config.mw_samples,
            "bins": config.bins,
            "costs": list(config.costs),
            "seed": config.seed,
            "angles": "inputs and weights i.i.d. uniform on [0, 2*pi)",
        },
        "results": rows,
    }


def _strip(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "var_per_weight"}


def plot_scan(result: dict, out_dir) -> list:
    """Figures of a :func:`scan` result: gradient variance vs qubits, expressibility and entanglement vs depth."""
    from qmedgen.analysis.plotting import new_figure, save_figure

    rows = result["results"]
    qubits, depths, preset = result["qubits"], result["depths"], result["preset"]

    def grid(get):
        return np.array([[get(_find(rows, q, d)) for d in depths] for q in qubits])

    paths = []
    for c in result["config"]["costs"]:
        v = grid(lambda r, c=c: r["gradient"][c]["var_mean"])
        fig, ax = new_figure()
        zero = v < 1e-20  # identically zero gradients (symmetry), only rounding left: not drawable on a log axis
        for j, d in enumerate(depths):
            ax.semilogy(qubits, np.where(zero[:, j], np.nan, v[:, j]), marker="o", label=f"depth {d}")
        ax.set_xlabel("number of qubits")
        ax.set_ylabel(r"Var[$\partial C / \partial \theta$] (mean over weights)")
        note = " (zero-variance points omitted)" if zero.any() else ""
        ax.set_title(f"{preset}: gradient variance, {c} cost{note}", fontsize=10)
        ax.legend()
        paths.append(save_figure(fig, out_dir, f"ansatz_{preset}_gradvar_{c}.png"))
    for key, label, title in (
        ("expressibility", "KL(P_PQC || P_Haar)  (lower = more expressive)", "expressibility"),
        ("entanglement", "Meyer-Wallach Q (mean)", "entangling capability"),
    ):
        field = "kl" if key == "expressibility" else "mean"
        v = grid(lambda r, key=key, field=field: r[key][field])
        fig, ax = new_figure()
        for i, q in enumerate(qubits):
            ax.plot(depths, v[i], marker="o", label=f"{q} qubits")
        if key == "expressibility":
            ax.set_yscale("log")
        ax.set_xlabel("depth (layers)")
        ax.set_ylabel(label)
        ax.set_title(f"{preset}: {title}")
        ax.legend()
        paths.append(save_figure(fig, out_dir, f"ansatz_{preset}_{key}.png"))
    return paths


def _find(rows: list[dict], q: int, d: int) -> dict:
    return next(r for r in rows if r["n_qubits"] == q and r["depth"] == d)
