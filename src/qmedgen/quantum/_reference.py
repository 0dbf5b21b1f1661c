"""The slow, obviously-correct reference simulator: the test oracle for the fast engine (private).

One einsum per gate on a ``[B, 2, ..., 2]`` complex state, plain autograd; kept verbatim in semantics so that the
fast engine is always checked against a straightforward gate-by-gate evaluation.

Plain functions in the PennyLane style: :func:`simulate` returns the final state, :func:`expval` and
:func:`sample` measure it. The state of a batch is a complex tensor ``[B, 2, 2, ..., 2]`` (one axis per wire,
wire 0 first). Gradients flow through torch autograd.
"""

from __future__ import annotations

import math

import torch

from qmedgen.quantum.ansatz import Ansatz


def _broadcast(ansatz: Ansatz, inputs: torch.Tensor, weights: torch.Tensor):
    n = ansatz.n_qubits
    if inputs.shape[-1:] != (n,) and ansatz.encoding != "none":
        raise ValueError(f"inputs must have shape [..., {n}] for a {n}-qubit ansatz, got {tuple(inputs.shape)}")
    if tuple(weights.shape[-3:]) != ansatz.weight_shape:
        raise ValueError(
            f"weights must have shape [..., {', '.join(map(str, ansatz.weight_shape))}] "
            f"(depth, len(rotations), n_qubits), got {tuple(weights.shape)}"
        )
    batch = torch.broadcast_shapes(inputs.shape[:-1], weights.shape[:-3])
    dtype = torch.promote_types(inputs.dtype, weights.dtype)
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    nb = math.prod(batch)
    x = inputs.to(dtype).expand(*batch, inputs.shape[-1]).reshape(nb, inputs.shape[-1])
    w = weights.to(dtype).expand(*batch, *ansatz.weight_shape).reshape(nb, *ansatz.weight_shape)
    return batch, x, w


def _rotation(name: str, theta: torch.Tensor) -> torch.Tensor:
    """[B] angles -> [B, 2, 2] complex rotation matrices exp(-i theta P / 2)."""
    c = torch.cos(theta / 2).to(_complex(theta.dtype))
    s = torch.sin(theta / 2).to(_complex(theta.dtype))
    z = torch.zeros_like(c)
    if name == "ry":
        rows = [[c, -s], [s, c]]
    elif name == "rx":
        rows = [[c, -1j * s], [-1j * s, c]]
    elif name == "rz":
        rows = [[c - 1j * s, z], [z, c + 1j * s]]
    else:  # pragma: no cover - validated by Ansatz
        raise ValueError(name)
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


def _complex(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64


def _apply_1q(state: torch.Tensor, gate: torch.Tensor, wire: int) -> torch.Tensor:
    # state [B, 2, ..., 2]; gate [B, 2, 2]; contract gate's column index with the wire's axis.
    state = state.movedim(wire + 1, -1)
    state = torch.einsum("b...j,bij->b...i", state, gate)
    return state.movedim(-1, wire + 1)


def _apply_cz(state: torch.Tensor, a: int, b: int) -> torch.Tensor:
    n = state.dim() - 1
    sign = torch.ones([2] * n, dtype=state.real.dtype, device=state.device)
    idx = [slice(None)] * n
    idx[a], idx[b] = 1, 1
    sign[tuple(idx)] = -1
    return state * sign


def _apply_cnot(state: torch.Tensor, control: int, target: int) -> torch.Tensor:
    ctrl1 = state.narrow(control + 1, 1, 1)
    flipped = ctrl1.flip(target + 1)
    return torch.cat([state.narrow(control + 1, 0, 1), flipped], dim=control + 1)


def simulate(ansatz: Ansatz, inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Final states ``[..., 2**n]`` (complex) for broadcast ``inputs [..., n]`` and ``weights [..., L, R, n]``."""
    batch, x, w = _broadcast(ansatz, inputs, weights)
    n, b = ansatz.n_qubits, x.shape[0]
    state = torch.zeros(b, 2**n, dtype=_complex(x.dtype), device=x.device)
    state[:, 0] = 1
    state = state.reshape(b, *([2] * n))
    enc = {"ry": ("ry",), "rx": ("rx",), "ry-rx": ("ry", "rx"), "none": ()}[ansatz.encoding]
    for name in enc:
        for i in range(n):
            state = _apply_1q(state, _rotation(name, x[:, i]), i)
    for layer in range(ansatz.depth):
        for r, name in enumerate(ansatz.rotations):
            for i in range(n):
                state = _apply_1q(state, _rotation(name, w[:, layer, r, i]), i)
        for c, t in ansatz.entangling_pairs():
            state = _apply_cz(state, c, t) if ansatz.entangler == "cz-chain" else _apply_cnot(state, c, t)
    return state.reshape(*batch, 2**n)


def _to_measurement_basis(state: torch.Tensor, observable: str) -> torch.Tensor:
    """Rotate every wire so that the observable's eigenbasis becomes the computational basis."""
    if observable == "z":
        return state
    h = torch.tensor([[1, 1], [1, -1]], dtype=state.dtype, device=state.device) / math.sqrt(2)
    if observable == "y":  # H S^dagger
        sdg = torch.tensor([[1, 0], [0, -1j]], dtype=state.dtype, device=state.device)
        h = h @ sdg
    b = state.shape[0]
    gate = h.expand(b, 2, 2)
    for i in range(state.dim() - 1):
        state = _apply_1q(state, gate, i)
    return state


def probabilities(ansatz: Ansatz, inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Outcome probabilities ``[..., 2**n]`` in the observable's eigenbasis (bit 0 = eigenvalue +1)."""
    batch, _, _ = _broadcast(ansatz, inputs, weights)
    n = ansatz.n_qubits
    state = simulate(ansatz, inputs, weights).reshape(-1, *([2] * n))
    state = _to_measurement_basis(state, ansatz.observable)
    return (state.real**2 + state.imag**2).reshape(*batch, 2**n)


def expval(
    ansatz: Ansatz,
    inputs: torch.Tensor,
    weights: torch.Tensor,
    shots: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """<P_i> for every qubit, shape ``[..., n_qubits]``.

    With ``shots``, the values are estimates from that many measurement samples, and the gradient is the exact
    one (straight-through estimator: forward = sampled estimate, backward = d<P>/dtheta of the exact value).
    """
    n = ansatz.n_qubits
    probs = probabilities(ansatz, inputs, weights)
    batch = probs.shape[:-1]
    p = probs.reshape(-1, *([2] * n))
    signs = []
    for i in range(n):
        dims = [d + 1 for d in range(n) if d != i]
        marg = p.sum(dim=dims) if dims else p  # [B, 2] (an empty dim list would sum everything)
        signs.append(marg[:, 0] - marg[:, 1])
    exact = torch.stack(signs, dim=-1).reshape(*batch, n)
    if shots is None:
        return exact
    bits = sample(ansatz, inputs, weights, shots=shots, generator=generator)
    estimate = (1.0 - 2.0 * bits.to(exact.dtype)).mean(dim=-2)
    return exact + (estimate - exact).detach()


def sample(
    ansatz: Ansatz,
    inputs: torch.Tensor,
    weights: torch.Tensor,
    shots: int = 1024,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Measurement samples in the observable's basis: ``uint8`` bits ``[..., shots, n_qubits]``.

    Bit 0 means eigenvalue +1 and bit 1 eigenvalue -1 of the observable on that wire; wire 0 is column 0.
    """
    if not isinstance(shots, int) or shots < 1:
        raise ValueError(f"shots must be a positive integer, got {shots!r}")
    n = ansatz.n_qubits
    with torch.no_grad():
        probs = probabilities(ansatz, inputs, weights)
        batch = probs.shape[:-1]
        flat = probs.reshape(-1, 2**n).to(torch.float64)
        flat = flat / flat.sum(dim=-1, keepdim=True)
        idx = torch.multinomial(flat, shots, replacement=True, generator=generator)  # [B, shots]
        powers = 2 ** torch.arange(n - 1, -1, -1, device=idx.device)
        bits = (idx.unsqueeze(-1) // powers) % 2
    return bits.to(torch.uint8).reshape(*batch, shots, n)
