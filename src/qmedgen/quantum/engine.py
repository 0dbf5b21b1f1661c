"""The fast state-vector engine: Kronecker-block matmuls, precomputed entanglers, adjoint backward.

Why it is fast
--------------
* Gate fusion (:mod:`qmedgen.quantum.gates`): between entanglers every qubit's gates multiply into one 2x2 matrix.
  The first segment acts on |0...0>, so the state after it is a product state built by outer products (no pass).
  With a CZ chain, the first :data:`ENTANGLER_FOLDS` CZ chains and block layers fold into it too
  (:func:`fold_cz_layer`): the state after them is a chain of small per-block tensors (a matrix product state with
  bond 2**folds across block boundaries), contracted straight into the state buffer. MediQ-GAN's depth-6 circuit
  then needs 3 layers of block matmuls instead of 6: forward 110 -> 66 ms for 90 circuits, forward + backward
  126 -> 80 ms for 30. A CNOT chain folds the same way (:func:`fold_cnot_chain_layer`): the diffusion bottleneck
  circuit at batch 64 needs no block layer at all any more, 0.18-0.21 -> 0.053-0.056 s forward + backward.
* Block matmuls: the per-qubit matrices of a segment are grouped into blocks of ~4 qubits; the Kronecker product
  of a block (a 16x16 matrix per circuit) is applied with ONE batched matmul that reads the state as
  ``[B, 16, rest]`` and writes ``[B, rest, 16]``. Writing the transposed product cyclically shifts the wire order
  by the block size for free, so the next block is again the leading one and, after a full layer, the order is the
  original one again (no permutes, no einsum copies).
* Real arithmetic: RY, CZ, CNOT and the X-basis change (Hadamard) are real. When every gate after the first segment
  is real (MediQ-GAN: RY layers + CZ, readout <X>), the real and imaginary parts of the state evolve independently
  under the same real matrices, so they are simulated as a real batch of twice the size ("stacked" mode): real
  GEMMs are ~2.5x faster than complex ones here. Otherwise ("complex" mode) torch's complex GEMM is used.
* Entanglers: the CZ chain is one precomputed +-1 vector (in-place multiply); a CNOT chain or ring is one
  precomputed permutation of basis indices (a gather).
* Readout: everything is rotated to the measurement basis inside the last segment, so <P_i> = sum_k p_k z_i(k) is
  computed from two marginals of the probabilities (top and bottom halves of the wires): no per-qubit passes.
* Cache-sized chunks (CPU): a block matmul does only 16 multiply-adds per amplitude, so streaming a large batch
  from memory once per block leaves the cores waiting. The circuits are therefore run a chunk at a time (about
  :data:`CHUNK_BYTES` per torch thread per state buffer) through every layer, forward and backward, so that a
  chunk's buffers stay in the last-level cache. MediQ-GAN's circuit at batch 64 (320 circuits): 2.6 -> 1.95 s
  forward + backward; the diffusion circuit at batch 64: 0.24 -> 0.19 s (benchmarks/RESULTS.md). Every quantity
  is per circuit, so chunking does not change any result.

Why it is lean (adjoint method)
-------------------------------
The forward keeps only the final state. The backward starts from lambda = H_g psi (H_g = sum_i g_i Z_i, g the
incoming gradient) and walks the circuit backwards, un-applying each block (M^dagger) to both psi and lambda; the
gradient of a block matrix is 2 lambda_after psi_before^dagger (a small [16, 16] matmul). Peak memory is about five
copies of the batch state (see :mod:`qmedgen.quantum.memory`), independent of depth. The block-matrix gradients
flow to the angles by ordinary autograd through the tiny matrix construction.

When every block's input state fits in :data:`STORE_MAX_BYTES` (and a quarter of the free memory), the forward
keeps them instead, and the backward reads psi_before rather than un-applying the block: one batched matmul less
per block (the diffusion circuit at batch 64 and MediQ-GAN's training batches; 0.36 -> 0.26 s and 0.38 -> 0.29 s
measured). The state buffers come from :mod:`qmedgen.quantum.workspace`, which keeps them between calls: a fresh
100 MB CPU tensor costs more in page faults than the matmul that fills it. The forward and the backward hold them
in a :class:`~qmedgen.quantum.workspace.Lease`, so every buffer goes back exactly once, also when an error
interrupts them.

Higher-order: a second backward through the same graph recomputes the final state (the first one recycles it);
``create_graph=True`` (double backward, e.g. Jacobian-vector products as derivatives of vjps) recomputes the
forward with plain autograd ops and differentiates that, so it costs memory proportional to depth.

torch.func transforms (vmap, jacrev, functional grad) are not supported by the custom Function; use torch.autograd
(``grad``, ``autograd.functional.jacobian``), which the adjoint backward serves.

Not used: torch.compile. The time goes into BLAS GEMMs and memory-bound passes that a compiler cannot fuse across
the matmuls; compilation would add seconds of warm-up per shape and a fragile dependency for no measured gain.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
from dataclasses import dataclass

import torch

from qmedgen.quantum import workspace

BLOCK_QUBITS = 4  # ~16x16 blocks: fastest measured for real and complex GEMMs on CPU (see benchmarks/RESULTS.md)
STORE_MAX_BYTES = 2**30  # keep every block's input state for the backward when they need at most this much
ENTANGLER_FOLDS = 3  # entangler + block layers folded into the initial state (fold_cz_layer, fold_cnot_chain_layer);
#                     CZ chain at 16 qubits, 1 / 2 / 3 / 4 / 5 folds measured: 3 and 4 best (bond 8 and 16), 5 slower
#                     than 1 (the bond-32 contractions outgrow the saved layers)
CHUNK_BYTES = 2 * 2**20  # CPU: state bytes per chunk buffer and per torch thread (2 threads: 4 MiB, measured best)


def block_sizes(n: int, k: int = BLOCK_QUBITS) -> tuple[int, ...]:
    """Split n wires into ceil(n/k) contiguous blocks of near-equal size (larger blocks first)."""
    m = max(1, -(-n // k))
    base, extra = divmod(n, m)
    return tuple(base + 1 if i < extra else base for i in range(m))


class Mode(enum.Enum):
    """How the state vector is held (see the module docstring, "Real arithmetic")."""

    REAL = "real"  # every gate and the initial state are real: one real state per circuit
    STACKED = "stacked"  # complex initial state, real gates after it: re and im parts as a real batch of 2x rows
    COMPLEX = "complex"  # some gate after the initial state is complex: torch's complex GEMMs

    @property
    def complex_state(self) -> bool:
        """Whether the state has an imaginary part (stored stacked or as complex numbers)."""
        return self is not Mode.REAL


@dataclass(frozen=True)
class Plan:
    """The static structure of one simulation (shapes only, no tensors)."""

    n: int
    blocks: tuple[int, ...]
    entangler: str  # "cz-chain" | "cnot-chain" | "cnot-ring" | "none"
    n_layers: int  # segments of block matmuls after the initial state (see _initial_state)
    trailing: bool  # an entangler after the last segment
    mode: Mode  # a Mode; its string value ("real" | "stacked" | "complex") is accepted and converted
    batch: int  # flattened number of circuits
    return_probs: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.mode, Mode):
            object.__setattr__(self, "mode", Mode(self.mode))


# ----------------------------------------------------------------------------------------------------------------
# Cached constants (per n, dtype, device)


def _bits(n: int, device: torch.device) -> torch.Tensor:
    """``[2**n, n]`` int64 bits of every basis index, wire 0 = most significant."""
    idx = torch.arange(2**n, device=device)
    shifts = torch.arange(n - 1, -1, -1, device=device)
    return (idx.unsqueeze(-1) >> shifts) & 1


def _bit(idx: torch.Tensor, wire: int, n: int) -> torch.Tensor:
    return (idx >> (n - 1 - wire)) & 1


@functools.lru_cache(maxsize=32)
def cz_signs(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The CZ chain as a diagonal: ``[2**n]`` of (-1)^(sum_i b_i b_{i+1}) (built in O(2**n) memory)."""
    idx = torch.arange(2**n, device=device)
    parity = torch.zeros_like(idx)
    for i in range(n - 1):
        parity ^= _bit(idx, i, n) & _bit(idx, i + 1, n)
    return (1 - 2 * parity).to(dtype)


@functools.lru_cache(maxsize=32)
def cnot_permutation(n: int, ring: bool, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(forward, inverse)`` gather indices: ``new = old[forward]`` applies the CNOT chain (ring), ``old =
    new[inverse]`` undoes it. Each CNOT is an involution, so the inverse map applies the gates in reverse order."""
    pairs = [(i, i + 1) for i in range(n - 1)] + ([(n - 1, 0)] if ring and n > 1 else [])

    def image(order):
        j = torch.arange(2**n, device=device)
        for c, t in order:
            j ^= _bit(j, c, n) << (n - 1 - t)
        return j

    f = image(pairs)  # basis state j goes to f[j]
    # new[f[j]] = old[j]  =>  new = old[f^-1];  old = new[f]
    return image(list(reversed(pairs))), f


@functools.lru_cache(maxsize=32)
def z_signs(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``[2**n, n]`` eigenvalues +-1 of Z_i on every basis state."""
    return (1 - 2 * _bits(n, device)).to(dtype)


def split_wires(n: int) -> tuple[int, int]:
    """Readout split: <Z> of the top a wires from one marginal, of the bottom b wires from the other."""
    a = n // 2
    return a, n - a


# ----------------------------------------------------------------------------------------------------------------
# Kernels on the state x: [Bt, 2**n] (real, stacked re/im, or complex), wire order = original between layers.


def kron_vectors(vs: list[torch.Tensor]) -> torch.Tensor:
    """Kronecker product of ``[..., d_j]`` vectors (first = most significant)."""
    out = vs[0]
    for v in vs[1:]:
        out = (out.unsqueeze(-1) * v.unsqueeze(-2)).flatten(-2)
    return out


def kron_matrices(ms: torch.Tensor) -> torch.Tensor:
    """``[..., k, 2, 2]`` -> ``[..., 2**k, 2**k]``: U_0 (x) U_1 (x) ... (x) U_{k-1}."""
    out = ms[..., 0, :, :]
    for j in range(1, ms.shape[-3]):
        m = ms[..., j, :, :]
        d = out.shape[-1] * 2
        out = (out[..., :, None, :, None] * m[..., None, :, None, :]).reshape(*out.shape[:-2], d, d)
    return out


def apply_blocks(x: torch.Tensor, mats: list[torch.Tensor], buf: torch.Tensor | None = None):
    """Apply one block matrix per block, each to the leading wires; returns ``(x, spare_buffer)``.

    ``S^T M^T = (M S)^T`` writes the result with the block's wires moved last, so the next block leads.
    With ``buf`` the two buffers ping-pong (no allocation); without, plain autograd-friendly ops.
    """
    bt, size = x.shape
    for m in mats:
        d = m.shape[-1]
        s = x.view(bt, d, size // d)
        if buf is None:
            x = torch.matmul(s.mT, m.mT).reshape(bt, size)
        else:
            torch.matmul(s.mT, m.mT, out=buf.view(bt, size // d, d))
            x, buf = buf, x
    return x, buf


def unapply_block(x: torch.Tensor, m: torch.Tensor, buf: torch.Tensor, conjugate: bool = False) -> torch.Tensor:
    """Inverse of one block of :func:`apply_blocks` (M^dagger, wires rotated back) written into ``buf``.

    ``conjugate``: ``x`` holds conj(state), which evolves under conj(M^dagger) = M^T.
    """
    bt, size = x.shape
    d = m.shape[-1]
    torch.matmul(m.mT if conjugate else m.mH, x.view(bt, size // d, d).mT, out=buf.view(bt, d, size // d))
    return buf


def apply_entangler(x: torch.Tensor, plan: Plan, buf: torch.Tensor | None = None, inverse: bool = False):
    """Apply (or undo) the entangler; returns ``(x, spare_buffer)``. CZ in place (it is its own inverse)."""
    if plan.entangler == "cz-chain":
        sign = cz_signs(plan.n, x.real.dtype if x.is_complex() else x.dtype, x.device)
        if buf is None:
            return x * sign, buf
        x.mul_(sign)
        return x, buf
    fwd, inv = cnot_permutation(plan.n, plan.entangler == "cnot-ring", x.device)
    idx = inv if inverse else fwd
    if buf is None:
        return x.index_select(1, idx), buf
    torch.index_select(x, 1, idx, out=buf)
    return buf, x


def probabilities_from_state(x: torch.Tensor, plan: Plan) -> torch.Tensor:
    """``[B, 2**n]`` outcome probabilities of the final (measurement-basis) state."""
    if plan.mode is Mode.COMPLEX:  # |x|^2 = re^2 + im^2 from strided views (abs() would take a square root)
        return x.real.square().addcmul_(x.imag, x.imag)
    if plan.mode is Mode.STACKED:
        b = plan.batch
        return x[:b].square().addcmul_(x[b:], x[b:])  # no full-size temporary
    return x.square()


def expectations(p: torch.Tensor, n: int) -> torch.Tensor:
    """<Z_i> for all wires from probabilities ``[B, 2**n]`` via two marginals (no per-wire pass)."""
    a, b = split_wires(n)
    pv = p.view(p.shape[0], 2**a, 2**b)
    parts = []
    if a:
        parts.append(pv.sum(2) @ z_signs(a, p.dtype, p.device))
    parts.append(pv.sum(1) @ z_signs(b, p.dtype, p.device))
    return torch.cat(parts, dim=-1)


def adjoint_seed(x: torch.Tensor, g: torch.Tensor, plan: Plan, out: torch.Tensor) -> torch.Tensor:
    """lambda = H_g x with H_g = sum_i g_i Z_i (diagonal), without materialising the diagonal."""
    n = plan.n
    a, b = split_wires(n)
    real = g.dtype
    dt = z_signs(b, real, g.device) @ g[:, a:].T  # [2**b, B]
    if plan.mode is Mode.STACKED:
        g2 = torch.cat([g, g])
        dt = torch.cat([dt, dt], dim=1)
    else:
        g2 = g
    bt = x.shape[0]
    xv, ov = x.view(bt, 2**a, 2**b), out.view(bt, 2**a, 2**b)
    torch.mul(xv, dt.T.unsqueeze(1), out=ov)
    if a:
        dtop = g2[:, :a] @ z_signs(a, real, g.device).T  # [Bt, 2**a]
        ov.addcmul_(xv, dtop.unsqueeze(-1).to(x.dtype))
    if plan.mode is Mode.COMPLEX:
        out.conj_physical_()  # the backward tracks conj(lambda): see AdjointExpval.backward
    return out


# ----------------------------------------------------------------------------------------------------------------


def product_sites(vecs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Block vectors ``[B or 1, d]`` of a product state as bond-1 sites ``[B or 1, 1, d, 1]``."""
    return [v[:, None, :, None] for v in vecs]


def fold_cz_layer(sites: list[torch.Tensor], mats: list[torch.Tensor], blocks: tuple[int, ...]) -> list[torch.Tensor]:
    """Apply a CZ chain and then one block layer ``(x)_b M_b`` to a state held as sites: the bond doubles.

    Why: it saves a whole layer of state-vector matmuls. Inside a block the CZs are a sign on the block's own index;
    between blocks b and b+1 the CZ sign is (-1)^(l_b f_b+1), with l_b the last wire of block b and f_b+1 the first
    wire of the next one. Splitting each site by (f, l) before applying M_b leaves the sites
    ``A'_b[(a, l_b-1), k, (c, l_b)] = sum_f (-1)^(l_b-1 f) (M_b (A_b[a, ., c] * sign * [first = f, last = l_b]))[k]``
    joined by one more bit per block boundary. From a product state (bond 1), F folds give bond 2**F, which
    :func:`_initial_state` contracts at ~2**(F+1) multiply-adds per amplitude, while each folded layer would have
    cost 16 per amplitude and block. Exact; everything here is O(d^2 bond^2) per circuit (tiny next to the state)
    and differentiable by plain autograd.
    """
    m, out = len(blocks), []
    for b, (site, mat, k) in enumerate(zip(sites, mats, blocks)):
        idx = torch.arange(2**k, device=site.device)
        first, last = (idx >> (k - 1)) & 1, idx & 1
        real = site.real.dtype if site.is_complex() else site.dtype
        masks = torch.stack([(first == f) & (last == lb) for f in (0, 1) for lb in (0, 1)], -1).to(real)
        dt = torch.promote_types(site.dtype, mat.dtype)
        w = site.to(dt) * cz_signs(k, real, site.device)[:, None]  # [B, Dl, d, Dr]: the CZs inside the block
        split = w.unsqueeze(-2) * masks[:, :, None]  # [B, Dl, d, 4 (f, l), Dr]
        y = (mat.to(dt)[:, None] @ split.flatten(-2)).unflatten(-1, (2, 2, w.shape[-1]))  # [B, Dl, d, f, l, Dr]
        if b == 0:  # no left neighbour: sum out f
            new = y.sum(3)
        else:  # left bond (a, lp) with the sign (-1)^(lp f)
            new = torch.stack([y[:, :, :, 0] + y[:, :, :, 1], y[:, :, :, 0] - y[:, :, :, 1]], 2).flatten(1, 2)
        # right bond (c, l): l sits before c in y; move it last, or sum it out for the last block
        new = new.sum(-2) if b == m - 1 else new.transpose(-1, -2).flatten(-2)
        out.append(new)
    return out


def fold_cnot_chain_layer(
    sites: list[torch.Tensor], mats: list[torch.Tensor], blocks: tuple[int, ...]
) -> list[torch.Tensor]:
    """Apply a CNOT chain (0->1, 1->2, ...) and then one block layer to a state held as sites: the bond doubles.

    The chain maps every basis state to its prefix parities: new bit j = b_0 ^ ... ^ b_j, so the amplitude of a new
    basis state reads the old one at b_j = new_j ^ new_(j-1). Within block b that needs only the block's own new
    bits and the previous block's last new bit p, which becomes one more bit of the bond: ``A'_b[(a, p), k, (c, l)]
    = (M_b A_b[a, perm_p(.), c] [last(.) = l])[k]``. Same use as :func:`fold_cz_layer` (quantum diffusion's
    bottleneck circuit: all of its block layers fold). Exact and differentiable by plain autograd.
    """
    m, out = len(blocks), []
    for b, (site, mat, k) in enumerate(zip(sites, mats, blocks)):
        new_idx = torch.arange(2**k, device=site.device)
        real = site.real.dtype if site.is_complex() else site.dtype
        dt = torch.promote_types(site.dtype, mat.dtype)
        # the old block index read by each new one, given the previous block's last new bit p
        reads = [new_idx ^ ((new_idx >> 1) | (p << (k - 1))) for p in ((0,) if b == 0 else (0, 1))]
        g = torch.stack([site[:, :, r, :] for r in reads], 2).flatten(1, 2).to(dt)  # [B, (a, p), d, Dr]
        if b < m - 1:  # right bond (c, l): the block's last new bit goes to the next block
            last = torch.stack([(new_idx & 1) == lb for lb in (0, 1)], -1).to(real)  # [d, 2]
            g = (g.unsqueeze(-1) * last[:, None, :]).flatten(-2)
        out.append(mat.to(dt)[:, None] @ g)
    return out


def _contract_head(sites: list[torch.Tensor], batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(head, last)``: all sites but the last contracted to ``[B, d_head, D]``, and the last as ``[B, D, d]``."""
    ss = [t.expand(batch, *t.shape[1:]) for t in sites]
    head = ss[0].new_ones(batch, 1, 1)
    for t in ss[:-1]:
        dl, d, dr = t.shape[1:]
        head = (head @ t.reshape(batch, dl, d * dr)).reshape(batch, head.shape[1] * d, dr)
    last = ss[-1]
    return head, last.reshape(batch, last.shape[1], last.shape[2])


def _initial_state(plan: Plan, sites, buffered: bool = True) -> torch.Tensor:
    """The state the block layers start from, as a fresh ``[Bt, 2**n]`` buffer (stacked re/im if needed), from its
    sites ``[B or 1, D_left, d, D_right]`` (a product state: bond 1; after F :func:`fold_cz_layer` or
    :func:`fold_cnot_chain_layer` steps: 2**F).
    ``buffered``: the last contraction writes straight into a workspace buffer (no full-size temporaries);
    otherwise plain differentiable ops."""
    b, size = plan.batch, 2**plan.n
    head, last = _contract_head(sites, b)
    if not buffered:
        psi = (head @ last).flatten(1)
        return torch.cat([psi.real, psi.imag]) if plan.mode is Mode.STACKED else psi
    bond, d1, d2 = last.shape[1], head.shape[1], last.shape[2]
    if plan.mode is Mode.STACKED:
        out = workspace.take((2 * b, size), head.real.dtype, head.device)
        o = out.view(2, b, d1, d2)
        hr, hi, lr, li = head.real, head.imag, last.real, last.imag
        if bond == 1:  # outer products: a broadcast multiply beats a K=1 matmul
            torch.mul(hr, lr, out=o[0]).addcmul_(hi, li, value=-1)
            torch.mul(hr, li, out=o[1]).addcmul_(hi, lr)
        else:  # (hr + i hi)(lr + i li) as two real matmuls over [re | im] x 2 bonds
            h = torch.cat([hr, hi], -1)
            torch.matmul(h, torch.cat([lr, -li], -2), out=o[0])
            torch.matmul(h, torch.cat([li, lr], -2), out=o[1])
        return out
    out = workspace.take((b, size), torch.promote_types(head.dtype, last.dtype), head.device)
    o = out.view(b, d1, d2)
    if bond == 1:
        torch.mul(head, last, out=o)
    else:
        torch.matmul(head, last, out=o)
    return out


def _block_matrices(plan: Plan, mats) -> list[list[torch.Tensor]]:
    """Per-block matrices broadcast to the simulated batch (duplicated for the re/im halves when stacked)."""
    layers = []
    for layer in mats:
        blocks = []
        for m in layer:
            m = m.expand(plan.batch, *m.shape[-2:])
            if plan.mode is Mode.STACKED:
                m = torch.cat([m, m])
            blocks.append(m.contiguous())
        layers.append(blocks)
    return layers


def forward_state(plan: Plan, sites, mats, buffered: bool, store: list | None = None) -> torch.Tensor:
    """The final state ``[Bt, 2**n]``; ``buffered`` uses two ping-pong workspace buffers (inside the adjoint
    Function). ``store`` (a list, with ``buffered``) receives, per layer, the state before each block: the
    backward then reads them instead of un-applying every block from the final state."""
    x, layers = _initial_state(plan, sites, buffered), _block_matrices(plan, mats)
    if not (buffered and (layers or plan.entangler.startswith("cnot"))):  # plain autograd-friendly ops
        for blocks in layers:
            x, _ = apply_entangler(x, plan)
            x, _ = apply_blocks(x, blocks)
        if plan.trailing:
            x, _ = apply_entangler(x, plan)
        return x
    with workspace.Lease() as lease:  # x and a spare ping-pong; what is handed out is kept, the rest goes back
        lease.adopt(x)
        buf = lease.take(x.shape, x.dtype, x.device)
        for blocks in layers:
            x, buf = apply_entangler(x, plan, buf)
            if store is None:
                x, buf = apply_blocks(x, blocks, buf)
                continue
            inputs = []
            for m in blocks:  # every block writes a fresh buffer: its input is kept for the backward
                inputs.append(lease.keep(x))
                x, buf = apply_blocks(x, [m], buf)
                buf = lease.take(x.shape, x.dtype, x.device)
            store.append(inputs)
        if plan.trailing:
            x, buf = apply_entangler(x, plan, buf)
        return lease.keep(x)


def store_fits(plan: Plan, like: torch.Tensor) -> bool:
    """Whether keeping every block input for the backward fits :data:`STORE_MAX_BYTES` and a quarter of the free
    memory of ``like``'s device (otherwise the backward un-applies the blocks: slower, but lean)."""
    from qmedgen.quantum.memory import available_bytes

    n_states = plan.n_layers * len(plan.blocks)
    amps = plan.batch * (2 if plan.mode is Mode.STACKED else 1) * 2**plan.n
    need = n_states * amps * like.real.element_size()
    if n_states == 0 or need > STORE_MAX_BYTES:
        return False
    avail = available_bytes(like.device)
    return avail is None or need <= avail // 4


def chunk_spans(plan: Plan, like: torch.Tensor) -> list[tuple[int, int]]:
    """Circuit ranges simulated one after another on the CPU, each through every layer (forward, and backward
    with its own lambda), so that a chunk's buffers stay in the last-level cache between the matmuls instead of
    streaming the whole batch from memory once per block (see :data:`CHUNK_BYTES`). One span on other devices."""
    if like.device.type != "cpu" or plan.batch == 0:
        return [(0, plan.batch)]
    rows = 2 if plan.mode is Mode.STACKED else 1
    itemsize = 2 * like.real.element_size() if plan.mode is Mode.COMPLEX else like.real.element_size()
    step = max(1, CHUNK_BYTES * torch.get_num_threads() // (rows * 2**plan.n * itemsize))
    return [(s, min(s + step, plan.batch)) for s in range(0, plan.batch, step)]


def _rows(t: torch.Tensor, s: int, e: int) -> torch.Tensor:
    return t if t.shape[0] == 1 else t[s:e]


def _chunk(plan: Plan, sites, mats, s: int, e: int):
    """The plan, initial-state sites and block matrices of circuits ``s:e`` (broadcast inputs stay shared)."""
    sub = dataclasses.replace(plan, batch=e - s)
    return sub, [_rows(v, s, e) for v in sites], [[_rows(mm, s, e) for mm in layer] for layer in mats]


class AdjointExpval(torch.autograd.Function):
    """<Z_i> of the final state with the adjoint-method backward (see module docstring).

    Inputs: ``plan``, then ``len(plan.blocks)`` sites of the initial state ``[B or 1, D_left, d, D_right]`` (see
    :func:`_initial_state`), then for each later segment ``len(plan.blocks)`` block matrices ``[B or 1, d, d]``.
    Output ``[B, n]`` (and, with ``plan.return_probs``, the non-differentiable probabilities ``[B, 2**n]``). On the
    CPU the circuits run in chunks (:func:`chunk_spans`); every quantity is per circuit, so the results do not depend
    on the chunking.
    """

    @staticmethod
    def forward(ctx, plan: Plan, *tensors):
        m = len(plan.blocks)
        sites, flat = list(tensors[:m]), tensors[m:]
        mats = [list(flat[j * m : (j + 1) * m]) for j in range(plan.n_layers)]
        grad = any(ctx.needs_input_grad[1:])
        keep = grad and store_fits(plan, tensors[0])
        spans = chunk_spans(plan, tensors[0])
        states, stores, es, ps = [], [], [], []
        for s, e in spans:
            sub, v, mm = _chunk(plan, sites, mats, s, e)
            store = [] if keep else None
            x = forward_state(sub, v, mm, buffered=True, store=store)
            p = probabilities_from_state(x, sub)
            es.append(expectations(p, plan.n))
            if plan.return_probs:
                ps.append(p)
            del p
            if grad:
                states.append(x)  # the backward recycles it as a work buffer
                stores.append(store)
            else:
                workspace.give(x)
        ctx.plan, ctx.spans = plan, spans  # the backward must split as the forward did (threads may change)
        ctx.state, ctx.stored = (states, stores) if grad else (None, None)
        if grad:
            ctx.save_for_backward(*tensors)  # small; saved as inputs so in-place changes are detected
        e = es[0] if len(es) == 1 else torch.cat(es)
        if plan.return_probs:
            p = ps[0] if len(ps) == 1 else torch.cat(ps)
            ctx.mark_non_differentiable(p)
            return e, p
        return e

    @staticmethod
    def backward(ctx, g, *unused):
        if torch.is_autocast_enabled(g.device.type):  # backward called inside an autocast region: stay exact
            with torch.autocast(device_type=g.device.type, enabled=False):
                return AdjointExpval._backward(ctx, g)
        return AdjointExpval._backward(ctx, g)

    @staticmethod
    def _backward(ctx, g):
        plan: Plan = ctx.plan
        m = len(plan.blocks)
        saved = ctx.saved_tensors
        sites, flat = list(saved[:m]), saved[m:]
        mats_in = [list(flat[j * m : (j + 1) * m]) for j in range(plan.n_layers)]
        need = ctx.needs_input_grad[1:]
        if torch.is_grad_enabled():  # create_graph=True: a differentiable backward, see _differentiable_vjp
            return (None, *_differentiable_vjp(plan, sites, mats_in, g, need))
        spans, states, stores = ctx.spans, ctx.state, ctx.stored
        ctx.state = ctx.stored = None
        recompute = states is None  # a second backward through the same graph (retain_graph, Jacobians)
        if recompute:
            states = stores = [None] * len(spans)
        keep = recompute and store_fits(plan, saved[0])
        inputs = [*sites, *[mm for layer in mats_in for mm in layer]]
        parts: list[list[torch.Tensor]] = [[] for _ in inputs]
        for (s, e), phi, stored in zip(spans, states, stores):
            sub, v, mm = _chunk(plan, sites, mats_in, s, e)
            if phi is None:
                stored = [] if keep else None
                phi = forward_state(sub, v, mm, buffered=True, store=stored)
            grads = _backward_chunk(sub, v, mm, phi, stored, g[s:e], need)
            for part, gk, t in zip(parts, grads, inputs):
                if gk is not None:
                    part.append(_reduce(gk, t))
        out = []
        for k, (part, t) in enumerate(zip(parts, inputs)):
            if not part:
                out.append(None)
                continue
            g = part[0] if len(part) == 1 else (torch.stack(part).sum(0) if t.shape[0] == 1 else torch.cat(part))
            out.append(g if k < m else 2 * g)  # block matrices: the factor 2 of _block_grad, applied once
        return (None, *out)


class _PingPong:
    """A state and a spare buffer of its shape: each step writes into the spare and swaps the two."""

    __slots__ = ("spare", "x")

    def __init__(self, x: torch.Tensor, spare: torch.Tensor) -> None:
        self.x, self.spare = x, spare

    def unapply_block(self, m: torch.Tensor, conjugate: bool = False) -> torch.Tensor:
        self.x, self.spare = unapply_block(self.x, m, self.spare, conjugate=conjugate), self.x
        return self.x

    def undo_entangler(self, plan: Plan) -> None:
        self.x, self.spare = apply_entangler(self.x, plan, self.spare, inverse=True)


class _UnappliedInputs(_PingPong):
    """psi before each block, un-applied block by block from the final state (the lean backward)."""

    def before(self, j: int, i: int, m: torch.Tensor) -> torch.Tensor:
        return self.unapply_block(m)

    def done(self, t: torch.Tensor) -> None:
        pass  # the next un-applied block overwrites it


class _StoredInputs:
    """psi before each block as the forward kept it (see :func:`store_fits`); each goes back once it is read."""

    def __init__(self, stored: list[list[torch.Tensor | None]], lease: workspace.Lease) -> None:
        self.stored, self.lease = stored, lease

    def before(self, j: int, i: int, m: torch.Tensor) -> torch.Tensor:
        t, self.stored[j][i] = self.stored[j][i], None
        return t

    def done(self, t: torch.Tensor) -> None:
        self.lease.release(t)

    def undo_entangler(self, plan: Plan) -> None:
        pass  # the stored inputs already sit before their blocks


def _backward_chunk(plan: Plan, sites, mats_in, phi, stored, g, need) -> list[torch.Tensor | None]:
    """Per-circuit gradients of one chunk (initial-state sites, then block matrices halved), unreduced.

    ``phi`` is the chunk's final state and ``stored`` its block inputs (or None): the backward owns them, and
    every buffer it holds goes back to the workspace when it is done, on an error too. It walks the layers
    backwards, un-applying lambda block by block, with psi before each block read from ``stored`` or un-applied
    from ``phi``; it stops after the last layer that anything is still needed from.
    """
    m = len(plan.blocks)
    need_site = any(need[:m])
    need_mat = [any(need[m + j * m : m + (j + 1) * m]) for j in range(plan.n_layers)]
    grads_mats: list[list[torch.Tensor | None]] = [[None] * m for _ in range(plan.n_layers)]
    layers = _block_matrices(plan, mats_in)
    g = g.to(phi.real.dtype if phi.is_complex() else phi.dtype)
    shape, dtype, device = phi.shape, phi.dtype, phi.device
    # Complex mode tracks mu = conj(lambda): then the block gradient conj(mu^T psi^T) and the site
    # gradient need no conjugated copy of a state-sized tensor (torch would materialise one for a conj view).
    conj = plan.mode is Mode.COMPLEX
    with workspace.Lease() as lam_bufs:
        with workspace.Lease() as psi_bufs:  # psi's buffers go back before the site gradients
            psi_bufs.adopt(phi, *(t for layer in stored or () for t in layer))
            lam = _PingPong(adjoint_seed(phi, g, plan, lam_bufs.take(shape, dtype, device)),
                            lam_bufs.take(shape, dtype, device))
            if stored is None:
                psi: _UnappliedInputs | _StoredInputs = _UnappliedInputs(phi, psi_bufs.take(shape, dtype, device))
            else:  # block inputs kept by the forward: no un-applying of psi
                psi = _StoredInputs(stored, psi_bufs)
                psi_bufs.release(phi)
            del phi, stored
            if plan.trailing:
                psi.undo_entangler(plan)
                lam.undo_entangler(plan)
            for j in range(plan.n_layers - 1, -1, -1):
                here, earlier = need_mat[j], any(need_mat[:j])  # block gradients wanted in / before this layer
                if not (here or earlier or need_site):
                    break
                for i in range(m - 1, -1, -1):
                    mat = layers[j][i]
                    if here or earlier:  # psi before this block: for its gradient or earlier ones
                        before = psi.before(j, i, mat)
                        if here:
                            grads_mats[j][i] = _block_grad(lam.x, before, mat.shape[-1], plan)
                        psi.done(before)
                        del before
                    if (here and i > 0) or earlier or need_site:
                        lam.unapply_block(mat, conjugate=conj)
                if earlier:
                    psi.undo_entangler(plan)
                if earlier or need_site:
                    lam.undo_entangler(plan)
            del psi
        grads_sites: list[torch.Tensor | None] = [None] * m
        if need_site:
            if plan.mode is Mode.STACKED:
                b = plan.batch
                lam0 = torch.complex(lam.x[:b], lam.x[b:])
                lam_bufs.release(lam.x)
            else:
                lam0 = lam.x  # goes back when the lease ends
            lam_bufs.release(lam.spare)
            del lam
            grads_sites = _site_grads(lam0, sites, plan.batch, conjugated=conj)
            del lam0
    return [*grads_sites, *[gm for layer in grads_mats for gm in layer]]


def _differentiable_vjp(plan: Plan, sites, mats, g: torch.Tensor, need) -> list[torch.Tensor | None]:
    """The vector-Jacobian product as a differentiable graph (double backward, e.g. Jacobian-vector products
    computed as the derivative of a vjp): recompute the forward with plain autograd ops and differentiate it.
    Memory then grows with depth like any autograd simulator; only requests with ``create_graph=True`` pay it."""
    inputs = [*sites, *[mm for layer in mats for mm in layer]]
    wanted = [t for t, f in zip(inputs, need) if f]
    x = forward_state(plan, sites, mats, buffered=False)
    e = expectations(probabilities_from_state(x, plan), plan.n)
    grads = iter(torch.autograd.grad(e, wanted, g, create_graph=True, allow_unused=True))
    out = []
    for t, f in zip(inputs, need):
        gt = next(grads) if f else None
        out.append(torch.zeros_like(t) if f and gt is None else gt)
    return out


def _block_grad(lam: torch.Tensor, phi: torch.Tensor, d: int, plan: Plan) -> torch.Tensor:
    """dL/dM / 2 = lambda_after psi_before^dagger, summed over the rest of the wires (and re/im when stacked)."""
    bt, size = phi.shape
    lam_after = lam.view(bt, size // d, d)
    phi_before = phi.view(bt, d, size // d)
    gm = torch.matmul(lam_after.mT, phi_before.mT)
    if plan.mode is Mode.COMPLEX:  # lam holds conj(lambda): G = conj(mu^T psi^T)
        gm = gm.conj()
    if plan.mode is Mode.STACKED:
        gm = gm[: plan.batch] + gm[plan.batch :]
    return gm  # half the gradient: the caller doubles the sum over chunks once (a small op less per block)


def _reduce(grad: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    """Sum a per-circuit gradient over circuits the input was broadcast to; match its dtype (real inputs)."""
    if grad is None:
        return None
    if like.shape[0] == 1 and grad.shape[0] != 1:
        grad = grad.sum(0, keepdim=True)
    if not like.is_complex() and grad.is_complex():
        grad = grad.real
    return grad.to(like.dtype)


def _site_grads(
    lam: torch.Tensor, sites: list[torch.Tensor], batch: int, conjugated: bool = False
) -> list[torch.Tensor]:
    """Gradients of the sites of psi = A_0 A_1 ... A_{m-1} (bond indices contracted) given lambda
    (dL = 2 Re <lambda|d psi>).

    grad A_b = 2 sum over the other blocks' indices of lambda * conj(everything left and right of b), computed with
    a running left contraction so that lambda is read only about twice. ``conjugated``: ``lam`` holds
    conj(lambda), so the sums are taken with the unconjugated sites and the (small) results conjugated.
    """
    ss = [t.expand(batch, *t.shape[1:]).to(lam.dtype) for t in sites]
    if lam.is_complex() and not conjugated:
        ss = [t.conj() for t in ss]
    m = len(ss)
    right: list[torch.Tensor] = [None] * (m + 1)  # type: ignore[list-item]
    right[m] = lam.new_ones(batch, 1, 1)  # right[b]: sites b.. contracted, [B, D_left(b), amplitudes]
    for b in range(m - 1, 0, -1):
        dl, d, dr = ss[b].shape[1:]
        right[b] = (ss[b].reshape(batch, dl * d, dr) @ right[b + 1]).reshape(batch, dl, d * right[b + 1].shape[-1])
    grads = []
    left = lam.reshape(batch, 1, lam.shape[-1])
    for b, t in enumerate(ss):
        dl, d, dr = t.shape[1:]
        lv = left.reshape(batch, dl * d, right[b + 1].shape[-1])
        c = (lv @ right[b + 1].mT).reshape(batch, dl, d, dr)
        grads.append(2 * (c.conj() if conjugated else c))
        if b < m - 1:
            left = t.reshape(batch, dl * d, dr).mT @ lv
    return grads
