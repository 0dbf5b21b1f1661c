"""Simulated noise channels for robustness studies (a SIMULATOR feature: not a model of any particular device).

IBM device noise goes through Qiskit Aer (``qmedgen.hardware``). Here two textbook channels are simulated:

* **Depolarising**, per layer: after the encoding (when the ansatz has one) and after every layer (its rotations
  and its entangler), each qubit independently goes through rho -> (1-p) rho + p/3 (X rho X + Y rho Y + Z rho Z).
* **Readout error**: each measured bit is flipped, 0 -> 1 with probability p01 and 1 -> 0 with probability p10
  (``readout=q`` means p01 = p10 = q). For expectation values this is exactly <P>' = (p10 - p01) + (1 - p01 - p10)<P>.

Two methods, same channel:

* ``"density"``: exact density-matrix simulation (plain autograd; memory grows as 4**n, so n <= 10).
* ``"trajectories"``: Monte-Carlo over random Pauli errors on the fast state-vector engine. Each circuit is run
  ``trajectories`` times with errors drawn from ``generator`` and the expectation values are averaged, so the
  result is an unbiased estimate whose error shrinks as 1/sqrt(trajectories); its gradient is the average of exact
  per-trajectory gradients. The errors after the last layer act right before the measurement, where a depolarising
  channel scales every <P_i> by exactly (1 - 4p/3), so that location is applied exactly, not sampled.

``"auto"`` uses the density matrix up to 8 qubits and trajectories above. Readout errors alone (no depolarising)
need neither: they are applied to one noiseless state-vector run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from qmedgen.errors import ConfigError, ResourceError
from qmedgen.quantum import engine
from qmedgen.quantum.ansatz import Ansatz
from qmedgen.quantum.compiled import check_shots, compile_circuit, draw, run_exact, validate
from qmedgen.quantum.gates import ENCODING_GATES, basis_change, complex_dtype, pauli_stack, rotation
from qmedgen.quantum.memory import available_bytes

METHODS = ("auto", "density", "trajectories")
DENSITY_MAX_QUBITS = 10
AUTO_DENSITY_QUBITS = 8


@dataclass(frozen=True)
class NoiseModel:
    """Depolarising probability ``p`` per qubit and layer, and readout flip probabilities (see module docs)."""

    depolarizing: float = 0.0
    readout: float | tuple[float, float] = 0.0
    method: str = "auto"
    trajectories: int = 64

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.depolarizing) <= 1.0:
            raise ConfigError(f"NoiseModel.depolarizing must be a probability in [0, 1], got {self.depolarizing!r}")
        ro = self.readout if isinstance(self.readout, (tuple, list)) else (self.readout, self.readout)
        if len(ro) != 2 or not all(0.0 <= float(r) <= 1.0 for r in ro):
            raise ConfigError(f"NoiseModel.readout must be a probability or a (p01, p10) pair, got {self.readout!r}")
        object.__setattr__(self, "readout", (float(ro[0]), float(ro[1])))
        if self.method not in METHODS:
            raise ConfigError(f"NoiseModel.method must be one of {METHODS}, got {self.method!r}")
        if isinstance(self.trajectories, bool) or not isinstance(self.trajectories, int) or self.trajectories < 1:
            raise ConfigError(f"NoiseModel.trajectories must be a positive integer, got {self.trajectories!r}")

    def is_trivial(self) -> bool:
        return self.depolarizing == 0.0 and self.readout == (0.0, 0.0)

    def resolve_method(self, n_qubits: int) -> str:
        """"statevector" when there is no depolarising (readout errors only), else the chosen/auto method."""
        if self.depolarizing == 0.0:
            return "statevector"
        if self.method != "auto":
            return self.method
        return "density" if n_qubits <= AUTO_DENSITY_QUBITS else "trajectories"

    def apply_readout(self, e: torch.Tensor) -> torch.Tensor:
        p01, p10 = self.readout
        if p01 == 0.0 and p10 == 0.0:
            return e
        return (p10 - p01) + (1.0 - p01 - p10) * e


# ---------------------------------------------------------------------------------------------------------------
# exact density matrix


def _layer_unitary(mats: torch.Tensor) -> torch.Tensor:
    """Per-qubit ``[..., n, 2, 2]`` -> full ``[..., 2**n, 2**n]`` (small n only)."""
    return engine.kron_matrices(mats)


def _conjugate(rho: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    return u @ rho @ u.mH


def _depolarize(rho: torch.Tensor, n: int, p: float) -> torch.Tensor:
    """Single-qubit depolarising channel on every wire: rho -> (1-q) rho + q (I/2 (x) Tr_i rho), q = 4p/3."""
    if p == 0.0:
        return rho
    q = 4.0 * p / 3.0
    lead = rho.shape[:-2]
    eye = torch.eye(2, dtype=rho.dtype, device=rho.device).view(1, 1, 2, 1, 1, 2, 1)
    for i in range(n):
        a, c = 2**i, 2 ** (n - i - 1)
        v = rho.reshape(-1, a, 2, c, a, 2, c)
        tr = (v[:, :, 0, :, :, 0, :] + v[:, :, 1, :, :, 1, :]).unsqueeze(2).unsqueeze(5)
        rho = ((1 - q) * v + (q / 2) * tr * eye).reshape(*lead, 2**n, 2**n)
    return rho


def _density_probs(ansatz: Ansatz, x: torch.Tensor, w: torch.Tensor, p: float) -> torch.Tensor:
    """Outcome probabilities ``[B, 2**n]`` in the measurement basis under per-layer depolarising noise."""
    n, nn = ansatz.n_qubits, 2**ansatz.n_qubits
    cdt = complex_dtype(w.dtype)
    b = x.shape[0]
    rho = torch.zeros(b, nn, nn, dtype=cdt, device=w.device)
    rho[:, 0, 0] = 1
    enc = ENCODING_GATES[ansatz.encoding]
    if enc:
        u = None
        for name in enc:
            r = rotation(name, x).to(cdt)
            u = r if u is None else r @ u
        rho = _depolarize(_conjugate(rho, _layer_unitary(u)), n, p)
    ent = ansatz.entangler if ansatz.entangling_pairs() else "none"
    for layer in range(ansatz.depth):
        u = None
        for r, name in enumerate(ansatz.rotations):
            m = rotation(name, w[:, layer, r, :]).to(cdt)
            u = m if u is None else m @ u
        rho = _conjugate(rho, _layer_unitary(u))
        if ent == "cz-chain":
            s = engine.cz_signs(n, w.dtype, w.device)
            rho = rho * (s.unsqueeze(-1) * s.unsqueeze(-2))
        elif ent != "none":
            fwd, _ = engine.cnot_permutation(n, ent == "cnot-ring", w.device)
            rho = rho[:, fwd][:, :, fwd]
        rho = _depolarize(rho, n, p)
    v = basis_change(ansatz.observable, w.dtype, w.device)
    if v is not None:
        rho = _conjugate(rho, _layer_unitary(v.to(cdt).expand(n, 2, 2)))
    return torch.diagonal(rho, dim1=-2, dim2=-1).real


def _flat(ansatz: Ansatz, inputs: torch.Tensor, weights: torch.Tensor):
    batch, x, w = validate(ansatz, inputs, weights)
    nb = math.prod(batch)
    n = ansatz.n_qubits
    if ansatz.encoding == "none":
        x = x.new_zeros(*x.shape[:-1], n)
    x = x.expand(*batch, n).reshape(nb, n)
    w = w.expand(*batch, *ansatz.weight_shape).reshape(nb, *ansatz.weight_shape)
    return batch, x, w


def _density_check(ansatz: Ansatz, nb: int, dtype: torch.dtype, device: torch.device) -> None:
    n = ansatz.n_qubits
    if n > DENSITY_MAX_QUBITS:
        raise ConfigError(
            f"the density-matrix noise method supports at most {DENSITY_MAX_QUBITS} qubits (memory 4**n), got "
            f"{n}; use NoiseModel(method='trajectories')"
        )
    need = nb * 4**n * (16 if dtype == torch.float64 else 8) * 8
    avail = available_bytes(device)
    if avail is not None and need > avail:
        raise ResourceError(
            f"density-matrix noise simulation of {nb} circuits of {n} qubits needs about {need / 2**30:.2f} GiB, "
            f"only {avail / 2**30:.2f} GiB available; use NoiseModel(method='trajectories') or a smaller batch"
        )


# ---------------------------------------------------------------------------------------------------------------
# Monte-Carlo trajectories


def _noise_locations(ansatz: Ansatz) -> int:
    """Number of depolarising locations: after the encoding (if any) and after each layer."""
    return (ansatz.encoding != "none") + ansatz.depth


def _pauli_errors(ansatz: Ansatz, batch, p: float, t: int, dtype, device, generator):
    """Random Pauli matrices ``[..., t, n, 2, 2]`` for every location but the last, laid out as
    :func:`~qmedgen.quantum.gates.segments` expects (index 0 = after the encoding, l + 1 = after layer l)."""
    n, depth = ansatz.n_qubits, ansatz.depth
    errors: list[torch.Tensor | None] = [None] * (depth + 1)
    slots = ([0] if ansatz.encoding != "none" else []) + list(range(1, depth + 1))
    slots = slots[:-1]  # the last location acts right before the measurement: applied exactly, not sampled
    if not slots or p == 0.0 or math.prod(batch) == 0:
        return errors
    gen_device = generator.device if generator is not None else torch.device(device)
    probs = torch.tensor([1.0 - p, p / 3, p / 3, p / 3], dtype=torch.float64, device=gen_device)
    count = math.prod(batch) * t * len(slots) * n
    idx = torch.multinomial(probs, count, replacement=True, generator=generator).to(device)
    paulis = pauli_stack(dtype, device)[idx.view(*batch, t, len(slots), n)]  # [..., t, S, n, 2, 2]
    for j, slot in enumerate(slots):
        errors[slot] = paulis[..., j, :, :, :]
    return errors


def _trajectory_run(ansatz, inputs, weights, noise: NoiseModel, generator, return_probs: bool):
    p, t = float(noise.depolarizing), noise.trajectories
    if p == 0.0:  # readout errors only: one noiseless run (t = 1)
        circuit = compile_circuit(ansatz, inputs, weights, extra_batch=(1,))
        return circuit.batch_shape[:-1], run_exact(circuit, return_probs=return_probs)
    batch, _, w = validate(ansatz, inputs, weights)
    errors = _pauli_errors(ansatz, batch, p, t, w.dtype, w.device, generator)
    circuit = compile_circuit(ansatz, inputs, weights, errors=errors, extra_batch=(t,))
    return batch, run_exact(circuit, return_probs=return_probs)


def _final_depolarizing(ansatz: Ansatz, p: float) -> float:
    """Depolarising probability acting right before the measurement (0 if the circuit has no noise location)."""
    return p if _noise_locations(ansatz) else 0.0


# ---------------------------------------------------------------------------------------------------------------
# public entry points (called by qmedgen.quantum.expval / sample with noise=...)


def noisy_expval(ansatz, inputs, weights, noise: NoiseModel, shots=None, generator=None) -> torch.Tensor:
    """Expectation values under ``noise`` (exact or trajectory-averaged), optionally shot-sampled."""
    n = ansatz.n_qubits
    if shots is not None:
        check_shots(shots)
    p = float(noise.depolarizing)
    probs = None
    if noise.resolve_method(n) == "density":
        batch, x, w = _flat(ansatz, inputs, weights)
        _density_check(ansatz, x.shape[0], w.dtype, w.device)
        probs = _density_probs(ansatz, x, w, p)
        exact = probs @ engine.z_signs(n, probs.dtype, probs.device)
        final_flip = 0.0
    else:
        batch, out = _trajectory_run(ansatz, inputs, weights, noise, generator, return_probs=shots is not None)
        t = noise.trajectories if p > 0 else 1
        if shots is not None:
            e, tp = out
            probs = tp.view(-1, t, 2**n).mean(1)
        else:
            e = out
        pf = _final_depolarizing(ansatz, p)
        exact = e.view(-1, t, n).mean(1) * (1.0 - 4.0 * pf / 3.0)
        final_flip = 2.0 * pf / 3.0
    exact = noise.apply_readout(exact)
    if shots is not None:
        bits = draw(probs, shots, n, generator)
        bits = _flip(_flip(bits, (final_flip, final_flip), generator), noise.readout, generator)
        estimate = (1.0 - 2.0 * bits.to(exact.dtype)).mean(dim=-2)
        exact = exact + (estimate - exact).detach()
    return exact.reshape(*batch, n)


def noisy_sample(ansatz, inputs, weights, noise: NoiseModel, shots=1024, generator=None) -> torch.Tensor:
    """Bits ``[..., shots, n]`` under ``noise``: depolarised distribution, then readout flips."""
    n, p = ansatz.n_qubits, float(noise.depolarizing)
    with torch.no_grad():
        if noise.resolve_method(n) == "density":
            batch, x, w = _flat(ansatz, inputs, weights)
            _density_check(ansatz, x.shape[0], w.dtype, w.device)
            probs, final_flip = _density_probs(ansatz, x, w, p), 0.0
        else:
            batch, (_, tp) = _trajectory_run(ansatz, inputs, weights, noise, generator, return_probs=True)
            probs = tp.view(-1, noise.trajectories if p > 0 else 1, 2**n).mean(1)
            final_flip = 2.0 * _final_depolarizing(ansatz, p) / 3.0
        bits = draw(probs, shots, n, generator)
        bits = _flip(_flip(bits, (final_flip, final_flip), generator), noise.readout, generator)
    return bits.reshape(*batch, shots, n)


def _flip(bits: torch.Tensor, probs: tuple[float, float], generator) -> torch.Tensor:
    """Flip 0 -> 1 with probability probs[0] and 1 -> 0 with probability probs[1]."""
    p01, p10 = probs
    if p01 == 0.0 and p10 == 0.0:
        return bits
    gen_device = generator.device if generator is not None else bits.device
    u = torch.rand(bits.shape, generator=generator, device=gen_device).to(bits.device)
    flip = torch.where(bits == 0, u < p01, u < p10)
    return bits ^ flip.to(torch.uint8)
