"""Data-parallel training on PyTorch's own engine, started with ``torchrun``.

``torchrun --nproc_per_node N -m qmedgen train ...`` sets RANK / WORLD_SIZE / LOCAL_RANK; :func:`init` then joins
the process group (gloo on CPU, NCCL on CUDA). Every rank holds the whole model; each step every rank processes
its slice of the global batch and gradients are averaged with one all-reduce per parameter group
(:meth:`Dist.average_gradients`). That is what DDP does, done explicitly so that it also covers WGAN-GP's
double-backward gradient penalty, which DDP's hooks do not support. Rank 0 writes files; all ranks read the same
checkpoint on resume.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as torch_dist


@dataclass(frozen=True)
class Dist:
    """The process's place in the job. ``world_size == 1`` means plain single-process training."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def local_slice(self, global_size: int) -> slice:
        """This rank's contiguous share of a global batch (sizes differ by at most one)."""
        base, extra = divmod(global_size, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (1 if self.rank < extra else 0))

    def average_gradients(self, params: Iterable[torch.nn.Parameter]) -> None:
        """All-reduce (mean) the gradients of ``params`` across ranks; a no-op without torchrun."""
        if not self.enabled:
            return
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch_dist.all_reduce(flat, op=torch_dist.ReduceOp.SUM)
        flat /= self.world_size
        offset = 0
        for g in grads:
            n = g.numel()
            g.copy_(flat[offset : offset + n].view_as(g))
            offset += n

    def barrier(self) -> None:
        if self.enabled:
            torch_dist.barrier()

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (e.g. the run directory it created)."""
        if not self.enabled:
            return obj
        box = [obj]
        torch_dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_gather_tensor(self, tensor: torch.Tensor) -> torch.Tensor:
        """Concatenate every rank's ``tensor`` along dim 0 (shards may differ in length by one)."""
        if not self.enabled:
            return tensor
        sizes = [torch.zeros(1, dtype=torch.long, device=tensor.device) for _ in range(self.world_size)]
        torch_dist.all_gather(sizes, torch.tensor([tensor.shape[0]], device=tensor.device))
        longest = int(max(s.item() for s in sizes))
        padded = torch.zeros((longest, *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
        padded[: tensor.shape[0]] = tensor
        gathered = [torch.empty_like(padded) for _ in range(self.world_size)]
        torch_dist.all_gather(gathered, padded)
        return torch.cat([g[: int(s.item())] for g, s in zip(gathered, sizes)])


def init(device: str = "auto") -> Dist:
    """Join the torchrun process group when launched by torchrun; otherwise a single-process :class:`Dist`."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device != "cpu"
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local_rank)
    return Dist(rank=rank, world_size=world, local_rank=local_rank)


def shutdown() -> None:
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def resolve_device(name: str, dist: Dist) -> torch.device:
    """``auto`` picks CUDA when present (one GPU per local rank under torchrun), else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and dist.enabled:
        name = f"cuda:{dist.local_rank}"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        from qmedgen.errors import ConfigError

        raise ConfigError(f"train.device={name!r} but CUDA is not available on this machine; use 'cpu' or 'auto'")
    return device
