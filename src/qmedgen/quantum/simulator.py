"""Public simulator API: :func:`expval`, :func:`sample`, :func:`probabilities`, :func:`simulate`.

All functions broadcast leading dimensions like torch: ``inputs [..., n]`` and ``weights [..., depth, R, n]``
describe ``prod(broadcast(...))`` independent circuits (e.g. inputs ``[B, K, n]`` with weights ``[K, depth, R, n]``
runs K sub-generators with their own weights on B samples). They follow the inputs' device, and compute in float64
when either argument is float64, else float32. The heavy lifting is in :mod:`qmedgen.quantum.engine`; noise
channels are in :mod:`qmedgen.quantum.noise`.
"""

from __future__ import annotations

import functools
import math

import torch

from qmedgen.quantum import engine
from qmedgen.quantum.ansatz import Ansatz
from qmedgen.quantum.compiled import Mode, check_shots, compile_circuit, draw, final_state, run_exact
from qmedgen.quantum.gates import complex_dtype
from qmedgen.quantum.noise import NoiseModel, noisy_expval, noisy_sample


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
        return noisy_expval(ansatz, inputs, weights, noise, shots=shots, generator=generator)
    circuit = compile_circuit(ansatz, inputs, weights)
    if shots is None:
        return run_exact(circuit).reshape(*circuit.batch_shape, ansatz.n_qubits)
    check_shots(shots)
    exact, probs = run_exact(circuit, return_probs=True)
    bits = draw(probs, shots, ansatz.n_qubits, generator)
    estimate = (1.0 - 2.0 * bits.to(exact.dtype)).mean(dim=-2)
    out = exact + (estimate - exact).detach()
    return out.reshape(*circuit.batch_shape, ansatz.n_qubits)


@full_precision
def probabilities(ansatz: Ansatz, inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Outcome probabilities ``[..., 2**n]`` in the observable's eigenbasis (bit 0 = eigenvalue +1; not
    differentiable: use :func:`expval` for gradients)."""
    with torch.no_grad():
        circuit = compile_circuit(ansatz, inputs, weights)
        circuit.check_memory(backward=False)
        p = engine.probabilities_from_state(final_state(circuit), circuit.plan)
    return p.reshape(*circuit.batch_shape, 2**ansatz.n_qubits)


@full_precision
def simulate(ansatz: Ansatz, inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Final states ``[..., 2**n]`` (complex, before any measurement-basis change).

    Differentiable through plain autograd (memory grows with depth; use :func:`expval` to train).
    """
    circuit = compile_circuit(ansatz, inputs, weights, basis=False)
    grad = circuit.requires_grad()
    circuit.check_memory(backward=grad)
    x = final_state(circuit, buffered=not grad)
    if circuit.mode is Mode.STACKED:
        b = circuit.plan.batch
        x = torch.complex(x[:b], x[b:])
    elif circuit.mode is Mode.REAL:
        x = x.to(complex_dtype(x.dtype))
    return x.reshape(*circuit.batch_shape, 2**ansatz.n_qubits)


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
    check_shots(shots)
    if noise is not None and not noise.is_trivial():
        return noisy_sample(ansatz, inputs, weights, noise, shots=shots, generator=generator)
    probs = probabilities(ansatz, inputs, weights)
    batch = probs.shape[:-1]
    bits = draw(probs.reshape(math.prod(batch), probs.shape[-1]), shots, ansatz.n_qubits, generator)
    return bits.reshape(*batch, shots, ansatz.n_qubits)
