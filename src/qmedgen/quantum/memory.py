"""Memory model of the state-vector engine, and the up-front refusal of requests that cannot fit.

Why up front: a 20-qubit batch that does not fit would otherwise be killed by the OOM killer (CPU) or fail deep
inside a backward pass (CUDA) after minutes of work; a clear :class:`~qmedgen.errors.ResourceError` naming the
qubits, the batch and the bytes needed vs available lets the user shrink the batch instead.

Copies of the batch state held at the peak (one copy = ``batch * 2**n`` amplitudes):
forward only 3 (product state, two ping-pong buffers), forward + adjoint backward 5 (saved final state, one spare
for psi, two for lambda, plus the complex lambda at the end). ``expval`` on the CPU runs the batch in
cache-sized chunks: there only the saved final states are batch-sized and the rest is per chunk (``chunk=``;
20 qubits x 320 circuits forward + backward measured 3.9 GiB peak RSS instead of 10.3).
Everything else (block matrices, sign vectors, the
CNOT permutation) is counted as a small constant. Not counted: the block inputs the forward keeps for a faster
backward, because the engine keeps them only when they need at most ``engine.STORE_MAX_BYTES`` (1 GiB) and a quarter
of the free memory; and the CPU buffers :mod:`qmedgen.quantum.workspace` keeps between calls (at most
``workspace.MAX_BYTES``, 2 GiB; they show in the free memory this check reads, and a refused request retries after
releasing them).

Guidance (float32 parameters, complex state, training = forward + backward; float64 doubles everything):

=========  ====================  ===================================================
n qubits   bytes per circuit     circuits per batch that fit in 24 GiB / 80 GiB
=========  ====================  ===================================================
16         2.6 MB                ~9,000 / ~30,000
20         42 MB                 ~600 / ~2,000
24         671 MB                ~35 / ~120
=========  ====================  ===================================================

Forward-only (inference, ``torch.no_grad``) needs 3/5 of that.
"""

from __future__ import annotations

import os

import torch

from qmedgen.errors import ResourceError
from qmedgen.quantum import workspace

FORWARD_COPIES = 3
BACKWARD_COPIES = 5


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def estimate_bytes(
    n_qubits: int,
    batch: int,
    dtype: torch.dtype = torch.float32,
    backward: bool = True,
    complex_state: bool = True,
    chunk: int | None = None,
) -> int:
    """Peak bytes the engine needs for ``batch`` circuits of ``n_qubits`` (float32/float64 parameters).

    ``complex_state=False`` is the all-real case (RY/CZ/CNOT circuits with an RY or no encoding and <X>/<Z>
    readout). Example: 16 qubits x 320 circuits, float32, backward: 5 x 320 x 65536 x 8 B = 0.84 GB; 20 qubits:
    13.4 GB; on a GPU keep this below the free device memory (``torch.cuda.mem_get_info``).

    ``chunk``: circuits per chunk when ``expval`` runs the batch in chunks (the CPU, see
    :func:`qmedgen.quantum.engine.chunk_spans`): then only the final states (one batch copy, kept for the
    backward) are batch-sized and the working buffers are chunk-sized: 20 qubits x 320 circuits need ~2.7 GB
    of live tensors (3.9 GiB peak RSS measured with glibc's default allocator settings: heap fragmentation).
    """
    real = torch.float64 if dtype in (torch.float64, torch.complex128) else torch.float32
    amp = _itemsize(real) * (2 if complex_state else 1)
    copies = BACKWARD_COPIES if backward else FORWARD_COPIES
    state = batch * (2**n_qubits) * amp
    if chunk is not None and chunk < batch:
        state_chunk = max(1, chunk) * (2**n_qubits) * amp
        work = (1 if backward else 0) * state + copies * state_chunk
    else:
        work = copies * state
    # cached constants: CZ signs / CNOT permutations (int64) and two readout sign tables
    constants = (2**n_qubits) * (8 * 2 + _itemsize(real))
    return work + constants + (1 << 20)


def available_bytes(device: torch.device | str) -> int | None:
    """Free memory on ``device`` (CUDA: free + torch's cached blocks; CPU: MemAvailable); ``None`` if unknown."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(free + cached)
    if device.type == "cpu":
        try:
            with open("/proc/meminfo") as fh:
                for line in fh:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None
    return None


def _fmt(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def check_fits(
    n_qubits: int,
    batch: int,
    dtype: torch.dtype,
    device: torch.device | str,
    backward: bool,
    complex_state: bool = True,
    chunk: int | None = None,
) -> int:
    """Raise :class:`ResourceError` when the simulation cannot fit; returns the estimate otherwise.

    ``QMEDGEN_MEMORY_LIMIT`` (bytes, e.g. ``8e9``) caps the memory the engine may assume available.
    """
    need = estimate_bytes(n_qubits, batch, dtype, backward=backward, complex_state=complex_state, chunk=chunk)
    avail = available_bytes(device)
    if avail is not None and need > avail and workspace.held_bytes():
        workspace.clear()  # pooled buffers of earlier calls: give them back and look again
        avail = available_bytes(device)
    limit = os.environ.get("QMEDGEN_MEMORY_LIMIT")
    if limit:
        avail = int(float(limit)) if avail is None else min(avail, int(float(limit)))
    if avail is not None and need > avail:
        what = "forward + backward" if backward else "forward"
        raise ResourceError(
            f"simulating {batch} circuits of {n_qubits} qubits ({what}, {dtype}) needs about {_fmt(need)} "
            f"but only {_fmt(avail)} is available on {torch.device(device)}; use a smaller batch "
            f"(memory grows as batch x 2**n_qubits) or fewer qubits"
        )
    return need
