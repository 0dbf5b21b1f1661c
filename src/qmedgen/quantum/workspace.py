"""Reusable state-sized CPU buffers for the engine.

Why: a fresh 100 MB tensor on the CPU is a fresh ``mmap``; its first write page-faults every 4 KiB page, which on
the project's VM costs ~6x the batched matmul that fills it (95 ms vs 15 ms for a 640 x 2**16 float32 state).
A training loop simulates the same shapes every step, so the engine hands its internal state buffers back here
and takes them again on the next call, like the CUDA caching allocator does on GPUs (CUDA tensors bypass this
module). The pool holds at most :data:`MAX_BYTES` (least recently used shapes are dropped first); it only ever
holds buffers that the engine itself allocated and no longer references. :func:`clear` returns the memory.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import torch

MAX_BYTES = 2 * 2**30  # bytes the pool may keep between calls (set to 0 to disable pooling)

_lock = threading.Lock()
_free: OrderedDict[tuple, list[torch.Tensor]] = OrderedDict()  # (numel, dtype) -> flat buffers, LRU order
_held = 0


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
                _held -= t.numel() * t.element_size()
                return t.view(shape)
    return torch.empty(shape, dtype=dtype, device=device)


def give(*tensors: torch.Tensor | None) -> None:
    """Hand buffers back for reuse. Only for tensors the caller allocated with :func:`take` (or owns entirely)
    and will not touch again, nor let anyone else touch; partial views and CUDA tensors are ignored."""
    global _held
    for t in tensors:
        if t is None or t.device.type != "cpu" or not t.is_contiguous() or t.storage_offset():
            continue
        nbytes = t.numel() * t.element_size()
        if t.untyped_storage().nbytes() != nbytes:  # a view into something larger: not ours to keep
            continue
        if nbytes < (1 << 20) or nbytes > MAX_BYTES:  # small ones are cheap to allocate; huge ones not kept
            continue
        key = (t.numel(), t.dtype)
        with _lock:
            while _free and _held + nbytes > MAX_BYTES:  # evict least recently used shapes
                old_key, bufs = next(iter(_free.items()))
                while bufs and _held + nbytes > MAX_BYTES:
                    old = bufs.pop(0)
                    _held -= old.numel() * old.element_size()
                if not bufs:
                    del _free[old_key]
            if _held + nbytes > MAX_BYTES:
                continue
            _free.setdefault(key, []).append(t.view(-1))
            _free.move_to_end(key)
            _held += nbytes


def held_bytes() -> int:
    """Bytes currently kept by the pool."""
    return _held


def clear() -> None:
    """Release every pooled buffer (e.g. before a large simulation of another shape)."""
    global _held
    with _lock:
        _free.clear()
        _held = 0
