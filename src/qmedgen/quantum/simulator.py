"""Public simulator API: :func:`expval`, :func:`sample`, :func:`probabilities`, :func:`simulate`.

All functions broadcast leading dimensions like torch: ``inputs [..., n]`` and ``weights [..., depth, R, n]``
describe ``prod(broadcast(...))`` independent circuits (e.g. inputs ``[B, K, n]`` with weights ``[K, depth, R, n]``
runs K sub-generators with their own weights on B samples). They follow the inputs' device, and compute in float64
when either argument is float64, else float32. The heavy lifting is in :mod:`qmedgen.quantum.engine`; noise
channels are in :mod:`qmedgen.quantum.noise`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import TYPE_CHECKING

import torch

from qmedgen.errors import ConfigError
from qmedgen.quantum import engine
from qmedgen.quantum.ansatz import Ansatz
from qmedgen.quantum.gates import complex_dtype, segments
from qmedgen.quantum.memory import check_fits

if TYPE_CHECKING:
    from qmedgen.quantum.noise import NoiseModel


def full_precision(fn):
    """Run ``fn`` with autocast disabled on the inputs' device: a circuit in bfloat16/float16 loses ~1e-2 of
    accuracy, and users typically wrap whole models (circuits included) in ``torch.autocast``."""

    @functools.wraps(fn)
    def wrapper(ansatz, inputs, *args, **kwargs):
        device_type = inputs.device.type if torch.is_tensor(inputs) else "cpu"
        if torch.is_autocast_enabled(device_type):
            with torch.autocast(device_type=device_type, enabled=False):
                return fn(ansatz, inputs, *args, **kwargs)
        return fn(ansatz, inputs, *args, **kwargs)

    return wrapper


def _broadcast_shapes(a: tuple[int, ...], b: tuple[int, ...]) -> torch.Size | None:
    """Torch broadcasting of two shapes, or None. (torch.broadcast_shapes imports torch._refs: seconds at first
    call, which every fresh process would pay.)"""
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else 1
        y = b[-i] if i <= len(b) else 1
        if x != y and 1 not in (x, y):
            return None
        out.append(y if x == 1 else x)
    return torch.Size(reversed(out))


def _validate(ansatz: Ansatz, inputs: torch.Tensor, weights: torch.Tensor):
    if not isinstance(ansatz, Ansatz):
        raise ConfigError(f"expected an Ansatz, got {type(ansatz).__name__}")
    if not torch.is_tensor(inputs) or not torch.is_tensor(weights):
        raise ConfigError("inputs and weights must be torch tensors")
    n = ansatz.n_qubits
    if inputs.dim() == 0 or (inputs.shape[-1] != n and ansatz.encoding != "none"):
        raise ConfigError(f"inputs must have shape [..., {n}] for a {n}-qubit ansatz, got {tuple(inputs.shape)}")
    if tuple(weights.shape[-3:]) != ansatz.weight_shape:
        raise ConfigError(
            f"weights must have shape [..., {', '.join(map(str, ansatz.weight_shape))}] "
            f"(depth, len(rotations), n_qubits), got {tuple(weights.shape)}"
        )
    batch = _broadcast_shapes(inputs.shape[:-1], weights.shape[:-3])
    if batch is None:
        raise ConfigError(
            f"inputs {tuple(inputs.shape)} and weights {tuple(weights.shape)} have leading dimensions "
            f"{tuple(inputs.shape[:-1])} and {tuple(weights.shape[:-3])} that do not broadcast"
        )
    dtype = torch.promote_types(inputs.dtype, weights.dtype)
    if dtype not in (torch.float32, torch.float64):
        dtype = torch.float64 if dtype == torch.float64 else torch.float32
    device = inputs.device
    return batch, inputs.to(device=device, dtype=dtype), weights.to(device=device, dtype=dtype)


class _Prepared:
    """Initial-state sites / block matrices of one call, flattened to ``[B or 1, ...]``, and the engine plan."""

    def __init__(self, ansatz, inputs, weights, *, basis=True, errors=None, extra_batch=()):
        batch, x, w = _validate(ansatz, inputs, weights)
        self.batch_shape = torch.Size((*batch, *extra_batch))
        full = self.batch_shape
        nb = math.prod(full)
        n = ansatz.n_qubits
        if ansatz.encoding == "none":
            x = x[..., :0].new_zeros(*x.shape[:-1], n)  # the encoding ignores the inputs; keep their batch
        if extra_batch:
            x = x.reshape(*x.shape[:-1], *([1] * len(extra_batch)), n)
            w = w.reshape(*w.shape[:-3], *([1] * len(extra_batch)), *w.shape[-3:])
        segs, trailing = segments(ansatz, x, w, basis=basis, errors=errors)
        layers = segs[1:]
        if any(s.is_complex() for s in layers):
            mode = "complex"
        elif segs[0].is_complex():
            mode = "stacked"
        else:
            mode = "real"
        blocks = engine.block_sizes(n)
        self.dtype = w.dtype
        self.device = w.device

        def flat(t: torch.Tensor, tail: int) -> torch.Tensor:
            lead = t.shape[:-tail]
            if math.prod(lead) == 1:
                return t.reshape(1, *t.shape[-tail:])
            if lead != full:
                t = t.expand(*full, *t.shape[-tail:])
            return t.reshape(nb, *t.shape[-tail:])

        def split(seg: torch.Tensor):
            out, start = [], 0
            for k in blocks:
                out.append(seg[..., start : start + k, :, :])
                start += k
            return out

        make_complex = mode == "complex"
        vecs = []
        for part in split(segs[0]):
            v = engine.kron_vectors([part[..., q, :, 0] for q in range(part.shape[-3])])
            if mode != "real":
                v = v.to(complex_dtype(v.dtype)) if not v.is_complex() else v
            vecs.append(flat(v, 1))
        mats = []
        for seg in layers:
            for part in split(seg):
                mm = engine.kron_matrices(part)
                if make_complex and not mm.is_complex():
                    mm = mm.to(complex_dtype(mm.dtype))
                mats.append(flat(mm, 2))
        entangler = ansatz.entangler if ansatz.entangling_pairs() else "none"
        m = len(blocks)
        self.sites = engine.product_sites(vecs)
        fold = {"cz-chain": engine.fold_cz_layer, "cnot-chain": engine.fold_cnot_chain_layer}.get(entangler)
        if fold is not None:  # the first entangler + block layers fold into the initial state
            for _ in range(min(engine.ENTANGLER_FOLDS, len(mats) // m)):
                self.sites, mats = fold(self.sites, mats[:m], blocks), mats[m:]
        self.mats = mats
        self.plan = engine.Plan(
            n=n,
            blocks=blocks,
            entangler=entangler,
            n_layers=len(mats) // m,
            trailing=trailing,
            mode=mode,
            batch=nb,
        )

    def layers(self) -> list[list[torch.Tensor]]:
        """The block matrices grouped per segment (the engine's ``mats`` argument)."""
        m = len(self.plan.blocks)
        return [self.mats[i : i + m] for i in range(0, len(self.mats), m)]

    def requires_grad(self) -> bool:
        return torch.is_grad_enabled() and any(t.requires_grad for t in (*self.sites, *self.mats))

    def check_memory(self, backward: bool | None = None, chunked: bool = False) -> None:
        """``chunked``: the request runs through :class:`engine.AdjointExpval`, chunk by chunk on the CPU."""
        backward = self.requires_grad() if backward is None else backward
        chunk = None
        if chunked:
            spans = engine.chunk_spans(self.plan, self.sites[0])
            chunk = spans[0][1] - spans[0][0]
        check_fits(self.plan.n, self.plan.batch, self.dtype, self.device, backward,
                   complex_state=self.plan.mode != "real", chunk=chunk)


def _exact(prep: _Prepared, return_probs: bool = False):
    """Run the adjoint Function: ``[B, n]`` expectations (and ``[B, 2**n]`` probabilities if asked)."""
    prep.check_memory(chunked=not return_probs)  # the probabilities of the whole batch are returned otherwise
    plan = dataclasses.replace(prep.plan, return_probs=True) if return_probs else prep.plan
    return engine.AdjointExpval.apply(plan, *prep.sites, *prep.mats)


@full_precision
def expval(
    ansatz: Ansatz,
    inputs: torch.Tensor,
    weights: torch.Tensor,
    shots: int | None = None,
    generator: torch.Generator | None = None,
    noise: NoiseModel | None = None,
) -> torch.Tensor:
    """<P_i> of the ansatz's observable P on every qubit: ``[..., n_qubits]``, differentiable (adjoint method).

    ``shots``: the values are estimates from that many measurement samples per circuit (drawn with
    ``generator``), and the gradient is the EXACT gradient of the noiseless-in-shots expectation
    (straight-through estimator: forward = sampled estimate, backward = d<P>/dtheta). This is what a
    parameter-shift-free surrogate of hardware training uses; the sampling noise itself carries no gradient.
    ``noise``: a :class:`~qmedgen.quantum.noise.NoiseModel` (simulated depolarising and readout errors).
    """
    if noise is not None and not noise.is_trivial():
        from qmedgen.quantum.noise import noisy_expval

        return noisy_expval(ansatz, inputs, weights, noise, shots=shots, generator=generator)
    prep = _Prepared(ansatz, inputs, weights)
    if shots is None:
        return _exact(prep).reshape(*prep.batch_shape, ansatz.n_qubits)
    _check_shots(shots)
    exact, probs = _exact(prep, return_probs=True)
    bits = _draw(probs, shots, ansatz.n_qubits, generator)
    estimate = (1.0 - 2.0 * bits.to(exact.dtype)).mean(dim=-2)
    out = exact + (estimate - exact).detach()
    return out.reshape(*prep.batch_shape, ansatz.n_qubits)


def _check_shots(shots) -> None:
    if isinstance(shots, bool) or not isinstance(shots, int) or shots < 1:
        raise ConfigError(f"shots must be a positive integer, got {shots!r}")


def _draw(probs: torch.Tensor, shots: int, n: int, generator: torch.Generator | None) -> torch.Tensor:
    """``[B, 2**n]`` probabilities -> ``uint8`` bits ``[B, shots, n]`` (wire 0 = column 0)."""
    if probs.shape[0] == 0:
        return torch.zeros(0, shots, n, dtype=torch.uint8, device=probs.device)
    flat = probs.detach().to(torch.float64)
    flat = flat / flat.sum(dim=-1, keepdim=True)
    gen_device = generator.device if generator is not None else flat.device
    idx = torch.multinomial(flat.to(gen_device), shots, replacement=True, generator=generator).to(probs.device)
    shifts = torch.arange(n - 1, -1, -1, device=idx.device)
    return ((idx.unsqueeze(-1) >> shifts) & 1).to(torch.uint8)


@full_precision
def probabilities(ansatz: Ansatz, inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Outcome probabilities ``[..., 2**n]`` in the observable's eigenbasis (bit 0 = eigenvalue +1; not
    differentiable: use :func:`expval` for gradients)."""
    with torch.no_grad():
        prep = _Prepared(ansatz, inputs, weights)
        prep.check_memory(backward=False)
        x = engine.forward_state(prep.plan, prep.sites, prep.layers(), buffered=True)
        p = engine.probabilities_from_state(x, prep.plan)
    return p.reshape(*prep.batch_shape, 2**ansatz.n_qubits)


@full_precision
def simulate(ansatz: Ansatz, inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Final states ``[..., 2**n]`` (complex, before any measurement-basis change).

    Differentiable through plain autograd (memory grows with depth; use :func:`expval` to train).
    """
    prep = _Prepared(ansatz, inputs, weights, basis=False)
    prep.check_memory(backward=prep.requires_grad())
    x = engine.forward_state(prep.plan, prep.sites, prep.layers(), buffered=not prep.requires_grad())
    if prep.plan.mode == "stacked":
        b = prep.plan.batch
        x = torch.complex(x[:b], x[b:])
    elif prep.plan.mode == "real":
        x = x.to(complex_dtype(x.dtype))
    return x.reshape(*prep.batch_shape, 2**ansatz.n_qubits)


@full_precision
def sample(
    ansatz: Ansatz,
    inputs: torch.Tensor,
    weights: torch.Tensor,
    shots: int = 1024,
    generator: torch.Generator | None = None,
    noise: NoiseModel | None = None,
) -> torch.Tensor:
    """Measurement samples in the observable's eigenbasis: ``uint8`` bits ``[..., shots, n_qubits]``.

    Bit 0 means eigenvalue +1 and bit 1 eigenvalue -1 of the observable on that wire; wire i is column i.
    Draws use ``generator`` (on its device) so results are reproducible. With ``noise``, depolarising errors
    change the distribution and readout errors flip bits (see :mod:`qmedgen.quantum.noise`).
    """
    _check_shots(shots)
    if noise is not None and not noise.is_trivial():
        from qmedgen.quantum.noise import noisy_sample

        return noisy_sample(ansatz, inputs, weights, noise, shots=shots, generator=generator)
    probs = probabilities(ansatz, inputs, weights)
    batch = probs.shape[:-1]
    bits = _draw(probs.reshape(math.prod(batch), probs.shape[-1]), shots, ansatz.n_qubits, generator)
    return bits.reshape(*batch, shots, ansatz.n_qubits)
