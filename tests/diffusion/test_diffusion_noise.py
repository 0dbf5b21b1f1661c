"""Noise sources: the quantum source's distribution (moments, normality), determinism, batching and resume."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from qmedgen.diffusion.noise import HybridNoise, QuantumNoise, make_noise
from qmedgen.errors import ConfigError
from qmedgen.quantum import sample as engine_sample


@pytest.fixture(scope="module")
def box_muller_sample() -> np.ndarray:
    return QuantumNoise(n_qubits=16, seed=0, pool_size=2**17)((100_000,)).double().numpy()


def test_quantum_box_muller_noise_is_standard_normal(box_muller_sample):
    z = box_muller_sample
    se = 1 / math.sqrt(len(z))
    assert abs(z.mean()) < 5 * se
    assert abs(z.var() - 1) < 5 * math.sqrt(2) * se
    assert abs(stats.skew(z)) < 5 * math.sqrt(6) * se
    assert abs(stats.kurtosis(z)) < 5 * math.sqrt(24) * se
    assert stats.normaltest(z).pvalue > 1e-3
    assert stats.kstest(z, "norm").pvalue > 1e-3


def test_quantum_clt_noise_moments():
    z = QuantumNoise(n_qubits=8, transform="clt", clt_terms=64, seed=1, pool_size=50_000)((50_000,)).double().numpy()
    se = 1 / math.sqrt(len(z))
    assert abs(z.mean()) < 5 * se and abs(z.var() - 1) < 5 * math.sqrt(2) * se
    assert abs(stats.skew(z)) < 5 * math.sqrt(6) * se
    assert abs(stats.kurtosis(z) - (-2 / 64)) < 5 * math.sqrt(24) * se  # standardised binomial


def test_clt_standardises_biased_bits():
    q = QuantumNoise(n_qubits=4, transform="clt", clt_terms=32, seed=0)
    bits = (torch.rand(32 * 20_000, generator=torch.Generator().manual_seed(0)) < 0.3).to(torch.uint8)
    z = q.bits_to_normal(bits)
    assert abs(float(z.mean())) < 0.03 and abs(float(z.var()) - 1) < 0.05


def test_hybrid_noise_has_unit_variance():
    torch.manual_seed(0)
    h = make_noise("hybrid", n_qubits=8, hybrid_weight=0.3, seed=2, pool_size=20_000)
    assert isinstance(h, HybridNoise)
    z = h((40_000,)).double()
    assert abs(float(z.mean())) < 0.03 and abs(float(z.var()) - 1) < 0.04


def test_seed_determinism_and_shapes():
    a = QuantumNoise(n_qubits=6, seed=7, pool_size=1000)((3, 1, 5, 5))
    b = QuantumNoise(n_qubits=6, seed=7, pool_size=1000)((3, 1, 5, 5))
    c = QuantumNoise(n_qubits=6, seed=8, pool_size=1000)((3, 1, 5, 5))
    assert a.shape == (3, 1, 5, 5) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    # the stream does not repeat across calls
    q = QuantumNoise(n_qubits=6, seed=7, pool_size=100)
    assert not torch.equal(q((64,)), q((64,)))


def test_one_batched_sample_call_per_refill():
    calls = []

    def counting(*args, **kwargs):
        calls.append(kwargs["shots"])
        return engine_sample(*args, **kwargs)

    q = QuantumNoise(n_qubits=16, seed=0, pool_size=10_000, sample_fn=counting)
    q((8, 1, 28, 28))  # 6,272 values: one call fills the pool of 10,000
    q((4, 1, 28, 28))  # 3,136 more: served from the pool (10,000 - 6,272 = 3,728 left)
    assert len(calls) == 1 and calls[0] == 10_000 * 32 // 16
    q((64, 1, 28, 28))  # larger than the rest of the pool: one more call sized for the request
    assert len(calls) == 2


def test_state_dict_resumes_the_exact_stream():
    q = QuantumNoise(n_qubits=5, seed=3, pool_size=300)
    q((250,))
    state = q.state_dict()
    expected = q((500,))
    fresh = QuantumNoise(n_qubits=5, seed=99, pool_size=300)
    fresh.load_state_dict(state)
    assert torch.equal(fresh((500,)), expected)


def test_bad_noise_config():
    with pytest.raises(ConfigError, match="noise source"):
        make_noise("qrng")
    with pytest.raises(ConfigError, match="transform"):
        QuantumNoise(transform="ziggurat")
