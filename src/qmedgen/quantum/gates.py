"""Single-qubit gate matrices and the fusion of an :class:`Ansatz` into per-qubit "segments".

Between two entanglers every gate of the ansatz acts on one qubit, so each run of rotations (encoding, the layer's
rotations, the final change to the measurement basis) multiplies into ONE 2x2 matrix per qubit. The simulator then
only sees ``segments[j]``: ``[..., n, 2, 2]`` matrices, separated by entanglers. Segment 0 acts on |0...0>, so it
is a product state and costs no state-vector pass at all. Everything here is tiny (O(n) matrices per circuit) and
differentiable by plain autograd; the heavy state-vector work lives in :mod:`qmedgen.quantum.engine`.
"""

from __future__ import annotations

import math

import torch

from qmedgen.quantum.ansatz import Ansatz

ENCODING_GATES = {"ry": ("ry",), "rx": ("rx",), "ry-rx": ("ry", "rx"), "none": ()}


def complex_dtype(dtype: torch.dtype) -> torch.dtype:
    """The complex dtype matching a real floating dtype (float64 -> complex128, else complex64)."""
    return torch.complex128 if dtype in (torch.float64, torch.complex128) else torch.complex64


def real_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype in (torch.float64, torch.complex128) else torch.float32


def rotation(name: str, theta: torch.Tensor) -> torch.Tensor:
    """Angles ``[...]`` -> ``[..., 2, 2]`` matrices exp(-i theta P / 2); real for RY (why: keeps real circuits real)."""
    c, s = torch.cos(theta / 2), torch.sin(theta / 2)
    if name == "ry":
        return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
    z = torch.zeros_like(c)
    if name == "rx":
        re = torch.stack([torch.stack([c, z], -1), torch.stack([z, c], -1)], -2)
        im = torch.stack([torch.stack([z, -s], -1), torch.stack([-s, z], -1)], -2)
    elif name == "rz":
        re = torch.stack([torch.stack([c, z], -1), torch.stack([z, c], -1)], -2)
        im = torch.stack([torch.stack([-s, z], -1), torch.stack([z, s], -1)], -2)
    else:  # pragma: no cover - validated by Ansatz
        raise ValueError(f"unknown rotation {name!r}")
    return torch.complex(re, im)


def basis_change(observable: str, dtype: torch.dtype, device: torch.device) -> torch.Tensor | None:
    """The 2x2 matrix V with V P V^dagger = Z (H for X, H S^dagger for Y); ``None`` for Z."""
    if observable == "z":
        return None
    r = 1 / math.sqrt(2)
    if observable == "x":
        return torch.tensor([[r, r], [r, -r]], dtype=real_dtype(dtype), device=device)
    return torch.tensor([[r, -1j * r], [r, 1j * r]], dtype=complex_dtype(dtype), device=device)


PAULIS = {
    "i": ((1, 0), (0, 1)),
    "x": ((0, 1), (1, 0)),
    "y": ((0, -1j), (1j, 0)),
    "z": ((1, 0), (0, -1)),
}


def pauli_stack(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``[4, 2, 2]`` complex matrices I, X, Y, Z (index order used by the noise trajectories)."""
    return torch.tensor([PAULIS[p] for p in "ixyz"], dtype=complex_dtype(dtype), device=device)


def _matmul(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    """a @ b with ``None`` meaning identity; promotes real x complex."""
    if a is None:
        return b
    if b is None:
        return a
    if a.is_complex() != b.is_complex():
        a, b = (a.to(complex_dtype(a.dtype)), b.to(complex_dtype(b.dtype)))
    return a @ b


def segments(
    ansatz: Ansatz,
    x: torch.Tensor,
    w: torch.Tensor,
    *,
    basis: bool = True,
    errors: list[torch.Tensor | None] | None = None,
) -> tuple[list[torch.Tensor], bool]:
    """Fuse the circuit into per-qubit matrices.

    ``x``: ``[..., n]`` encoding angles, ``w``: ``[..., depth, R, n]`` (any broadcastable batch shapes).
    ``errors`` (noise trajectories): ``depth + 1`` optional ``[..., n, 2, 2]`` Pauli matrices inserted after the
    encoding and after each layer's rotations-plus-entangler (the last one is handled by the caller).
    Returns ``(segments, trailing_entangler)``: ``segments[0]`` prepares the product state from |0...0>, each later
    segment follows one entangler, and ``trailing_entangler`` says whether an entangler ends the circuit.
    """
    n = ansatz.n_qubits
    has_ent = bool(ansatz.entangling_pairs())
    cur: torch.Tensor | None = None
    for name in ENCODING_GATES[ansatz.encoding]:
        cur = _matmul(rotation(name, x), cur)
    if errors is not None and errors[0] is not None:
        cur = _matmul(errors[0], cur)
    segs: list[torch.Tensor | None] = []
    for layer in range(ansatz.depth):
        for r, name in enumerate(ansatz.rotations):
            cur = _matmul(rotation(name, w[..., layer, r, :]), cur)
        if has_ent:
            segs.append(cur)
            cur = None
        if errors is not None and layer + 1 < ansatz.depth and errors[layer + 1] is not None:
            cur = _matmul(errors[layer + 1], cur)
    if basis:
        cur = _matmul(basis_change(ansatz.observable, w.dtype, w.device), cur)
    trailing = cur is None and bool(segs)
    if cur is not None:
        segs.append(cur)
    if not segs or segs[0] is None:  # nothing before the first entangler: |0...0> itself
        first = torch.eye(2, dtype=w.dtype, device=w.device).expand(n, 2, 2)
        segs = [first] if not segs else [first, *segs[1:]]
    out = []
    for s in segs:
        assert s is not None
        out.append(s if s.dim() >= 3 else s.expand(n, 2, 2))  # constant (basis-change only) segments
    return out, trailing
