"""``QuantumLayer``: an ``nn.Module`` holding the trainable weights of one or many circuits of an ansatz."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from qmedgen.errors import ConfigError
from qmedgen.quantum.ansatz import Ansatz
from qmedgen.quantum.simulator import expval

INITS = ("uniform", "uniform-2pi", "normal", "small")


class QuantumLayer(nn.Module):
    """``forward(inputs [..., n]) -> <P_i> [..., n]`` with weights ``[*batch_shape, depth, R, n]``.

    ``batch_shape=(K,)`` holds K independent circuits (MediQ-GAN's sub-generators): inputs ``[B, K, n]`` broadcast
    against them. Initialisation (why several: trainability depends on it, see the barren-plateau literature):

    * ``"uniform"``: U[0, 1), as in the public MediQ-GAN code;
    * ``"uniform-2pi"``: U[0, 2 pi), the "random circuit" initialisation (expressive, prone to barren plateaus);
    * ``"normal"``: N(0, ``std``^2) (``std`` default 0.1);
    * ``"small"``: N(0, ``std``^2) with ``std`` default 0.01: near the identity, so the circuit starts as its
      encoding plus entanglers (small-angle initialisation against barren plateaus).

    ``shots`` (None = exact) and ``noise`` (a :class:`~qmedgen.quantum.noise.NoiseModel`) are plain attributes that
    can be changed at any time; ``generator`` seeds shot sampling and noise trajectories. ``executor``, when not
    None, replaces :func:`~qmedgen.quantum.expval` (same signature), e.g. to run the circuits on Qiskit Aer.
    """

    def __init__(
        self,
        ansatz: Ansatz,
        batch_shape: tuple[int, ...] = (),
        init: str = "uniform",
        std: float | None = None,
        shots: int | None = None,
        noise=None,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(ansatz, Ansatz):
            raise ConfigError(f"QuantumLayer needs an Ansatz, got {type(ansatz).__name__}")
        if init not in INITS:
            raise ConfigError(f"QuantumLayer init must be one of {INITS}, got {init!r}")
        if isinstance(batch_shape, int):
            batch_shape = (batch_shape,)
        self.ansatz = ansatz
        self.batch_shape = tuple(int(b) for b in batch_shape)
        self.init = init
        self.std = std
        self.shots = shots
        self.noise = noise
        self.generator = generator
        self.executor: Callable[..., torch.Tensor] | None = None
        self.weight = nn.Parameter(torch.empty(*self.batch_shape, *ansatz.weight_shape, dtype=dtype, device=device))
        self.reset_parameters()

    @property
    def weights(self) -> nn.Parameter:
        """Alias of :attr:`weight` (the name used by the expval signature)."""
        return self.weight

    def reset_parameters(self) -> None:
        with torch.no_grad():
            if self.init == "uniform":
                self.weight.uniform_(0.0, 1.0)
            elif self.init == "uniform-2pi":
                self.weight.uniform_(0.0, 2 * math.pi)
            elif self.init == "normal":
                self.weight.normal_(0.0, 0.1 if self.std is None else self.std)
            else:
                self.weight.normal_(0.0, 0.01 if self.std is None else self.std)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.executor is not None:
            return self.executor(self.ansatz, inputs, self.weight, shots=self.shots, generator=self.generator)
        return expval(self.ansatz, inputs, self.weight, shots=self.shots, generator=self.generator, noise=self.noise)

    def extra_repr(self) -> str:
        a = self.ansatz
        parts = [
            f"n_qubits={a.n_qubits}, depth={a.depth}, encoding={a.encoding!r}, rotations={a.rotations!r}, "
            f"entangler={a.entangler!r}, observable={a.observable!r}",
            f"batch_shape={self.batch_shape}",
            f"init={self.init!r}",
        ]
        if self.shots is not None:
            parts.append(f"shots={self.shots}")
        if self.noise is not None:
            parts.append(f"noise={self.noise!r}")
        return ", ".join(parts)
