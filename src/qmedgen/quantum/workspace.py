"""Reusable state-sized CPU buffers for the engine.

Why: a fresh 100 MB tensor on the CPU is a fresh ``mmap``; its first write page-faults every 4 KiB page, which on
the project's VM costs ~6x the batched matmul that fills it (95 ms vs 15 ms for a 640 x 2**16 float32 state).
A training loop simulates the same shapes every step, so the engine hands its internal state buffers back here
and takes them again on the next call, like the CUDA caching allocator does on GPUs (CUDA tensors bypass this
module). The pool holds at most :data:`MAX_BYTES` (least recently used shapes are dropped first); it only ever
holds buffers that the engine itself allocated and no longer references. :func:`clear` returns the memory.

Ownership: code that takes several buffers, swaps them (ping-pong) and hands some on holds them in a
:class:`Lease` (``with workspace.Lease() as lease:``), which gives back every buffer it still owns when the block
ends, on an exception too; :func:`borrow` is the one-buffer form. Giving a buffer that the pool already holds
raises :class:`DoubleGiveError`: two later :func:`take` calls would otherwise share it and overwrite each other.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Iterator

import torch

MAX_BYTES = 2 * 2**30  # bytes the pool may keep between calls (set to 0 to disable pooling)

_lock = threading.Lock()
_free: OrderedDict[tuple, list[torch.Tensor]] = OrderedDict()  # (numel, dtype) -> flat buffers, LRU order
_pooled: set[int] = set()  # data pointers of the buffers in _free (the double-give guard)
_held = 0


class DoubleGiveError(RuntimeError):
    """A buffer was handed back while the pool already holds it (a bug in the caller's ownership)."""


def take(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An uninitialised tensor of ``shape``: a pooled buffer when one fits, else a new one."""
    numel = 1
    for s in shape:
        numel *= s
    if device.type == "cpu":
        global _held
        key = (numel, dtype)
        with _lock:
            bufs = _free.get(key)
            if bufs:
                _free.move_to_end(key)
                t = bufs.pop()
                _pooled.discard(t.data_ptr())
                _held -= t.numel() * t.element_size()
                return t.view(shape)
    return torch.empty(shape, dtype=dtype, device=device)


def give(*tensors: torch.Tensor | None) -> None:
    """Hand buffers back for reuse. Only for tensors the caller allocated with :func:`take` (or owns entirely)
    and will not touch again, nor let anyone else touch; partial views and CUDA tensors are ignored.

    Raises :class:`DoubleGiveError` for a buffer the pool already holds (given twice, also within one call)."""
    global _held
    for t in tensors:
        if t is None or t.device.type != "cpu" or not t.is_contiguous() or t.storage_offset():
            continue
        nbytes = t.numel() * t.element_size()
        if t.untyped_storage().nbytes() != nbytes:  # a view into something larger: not ours to keep
            continue
        if nbytes < (1 << 20) or nbytes > MAX_BYTES:  # small ones are cheap to allocate; huge ones not kept
            continue
        key, ptr = (t.numel(), t.dtype), t.data_ptr()
        with _lock:
            if ptr in _pooled:
                raise DoubleGiveError(
                    f"workspace.give: this {tuple(t.shape)} {t.dtype} buffer is already in the pool (given twice)"
                )
            while _free and _held + nbytes > MAX_BYTES:  # evict least recently used shapes
                old_key, bufs = next(iter(_free.items()))
                while bufs and _held + nbytes > MAX_BYTES:
                    old = bufs.pop(0)
                    _pooled.discard(old.data_ptr())
                    _held -= old.numel() * old.element_size()
                if not bufs:
                    del _free[old_key]
            if _held + nbytes > MAX_BYTES:
                continue
            _free.setdefault(key, []).append(t.view(-1))
            _free.move_to_end(key)
            _pooled.add(ptr)
            _held += nbytes


@contextlib.contextmanager
def borrow(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Iterator[torch.Tensor]:
    """``with borrow(shape, dtype, device) as buf:`` a :func:`take` buffer, given back when the block ends."""
    with Lease() as lease:
        yield lease.take(shape, dtype, device)


class Lease:
    """The buffers one computation owns; on leaving ``with Lease() as lease:`` (normally or by an exception) every
    buffer it still owns goes back to the pool.

    Ownership is by tensor object, not by variable: ping-pong swaps (``x, buf = buf, x``) need no bookkeeping.
    :meth:`take` and :meth:`adopt` (a buffer handed in by the caller) add to it; :meth:`release` gives one back
    early (e.g. a stored state as soon as it is read, so that on a GPU its memory is free for what follows);
    :meth:`keep` hands one out (a result the caller now owns), so the lease forgets it without giving it.
    """

    __slots__ = ("_owned",)

    def __init__(self) -> None:
        self._owned: dict[int, torch.Tensor] = {}  # id(tensor) -> tensor, in the order they were added

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        owned, self._owned = self._owned, {}
        give(*owned.values())

    def __contains__(self, t: object) -> bool:
        return id(t) in self._owned

    def __len__(self) -> int:
        return len(self._owned)

    def take(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """A :func:`take` buffer owned by this lease."""
        t = take(shape, dtype, device)
        self._owned[id(t)] = t
        return t

    def adopt(self, *tensors: torch.Tensor | None) -> None:
        """Own buffers handed in by the caller (``None`` is skipped); each may be adopted once."""
        for t in tensors:
            if t is None:
                continue
            if id(t) in self._owned:
                raise DoubleGiveError(f"Lease.adopt: this {tuple(t.shape)} buffer is already owned by the lease")
            self._owned[id(t)] = t

    def release(self, *tensors: torch.Tensor | None) -> None:
        """Give owned buffers back now (``None`` is skipped); a buffer the lease does not own is an error."""
        for t in tensors:
            if t is not None:
                give(self._pop(t, "release"))

    def keep(self, t: torch.Tensor) -> torch.Tensor:
        """Hand an owned buffer out to the caller: the lease forgets it (no give). Returns ``t``."""
        return self._pop(t, "keep")

    def _pop(self, t: torch.Tensor, what: str) -> torch.Tensor:
        try:
            return self._owned.pop(id(t))
        except KeyError:
            raise DoubleGiveError(
                f"Lease.{what}: this {tuple(t.shape)} buffer is not owned by the lease (released or kept already?)"
            ) from None


def held_bytes() -> int:
    """Bytes currently kept by the pool."""
    return _held


def clear() -> None:
    """Release every pooled buffer (e.g. before a large simulation of another shape)."""
    global _held
    with _lock:
        _free.clear()
        _pooled.clear()
        _held = 0
