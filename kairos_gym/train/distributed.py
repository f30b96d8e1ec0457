"""Data parallelism through ``torchrun``: one process per device, gradients all-reduced by DDP.

``torchrun --nproc_per_node N -m kairos_gym.cli train ...`` sets ``RANK``/``WORLD_SIZE``/
``LOCAL_RANK``; without them the trainer runs as a single process. CPU runs use the gloo
backend (what the tests exercise), CUDA runs NCCL.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from kairos_gym.devices import check_device


@dataclass(frozen=True)
class Distributed:
    """Where this process sits in a data-parallel run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, logs and progress bars."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """More than one process."""
        return self.world_size > 1

    def barrier(self) -> None:
        """Wait for every process (no-op when alone)."""
        if self.enabled:
            dist.barrier()

    def mean(self, value: float) -> float:
        """The mean of a scalar over processes (for logging)."""
        if not self.enabled:
            return float(value)
        t = torch.tensor([float(value)], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t.item()) / self.world_size


def init_distributed(device: str = "auto") -> Distributed:
    """Join the process group ``torchrun`` describes, or run alone.

    Args:
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when available).

    Raises:
        DeviceUnavailable: a device that does not exist here (``"cuda"`` on a CPU-only build).
    """
    if device == "auto":
        use_cuda = torch.cuda.is_available()
    else:
        use_cuda = check_device(device).type == "cuda"
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return Distributed(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def shutdown(d: Distributed) -> None:
    """Leave the process group."""
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()
