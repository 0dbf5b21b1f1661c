"""Memory model and the up-front refusal of requests that cannot fit."""

from __future__ import annotations

import pytest
import torch

from qmedgen.errors import ResourceError
from qmedgen.quantum import Ansatz, estimate_bytes, expval
from qmedgen.quantum.memory import available_bytes


def test_estimate_scales_with_qubits_batch_dtype_and_backward():
    base = estimate_bytes(16, 320, torch.float32)
    assert 5 * 320 * 2**16 * 8 <= base < 5 * 320 * 2**16 * 8 + 8 * 2**20
    assert estimate_bytes(17, 320, torch.float32) > 1.9 * base
    assert estimate_bytes(16, 640, torch.float32) > 1.9 * base
    assert estimate_bytes(16, 320, torch.float64) > 1.9 * base
    assert estimate_bytes(16, 320, torch.float32, backward=False) < 0.7 * base
    assert estimate_bytes(16, 320, complex_state=False) < 0.6 * base
    # the target: 20 qubits x 320 circuits forward+backward fits in 24 GiB
    assert estimate_bytes(20, 320, torch.float32) < 16 * 2**30


def test_available_memory_is_known_on_linux_cpu():
    avail = available_bytes("cpu")
    assert avail is None or avail > 0


def test_request_that_cannot_fit_is_refused_before_allocating(monkeypatch):
    monkeypatch.setenv("QMEDGEN_MEMORY_LIMIT", "1e6")
    a = Ansatz(12, 1)
    x = torch.zeros(64, 12, requires_grad=True)
    with pytest.raises(ResourceError) as err:
        expval(a, x, torch.zeros(1, 1, 12))
    msg = str(err.value)
    assert "64 circuits of 12 qubits" in msg and "forward + backward" in msg and "available" in msg
    assert isinstance(err.value, MemoryError)


def test_small_request_runs_under_the_limit(monkeypatch):
    monkeypatch.setenv("QMEDGEN_MEMORY_LIMIT", "1e8")
    a = Ansatz(4, 1)
    assert expval(a, torch.zeros(2, 4), torch.zeros(1, 1, 4)).shape == (2, 4)


def test_chunked_cpu_requests_are_judged_by_their_chunked_footprint(monkeypatch):
    """On the CPU ``expval`` keeps one batch-sized copy (the final states) and chunk-sized work buffers, so a request
    the unchunked model would refuse runs; the same request without chunking is still refused."""
    from qmedgen.quantum import engine

    assert estimate_bytes(20, 320, torch.float32, chunk=1) < 3 * 2**30 < estimate_bytes(20, 320, torch.float32)
    assert estimate_bytes(16, 320, chunk=320) == estimate_bytes(16, 320)  # one chunk: nothing saved
    monkeypatch.setenv("QMEDGEN_MEMORY_LIMIT", "6e6")
    a = Ansatz(12, 1)
    x = torch.rand(64, 12, requires_grad=True)
    w = torch.rand(1, 1, 12)
    monkeypatch.setattr(engine, "CHUNK_BYTES", 2**16 // torch.get_num_threads())  # ~2 circuits of 12 qubits
    expval(a, x, w).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    monkeypatch.setattr(engine, "CHUNK_BYTES", 2**40)
    with pytest.raises(ResourceError):
        expval(a, x, w)
