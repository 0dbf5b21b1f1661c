"""Noise sources for the forward process and the samplers: ``gaussian``, ``quantum`` and ``hybrid``.

``quantum`` draws its randomness from measurement outcomes of a circuit, :func:`qmedgen.quantum.sample` with shots
(on hardware, or through an executor swapped in by :mod:`qmedgen.hardware`, these are physical measurements; on the
simulator they are Born-rule samples of the simulated state). The circuit is RY(pi/2) on each of ``n_qubits``
wires followed by a CNOT chain: in exact simulation every one of the 2^n outcomes has probability 2^-n, so each
measured bit is a fair coin, independent of all others. The bits are turned into standard-normal noise by

* ``box-muller`` (default): consecutive groups of ``bits_per_uniform`` bits (default 32) are read as integers
  k in [0, 2^b) and mapped to uniforms u = (k + 1/2) / 2^b in (0, 1); pairs (u1, u2) give
  z1 = sqrt(-2 ln u1) cos(2 pi u2), z2 = sqrt(-2 ln u1) sin(2 pi u2) (Box & Muller 1958). With fair bits z is N(0, 1)
  up to the 2^-32 quantisation of u (|z| <= 6.7); it assumes unbiased bits.
* ``clt``: z = (sum of m bits - m p) / sqrt(m p (1 - p)) with m = ``clt_terms`` (default 64) and p the fraction of
  ones in the current pool (so biased hardware bits still give mean 0, variance 1). z is a standardised
  Binomial(m, p): skewness (1 - 2p) / sqrt(m p (1-p)) (0 for fair bits), excess kurtosis
  (1 - 6 p (1-p)) / (m p (1-p)) (-2/m = -0.03 for fair bits), on a lattice of spacing 2 / sqrt(m).

Efficiency: bits are drawn in one batched ``sample`` call per refill of a pool of at least ``pool_size`` normal
values (default 2^18, five 64 x 1 x 28 x 28 batches), converted once, and handed out in order. Refill ``k`` is seeded
from ``(seed, k)``, so the state to resume exactly is three integers (:meth:`QuantumNoise.state_dict`). Measured
cost: 0.8 s per refill of 2^18 values (16 qubits, 524,288 shots), about 0.15 s per 64 x 1 x 28 x 28 batch on one
contended CPU thread.

``hybrid`` mixes the two: z = sqrt(a) g + sqrt(1 - a) q with g Gaussian and q quantum (a = ``hybrid_weight``),
which is N(0, 1) again because g and q are independent with unit variance.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from qmedgen.errors import ConfigError
from qmedgen.quantum import Ansatz

SOURCES = ("gaussian", "quantum", "hybrid")
TRANSFORMS = ("box-muller", "clt")

Device = torch.device | str | None
Rng = torch.Generator | None


class _Source:
    """The interface of every noise source: ``source(shape, device, dtype, generator)`` -> a standard-normal tensor
    of ``shape``; a subclass implements :meth:`draw`."""

    name: str

    def __call__(
        self,
        shape: Sequence[int],
        device: Device = None,
        dtype: torch.dtype = torch.float32,
        generator: Rng = None,
    ) -> torch.Tensor:
        return self.draw(tuple(shape), device, dtype, generator)

    def draw(self, shape: tuple[int, ...], device: Device, dtype: torch.dtype, generator: Rng) -> torch.Tensor:
        raise NotImplementedError


class GaussianNoise(_Source):
    """torch.randn: the global RNG, or ``generator`` when given."""

    name = "gaussian"

    def draw(self, shape: tuple[int, ...], device: Device, dtype: torch.dtype, generator: Rng) -> torch.Tensor:
        gen_device = generator.device if generator is not None else device
        return torch.randn(shape, generator=generator, device=gen_device, dtype=dtype).to(device)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        del state


def noise_ansatz(n_qubits: int) -> tuple[Ansatz, torch.Tensor, torch.Tensor]:
    """The noise circuit (RY(pi/2) per wire, one CNOT chain) with its fixed inputs and weights."""
    ansatz = Ansatz(n_qubits=n_qubits, depth=1, encoding="ry", rotations=("ry",), entangler="cnot-chain")
    inputs = torch.full((n_qubits,), math.pi / 2, dtype=torch.float64)
    weights = torch.zeros(ansatz.weight_shape, dtype=torch.float64)
    return ansatz, inputs, weights


class QuantumNoise(_Source):
    """Standard-normal noise made from measured bitstrings (see the module docstring)."""

    name = "quantum"

    def __init__(
        self,
        n_qubits: int = 16,
        transform: str = "box-muller",
        bits_per_uniform: int = 32,
        clt_terms: int = 64,
        pool_size: int = 2**18,
        seed: int | None = None,
        sample_fn: Callable[..., torch.Tensor] | None = None,
    ) -> None:
        if transform not in TRANSFORMS:
            raise ConfigError(f"diffusion.quantum_transform must be one of {TRANSFORMS}, got {transform!r}")
        if not 1 <= n_qubits <= 20:
            raise ConfigError(f"diffusion.noise_qubits must be in 1..20, got {n_qubits}")
        if not 8 <= bits_per_uniform <= 52:
            raise ConfigError(f"diffusion.bits_per_uniform must be in 8..52 (float64 mantissa), got {bits_per_uniform}")
        if clt_terms < 2:
            raise ConfigError(f"diffusion.clt_terms must be >= 2, got {clt_terms}")
        if pool_size < 2:
            raise ConfigError(f"diffusion.noise_pool must be >= 2, got {pool_size}")
        self.n_qubits, self.transform = n_qubits, transform
        self.bits_per_uniform, self.clt_terms, self.pool_size = bits_per_uniform, clt_terms, pool_size
        self.seed = int(torch.randint(2**62, (1,)).item()) if seed is None else int(seed)
        self.ansatz, self._inputs, self._weights = noise_ansatz(n_qubits)
        self.sample_fn = sample_fn
        self.refills, self.position = 0, 0
        self._pool = torch.empty(0)

    @property
    def bits_per_value(self) -> int:
        return self.bits_per_uniform if self.transform == "box-muller" else self.clt_terms

    def _measure(self, n_bits: int, refill: int) -> torch.Tensor:
        """At least ``n_bits`` measured bits (uint8, flat) from one batched ``sample`` call."""
        from qmedgen.quantum import sample

        fn = self.sample_fn or sample
        shots = -(-n_bits // self.n_qubits)
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + refill) % 2**63)
        bits = fn(self.ansatz, self._inputs, self._weights, shots=shots, generator=g)
        return bits.reshape(-1)[:n_bits]

    def bits_to_normal(self, bits: torch.Tensor) -> torch.Tensor:
        """Flat bits (0/1) -> float64 standard-normal values (``len(bits) // bits_per_value`` of them)."""
        b = self.bits_per_value
        n = len(bits) // b
        if self.transform == "box-muller":
            n -= n % 2
            groups = bits[: n * b].reshape(n, b).double()
            powers = 2.0 ** torch.arange(b - 1, -1, -1, dtype=torch.float64)
            u = (groups @ powers + 0.5) / 2.0**b
            u1, u2 = u[0::2], u[1::2]
            r = torch.sqrt(-2.0 * torch.log(u1))
            return torch.stack([r * torch.cos(2 * math.pi * u2), r * torch.sin(2 * math.pi * u2)], dim=1).reshape(-1)
        groups = bits[: n * b].reshape(n, b)
        p = float(bits[: n * b].double().mean())
        p = min(max(p, 1e-6), 1 - 1e-6)
        counts = groups.sum(dim=1, dtype=torch.int64).double()
        return (counts - b * p) / math.sqrt(b * p * (1 - p))

    def _pool_values(self, count: int, refill: int) -> torch.Tensor:
        """The ``count`` float32 normal values of refill number ``refill`` (fixed by the seed and ``refill``)."""
        return self.bits_to_normal(self._measure(count * self.bits_per_value, refill)).float()

    def _refill(self, need: int) -> None:
        count = max(need, self.pool_size)
        count += count % 2
        self._pool = self._pool_values(count, self.refills)
        self.refills += 1
        self.position = 0

    def draw(self, shape: tuple[int, ...], device: Device, dtype: torch.dtype, generator: Rng) -> torch.Tensor:
        del generator  # the source has its own seeded stream (see reseed)
        total = math.prod(shape)
        parts, left = [], total
        while left > 0:
            if self.position >= len(self._pool):
                self._refill(left)
            take = min(left, len(self._pool) - self.position)
            parts.append(self._pool[self.position : self.position + take])
            self.position += take
            left -= take
        flat = torch.cat(parts) if parts else torch.empty(0)
        return flat.reshape(shape).to(device=device, dtype=dtype)

    def reseed(self, seed: int) -> None:
        self.seed, self.refills, self.position, self._pool = int(seed), 0, 0, torch.empty(0)

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "refills": self.refills, "position": self.position, "pool": len(self._pool)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.seed, refills = int(state["seed"]), int(state["refills"])
        self.refills, self.position, self._pool = 0, 0, torch.empty(0)
        if refills > 0:  # rebuild the current pool exactly: same seed, same refill index, same size
            self._pool = self._pool_values(int(state["pool"]), refills - 1)
            self.refills = refills
            self.position = int(state["position"])


class HybridNoise(_Source):
    """sqrt(a) * Gaussian + sqrt(1 - a) * quantum, a = ``weight`` in [0, 1]."""

    name = "hybrid"

    def __init__(self, quantum: QuantumNoise, weight: float = 0.5) -> None:
        if not 0.0 <= weight <= 1.0:
            raise ConfigError(f"diffusion.hybrid_weight must be in [0, 1], got {weight}")
        self.quantum, self.weight, self.gaussian = quantum, weight, GaussianNoise()

    def draw(self, shape: tuple[int, ...], device: Device, dtype: torch.dtype, generator: Rng) -> torch.Tensor:
        g = self.gaussian(shape, device, dtype, generator)
        q = self.quantum(shape, device, dtype)
        return math.sqrt(self.weight) * g + math.sqrt(1.0 - self.weight) * q

    def reseed(self, seed: int) -> None:
        self.quantum.reseed(seed)

    def state_dict(self) -> dict[str, Any]:
        return self.quantum.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.quantum.load_state_dict(state)


NoiseSource = GaussianNoise | QuantumNoise | HybridNoise


def make_noise(
    name: str,
    n_qubits: int = 16,
    transform: str = "box-muller",
    hybrid_weight: float = 0.5,
    seed: int | None = None,
    pool_size: int = 2**18,
) -> NoiseSource:
    """``"gaussian"``, ``"quantum"`` or ``"hybrid"``."""
    if name not in SOURCES:
        raise ConfigError(f"noise source must be one of {SOURCES}, got {name!r}")
    if name == "gaussian":
        return GaussianNoise()
    quantum = QuantumNoise(n_qubits=n_qubits, transform=transform, seed=seed, pool_size=pool_size)
    return quantum if name == "quantum" else HybridNoise(quantum, hybrid_weight)
