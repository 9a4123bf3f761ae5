"""The one place that asks whether this process is part of a running process group (DDP)."""

from __future__ import annotations

import torch.distributed as dist


def world() -> tuple[int, int]:
    """(processes, this rank) when a process group is running, else (1, 0)."""
    if not (dist.is_available() and dist.is_initialized()):
        return 1, 0
    return dist.get_world_size(), dist.get_rank()
