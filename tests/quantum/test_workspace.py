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


CPU = torch.device("cpu")


def test_giving_a_buffer_twice_raises():
    t = workspace.take((MB,), torch.float32, CPU)
    workspace.give(t)
    with pytest.raises(workspace.DoubleGiveError, match="given twice"):
        workspace.give(t)
    with pytest.raises(workspace.DoubleGiveError):
        workspace.give(t.view(2, MB // 2))  # another view of the same buffer
    assert workspace.held_bytes() == 4 * MB
    u = torch.empty(MB)
    with pytest.raises(workspace.DoubleGiveError):
        workspace.give(u, u)  # twice in one call
    assert workspace.held_bytes() == 8 * MB
    workspace.take((MB,), torch.float32, CPU)
    workspace.take((MB,), torch.float32, CPU)
    workspace.give(t)  # taken again, so it may come back
    assert workspace.held_bytes() == 4 * MB


def test_evicted_and_cleared_buffers_may_be_given_again(monkeypatch):
    monkeypatch.setattr(workspace, "MAX_BYTES", 6 * MB)
    a, b = torch.empty(MB), torch.empty(MB)
    workspace.give(a)
    workspace.give(b)  # evicts a
    workspace.give(a)  # evicts b: no error, a is no longer held
    workspace.clear()
    workspace.give(b)
    assert workspace.held_bytes() == 4 * MB


def test_borrow_gives_the_buffer_back_on_exit_and_on_error():
    with workspace.borrow((MB,), torch.float32, CPU) as buf:
        assert buf.shape == (MB,) and workspace.held_bytes() == 0
    assert workspace.held_bytes() == 4 * MB
    with pytest.raises(KeyError), workspace.borrow((2, MB // 2), torch.float32, CPU) as again:
        assert again.data_ptr() == buf.data_ptr() and workspace.held_bytes() == 0
        raise KeyError("boom")
    assert workspace.held_bytes() == 4 * MB


def test_lease_owns_buffers_by_object_through_swaps_and_hands_out_kept_ones():
    with workspace.Lease() as lease:
        x, spare = lease.take((MB,), torch.float32, CPU), lease.take((MB,), torch.float32, CPU)
        handed_in = torch.empty(MB)
        lease.adopt(handed_in, None)
        x, spare = spare, x  # ping-pong: ownership follows the tensors, not the names
        result = lease.keep(x)
        assert len(lease) == 2 and spare in lease and result not in lease
        lease.release(handed_in)
        assert workspace.held_bytes() == 4 * MB
        with pytest.raises(workspace.DoubleGiveError, match="not owned"):
            lease.release(handed_in)
        with pytest.raises(workspace.DoubleGiveError, match="already owned"):
            lease.adopt(spare)
    assert workspace.held_bytes() == 8 * MB  # the spare went back; the kept result did not
    ptrs = {workspace.take((MB,), torch.float32, CPU).data_ptr() for _ in range(2)}
    assert result.data_ptr() not in ptrs


def test_lease_gives_everything_back_on_error():
    with pytest.raises(RuntimeError, match="boom"), workspace.Lease() as lease:
        lease.take((MB,), torch.float32, CPU)
        lease.take((MB // 2,), torch.float64, CPU)
        raise RuntimeError("boom")
    assert workspace.held_bytes() == 8 * MB
