"""The one place that asks whether this process is part of a running process group (DDP), and the
collective operations the prototype stages need."""

from __future__ import annotations

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(processes, this rank) when a process group is running, else (1, 0)."""
    if not (dist.is_available() and dist.is_initialized()):
        return 1, 0
    return dist.get_world_size(), dist.get_rank()


def sum_over_processes(t: torch.Tensor, device) -> torch.Tensor:
    """``t`` summed over every process (itself when there is one)."""
    if world()[0] == 1:
        return t
    t = t.to(device)
    dist.all_reduce(t)
    return t.cpu()


def gather_rows(indices: torch.Tensor, rows: torch.Tensor, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Every process's (indices, rows), concatenated on every process (shards may differ in size by
    one: they are padded for the collective and cut back)."""
    processes, _ = world()
    if processes == 1:
        return indices, rows
    count = torch.tensor([len(indices)], device=device)
    counts = [torch.zeros_like(count) for _ in range(processes)]
    dist.all_gather(counts, count)
    most = int(max(c.item() for c in counts))
    padded_rows = torch.zeros(most, *rows.shape[1:], dtype=rows.dtype, device=device)
    padded_rows[: len(rows)] = rows.to(device)
    padded_indices = torch.full((most,), -1, dtype=torch.long, device=device)
    padded_indices[: len(indices)] = indices.to(device)
    all_rows = [torch.empty_like(padded_rows) for _ in range(processes)]
    all_indices = [torch.empty_like(padded_indices) for _ in range(processes)]
    dist.all_gather(all_rows, padded_rows)
    dist.all_gather(all_indices, padded_indices)
    pieces = [(i[: int(c.item())].cpu(), r[: int(c.item())].cpu()) for i, r, c in zip(all_indices, all_rows, counts)]
    return torch.cat([p[0] for p in pieces]), torch.cat([p[1] for p in pieces])
