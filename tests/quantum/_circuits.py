"""Shared helpers for the engine tests: every option combination and random parameters."""

from __future__ import annotations

import itertools

import torch

from qmedgen.quantum import Ansatz
from qmedgen.quantum.ansatz import ENCODINGS, ENTANGLERS, OBSERVABLES

ROTATION_SETS = (("ry",), ("rx",), ("rz",), ("rz", "ry"), ("rx", "ry", "rz"))

ALL_OPTIONS = list(itertools.product(ENCODINGS, ROTATION_SETS, ENTANGLERS, OBSERVABLES))


def option_id(opts) -> str:
    enc, rots, ent, obs = opts
    return f"{enc}|{'+'.join(rots)}|{ent}|{obs}"


def random_params(ansatz: Ansatz, batch=(), dtype=torch.float64, seed: int = 0, requires_grad: bool = True):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(*batch, ansatz.n_qubits, generator=g, dtype=torch.float64) * 4 - 2).to(dtype)
    w = (torch.rand(*batch, *ansatz.weight_shape, generator=g, dtype=torch.float64) * 4 - 2).to(dtype)
    return x.requires_grad_(requires_grad), w.requires_grad_(requires_grad)


def grads(out: torch.Tensor, params, cotangent: torch.Tensor):
    """Vector-Jacobian products, zeros for parameters the output does not depend on."""
    params = list(params)
    if not out.requires_grad:
        return [torch.zeros_like(p) for p in params]
    gs = torch.autograd.grad(out, params, cotangent, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, gs)]
