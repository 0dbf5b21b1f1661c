"""A circuit call compiled for the engine: validation, initial sites / block matrices, exact runs, shot draws.

Shared by :mod:`~qmedgen.quantum.simulator` and :mod:`~qmedgen.quantum.noise` (which would otherwise import each
other's internals). Plain functions, in the order a call goes through them:

1. :func:`validate`: the ansatz, tensor shapes and broadcasting; one float dtype on the inputs' device.
2. :func:`compile_circuit`: gate fusion (:func:`~qmedgen.quantum.gates.segments`), the state :class:`Mode`
   (:func:`choose_mode`), the Kronecker blocks of the initial state and of every later segment, the entangler
   layers folded into the initial state (:func:`fold_entanglers`) -> a frozen :class:`CompiledCircuit`.
3. :func:`run_exact` (expectations, through the adjoint Function) or :func:`final_state` (the state vector);
   :func:`draw` turns probabilities into shots.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from qmedgen.errors import ConfigError
from qmedgen.quantum import engine
from qmedgen.quantum.ansatz import Ansatz
from qmedgen.quantum.engine import Mode, Plan
from qmedgen.quantum.gates import complex_dtype, segments
from qmedgen.quantum.memory import check_fits

__all__ = [
    "CompiledCircuit",
    "Mode",
    "check_shots",
    "choose_mode",
    "compile_circuit",
    "draw",
    "final_state",
    "fold_entanglers",
    "run_exact",
    "validate",
]


def broadcast_shapes(a: tuple[int, ...], b: tuple[int, ...]) -> torch.Size | None:
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


def validate(ansatz: Ansatz, inputs: torch.Tensor,
             weights: torch.Tensor) -> tuple[torch.Size, torch.Tensor, torch.Tensor]:
    """(broadcast batch shape, inputs, weights), both in one float dtype on the inputs' device; ConfigError else."""
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
    batch = broadcast_shapes(inputs.shape[:-1], weights.shape[:-3])
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


@dataclasses.dataclass(frozen=True, eq=False)
class CompiledCircuit:
    """One simulator call, compiled: what :class:`engine.AdjointExpval` and :func:`engine.forward_state` take.

    ``plan``: the static structure (qubits, Kronecker blocks, entangler, :class:`Mode`, flattened batch ``B``).
    ``sites``: the initial state as one tensor per block ``[B or 1, D_left, 2**k, D_right]`` (a product state has
    bonds 1; each folded entangler layer doubles the bonds between blocks). ``mats``: the block matrices
    ``[B or 1, 2**k, 2**k]`` of every later segment, block after block and segment after segment (``plan.n_layers``
    segments of ``len(plan.blocks)``; :meth:`layers` groups them). A leading 1 means shared by every circuit.
    ``batch_shape``: the broadcast leading shape of the call (results are reshaped to it); ``dtype``: the real
    dtype of the computation; ``device``: where it runs.
    """

    plan: Plan
    sites: tuple[torch.Tensor, ...]
    mats: tuple[torch.Tensor, ...]
    batch_shape: torch.Size
    dtype: torch.dtype
    device: torch.device

    @property
    def mode(self) -> Mode:
        return self.plan.mode

    def layers(self) -> list[list[torch.Tensor]]:
        """The block matrices grouped per segment (the engine's ``mats`` argument)."""
        m = len(self.plan.blocks)
        return [list(self.mats[i : i + m]) for i in range(0, len(self.mats), m)]

    def requires_grad(self) -> bool:
        """Whether autograd will differentiate this call (grad mode on and some input requires it)."""
        return torch.is_grad_enabled() and any(t.requires_grad for t in (*self.sites, *self.mats))

    def check_memory(self, backward: bool | None = None, chunked: bool = False) -> None:
        """ResourceError unless the call fits (:func:`~qmedgen.quantum.memory.check_fits`); ``backward`` defaults to
        :meth:`requires_grad`. ``chunked``: it runs through :class:`engine.AdjointExpval`, chunk by chunk on the
        CPU."""
        backward = self.requires_grad() if backward is None else backward
        chunk = None
        if chunked:
            spans = engine.chunk_spans(self.plan, self.sites[0])
            chunk = spans[0][1] - spans[0][0]
        check_fits(self.plan.n, self.plan.batch, self.dtype, self.device, backward,
                   complex_state=self.plan.mode.complex_state, chunk=chunk)


def choose_mode(segs: list[torch.Tensor]) -> Mode:
    """The cheapest exact :class:`Mode` for the fused segments (``segs[0]`` prepares the initial state)."""
    if any(s.is_complex() for s in segs[1:]):
        return Mode.COMPLEX
    if segs[0].is_complex():
        return Mode.STACKED
    return Mode.REAL


def _split(seg: torch.Tensor, blocks: tuple[int, ...]) -> list[torch.Tensor]:
    """Per-qubit matrices ``[..., n, 2, 2]`` -> one ``[..., k, 2, 2]`` slice per block."""
    out, start = [], 0
    for k in blocks:
        out.append(seg[..., start : start + k, :, :])
        start += k
    return out


def _flatten_batch(t: torch.Tensor, tail: int, full: torch.Size) -> torch.Tensor:
    """``[*lead, *tail]`` -> ``[1, *tail]`` when shared by every circuit, else ``[prod(full), *tail]``."""
    lead = t.shape[:-tail]
    if math.prod(lead) == 1:
        return t.reshape(1, *t.shape[-tail:])
    if lead != full:
        t = t.expand(*full, *t.shape[-tail:])
    return t.reshape(math.prod(full), *t.shape[-tail:])


def _initial_vectors(first: torch.Tensor, blocks: tuple[int, ...], mode: Mode, full: torch.Size) -> list[torch.Tensor]:
    """The first segment applied to |0...0>: one state vector ``[B or 1, 2**k]`` per block (complex unless real)."""
    vecs = []
    for part in _split(first, blocks):
        v = engine.kron_vectors([part[..., q, :, 0] for q in range(part.shape[-3])])
        if mode is not Mode.REAL and not v.is_complex():
            v = v.to(complex_dtype(v.dtype))
        vecs.append(_flatten_batch(v, 1, full))
    return vecs


def _block_matrices(layers: list[torch.Tensor], blocks: tuple[int, ...], mode: Mode,
                    full: torch.Size) -> list[torch.Tensor]:
    """The Kronecker product of every block of every later segment, ``[B or 1, 2**k, 2**k]``, flat."""
    mats = []
    for seg in layers:
        for part in _split(seg, blocks):
            mm = engine.kron_matrices(part)
            if mode is Mode.COMPLEX and not mm.is_complex():
                mm = mm.to(complex_dtype(mm.dtype))
            mats.append(_flatten_batch(mm, 2, full))
    return mats


def fold_entanglers(sites: list[torch.Tensor], mats: list[torch.Tensor], blocks: tuple[int, ...],
                    entangler: str) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Fold the first :data:`engine.ENTANGLER_FOLDS` entangler + block layers into the initial-state sites (CZ and
    CNOT chains; see :func:`engine.fold_cz_layer`): ``(sites, the block matrices left)``."""
    fold = {"cz-chain": engine.fold_cz_layer, "cnot-chain": engine.fold_cnot_chain_layer}.get(entangler)
    if fold is None:
        return sites, mats
    m = len(blocks)
    for _ in range(min(engine.ENTANGLER_FOLDS, len(mats) // m)):
        sites, mats = fold(sites, mats[:m], blocks), mats[m:]
    return sites, mats


def compile_circuit(ansatz: Ansatz, inputs: torch.Tensor, weights: torch.Tensor, *, basis: bool = True,
                    errors: list[torch.Tensor | None] | None = None,
                    extra_batch: tuple[int, ...] = ()) -> CompiledCircuit:
    """Validate and compile one call of ``ansatz`` on ``inputs [..., n]`` and ``weights [..., depth, R, n]``.

    ``basis``: rotate into the observable's eigenbasis at the end (False for :func:`simulate`'s raw states).
    ``errors``: Pauli errors per noise location (see :func:`~qmedgen.quantum.gates.segments`), which carry
    ``extra_batch`` trailing batch dimensions (noise trajectories) that the inputs and weights broadcast over.
    Raises ConfigError for invalid arguments (:func:`validate`).
    """
    batch, x, w = validate(ansatz, inputs, weights)
    full = torch.Size((*batch, *extra_batch))
    n = ansatz.n_qubits
    if ansatz.encoding == "none":
        x = x[..., :0].new_zeros(*x.shape[:-1], n)  # the encoding ignores the inputs; keep their batch
    if extra_batch:
        x = x.reshape(*x.shape[:-1], *([1] * len(extra_batch)), n)
        w = w.reshape(*w.shape[:-3], *([1] * len(extra_batch)), *w.shape[-3:])
    segs, trailing = segments(ansatz, x, w, basis=basis, errors=errors)
    mode = choose_mode(segs)
    blocks = engine.block_sizes(n)
    vecs = _initial_vectors(segs[0], blocks, mode, full)
    mats = _block_matrices(segs[1:], blocks, mode, full)
    entangler = ansatz.entangler if ansatz.entangling_pairs() else "none"
    sites, mats = fold_entanglers(engine.product_sites(vecs), mats, blocks, entangler)
    plan = Plan(n=n, blocks=blocks, entangler=entangler, n_layers=len(mats) // len(blocks), trailing=trailing,
                mode=mode, batch=math.prod(full))
    return CompiledCircuit(plan=plan, sites=tuple(sites), mats=tuple(mats), batch_shape=full, dtype=w.dtype,
                           device=w.device)


def run_exact(circuit: CompiledCircuit,
              return_probs: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Run the adjoint Function: ``[B, n]`` expectations (and ``[B, 2**n]`` probabilities if asked)."""
    circuit.check_memory(chunked=not return_probs)  # the probabilities of the whole batch are returned otherwise
    plan = dataclasses.replace(circuit.plan, return_probs=True) if return_probs else circuit.plan
    return engine.AdjointExpval.apply(plan, *circuit.sites, *circuit.mats)


def final_state(circuit: CompiledCircuit, *, buffered: bool = True) -> torch.Tensor:
    """The final state ``[B or 2B (stacked), 2**n]`` as the engine holds it (see :class:`Mode`). ``buffered``:
    in workspace buffers, not differentiable; else plain autograd ops (memory grows with depth)."""
    return engine.forward_state(circuit.plan, list(circuit.sites), circuit.layers(), buffered=buffered)


def check_shots(shots: object) -> None:
    """ConfigError unless ``shots`` is a positive int (bools excluded)."""
    if isinstance(shots, bool) or not isinstance(shots, int) or shots < 1:
        raise ConfigError(f"shots must be a positive integer, got {shots!r}")


def draw(probs: torch.Tensor, shots: int, n: int, generator: torch.Generator | None) -> torch.Tensor:
    """``[B, 2**n]`` probabilities -> ``uint8`` bits ``[B, shots, n]`` (wire 0 = column 0)."""
    if probs.shape[0] == 0:
        return torch.zeros(0, shots, n, dtype=torch.uint8, device=probs.device)
    flat = probs.detach().to(torch.float64)
    flat = flat / flat.sum(dim=-1, keepdim=True)
    gen_device = generator.device if generator is not None else flat.device
    idx = torch.multinomial(flat.to(gen_device), shots, replacement=True, generator=generator).to(probs.device)
    shifts = torch.arange(n - 1, -1, -1, device=idx.device)
    return ((idx.unsqueeze(-1) >> shifts) & 1).to(torch.uint8)
