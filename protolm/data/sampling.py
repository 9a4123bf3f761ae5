"""Batch samplers: seeded per epoch (so a resumed run sees the same batches), optionally
grouped by length (so dynamic padding pads little), and sharded across processes.
"""
from __future__ import annotations

import math
import random

from torch.utils.data import Sampler


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Yields lists of indices.

    Training (``shuffle=True``): each epoch a permutation seeded by (seed, epoch); with
    ``group_by_length`` the permutation is cut into mega-batches of ``mega_batches`` batches,
    each sorted by length and cut into batches, and the batches are shuffled again, so batches
    hold similar lengths while their order stays random. Evaluation (``shuffle=False``):
    indices sorted by length (when grouping) so padding is minimal; order does not matter there.

    Sharding: with ``num_replicas > 1`` every process gets a disjoint part. Training shards are
    padded to equal size (every process must run the same number of steps); evaluation shards
    are not, so no example is counted twice in a metric.
    """

    def __init__(
        self,
        lengths: list[int],
        batch_size: int,
        shuffle: bool,
        group_by_length: bool = True,
        seed: int = 0,
        mega_batches: int = 50,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = False,
    ):
        self.lengths, self.batch_size, self.shuffle = list(lengths), batch_size, shuffle
        self.group_by_length, self.seed, self.mega_batches = group_by_length, seed, mega_batches
        self.num_replicas, self.rank, self.drop_last = num_replicas, rank, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch."""
        self.epoch = epoch

    def _shard(self, order: list[int]) -> list[int]:
        if self.num_replicas == 1:
            return order
        if self.shuffle:
            per_rank = math.ceil(len(order) / self.num_replicas)
            order = order + order[: per_rank * self.num_replicas - len(order)]
        return order[self.rank :: self.num_replicas]

    def _batches(self) -> list[list[int]]:
        n = len(self.lengths)
        rng = random.Random(self.seed * 100_003 + self.epoch)
        order = list(range(n))
        if self.shuffle:
            rng.shuffle(order)
        order = self._shard(order)
        if self.group_by_length and not self.shuffle:
            order.sort(key=lambda i: -self.lengths[i])
        elif self.group_by_length:
            mega = self.batch_size * self.mega_batches
            order = [
                i for start in range(0, len(order), mega)
                for i in sorted(order[start : start + mega], key=lambda i: -self.lengths[i])
            ]
        batches = [order[s : s + self.batch_size] for s in range(0, len(order), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        if self.shuffle and self.group_by_length:
            rng.shuffle(batches)
        return batches

    def __iter__(self):
        return iter(self._batches())

    def __len__(self) -> int:
        n = len(self.lengths)
        if self.num_replicas > 1:
            n = math.ceil(n / self.num_replicas) if self.shuffle else len(range(self.rank, n, self.num_replicas))
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)
