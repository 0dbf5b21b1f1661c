"""The engine's CPU buffer pool: reuse, what it refuses to keep, its byte bound and LRU eviction."""

from __future__ import annotations

import pytest
import torch

from qmedgen.quantum import workspace

MB = 2**20


@pytest.fixture(autouse=True)
def empty_pool(monkeypatch):
    workspace.clear()
    yield
    workspace.clear()


def test_given_buffer_is_taken_again_with_any_shape_of_that_size():
    t = workspace.take((4, MB // 4), torch.float32, torch.device("cpu"))
    ptr = t.data_ptr()
    workspace.give(t)
    assert workspace.held_bytes() == 4 * MB
    u = workspace.take((2, MB // 4, 2), torch.float32, torch.device("cpu"))
    assert u.data_ptr() == ptr and u.shape == (2, MB // 4, 2)
    assert workspace.held_bytes() == 0
    v = workspace.take((4, MB // 4), torch.float32, torch.device("cpu"))  # pool empty again: a new buffer
    assert v.data_ptr() != ptr


def test_refuses_views_small_tensors_and_other_dtypes():
    big = torch.empty(2 * MB)
    workspace.give(big[: MB // 2])  # a partial view of a larger storage
    workspace.give(big[MB:])  # offset view
    workspace.give(torch.empty(1000))  # small: cheap to allocate
    workspace.give(None)
    assert workspace.held_bytes() == 0
    workspace.give(torch.empty(MB // 2, dtype=torch.float64))
    assert workspace.held_bytes() == 4 * MB
    t = workspace.take((MB // 2,), torch.float32, torch.device("cpu"))  # same bytes, other dtype: not reused
    assert workspace.held_bytes() == 4 * MB and t.dtype == torch.float32


def test_byte_bound_evicts_least_recently_used(monkeypatch):
    monkeypatch.setattr(workspace, "MAX_BYTES", 10 * MB)
    a, b = torch.empty(MB), torch.empty(MB // 2)  # 4 MiB and 2 MiB
    workspace.give(a)
    workspace.give(b)
    assert workspace.held_bytes() == 6 * MB
    workspace.give(torch.empty(5 * MB // 4))  # 5 more MiB would exceed 10: the oldest shape (a's) goes first
    assert workspace.held_bytes() == 7 * MB
    assert workspace.take((MB,), torch.float32, torch.device("cpu")).data_ptr() != a.data_ptr()
    assert workspace.take((MB // 2,), torch.float32, torch.device("cpu")).data_ptr() == b.data_ptr()
    assert workspace.held_bytes() == 5 * MB
    workspace.give(torch.empty(4 * MB))  # 16 MiB: larger than the whole bound, never kept
    assert workspace.held_bytes() == 5 * MB
