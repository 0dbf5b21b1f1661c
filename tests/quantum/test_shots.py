"""Shot-based estimates (straight-through gradient) and measurement samples."""

from __future__ import annotations

import math

import pytest
import torch

from qmedgen.errors import ConfigError
from qmedgen.quantum import Ansatz, expval, probabilities, sample

from ._circuits import grads, random_params

A = Ansatz(4, 2, encoding="ry-rx", rotations=("ry",), entangler="cz-chain", observable="x")


def test_shot_estimates_are_unbiased_within_standard_errors():
    x, w = random_params(A, batch=(3,), requires_grad=False)
    exact = expval(A, x, w)
    shots, reps = 256, 200
    g = torch.Generator().manual_seed(0)
    est = torch.stack([expval(A, x, w, shots=shots, generator=g) for _ in range(reps)])
    mean = est.mean(0)
    # standard error of the mean of reps estimates, each with variance (1 - <P>^2) / shots
    se = torch.sqrt((1 - exact**2).clamp_min(1e-3) / shots / reps)
    assert ((mean - exact).abs() < 5 * se).all()
    # and the spread of single estimates matches the binomial variance
    var = est.var(0)
    assert torch.allclose(var, (1 - exact**2) / shots, rtol=0.5, atol=2e-4)
    # values are multiples of 2/shots
    k = (est[0] + 1) * shots / 2
    assert torch.allclose(k, k.round(), atol=1e-9)


def test_shot_gradient_is_the_exact_gradient():
    x, w = random_params(A, batch=(2,))
    cot = torch.randn(2, 4, dtype=torch.float64)
    noisy = expval(A, x, w, shots=100, generator=torch.Generator().manual_seed(3))
    exact = expval(A, x, w)
    assert not torch.allclose(noisy, exact)
    for g, r in zip(grads(noisy, (x, w), cot), grads(exact, (x, w), cot)):
        assert torch.allclose(g, r, atol=1e-12)


def test_generator_makes_shots_reproducible():
    x, w = random_params(A, requires_grad=False)
    a = expval(A, x, w, shots=50, generator=torch.Generator().manual_seed(9))
    b = expval(A, x, w, shots=50, generator=torch.Generator().manual_seed(9))
    assert torch.equal(a, b)


def test_sample_shape_dtype_and_bit_order():
    a = Ansatz(3, 1, encoding="rx", rotations=("ry",), entangler="none", observable="z")
    x = torch.tensor([math.pi, 0.0, 0.0])
    w = torch.zeros(1, 1, 3)
    bits = sample(a, x, w, shots=16)
    assert bits.shape == (16, 3) and bits.dtype == torch.uint8
    assert (bits[:, 0] == 1).all() and (bits[:, 1:] == 0).all()  # wire 0 flipped -> column 0 is 1 (eigenvalue -1)
    batched = sample(a, x.expand(5, 2, 3), w, shots=7)
    assert batched.shape == (5, 2, 7, 3)


def test_sample_frequencies_match_probabilities():
    x, w = random_params(A, requires_grad=False)
    shots = 40000
    bits = sample(A, x, w, shots=shots, generator=torch.Generator().manual_seed(1))
    index = (bits.long() * (2 ** torch.arange(3, -1, -1))).sum(-1)
    freq = torch.bincount(index, minlength=16).double() / shots
    p = probabilities(A, x, w)
    se = torch.sqrt(p * (1 - p) / shots) + 1e-4
    assert ((freq - p).abs() < 5 * se).all()
    # per-wire means give <X_i>
    assert torch.allclose((1 - 2 * bits.double()).mean(0), expval(A, x, w), atol=0.03)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_shot_counts_are_rejected(bad):
    x, w = random_params(A, requires_grad=False)
    with pytest.raises(ConfigError, match="shots"):
        expval(A, x, w, shots=bad)
    with pytest.raises(ConfigError, match="shots"):
        sample(A, x, w, shots=bad)
