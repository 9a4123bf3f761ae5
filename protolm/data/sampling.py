"""The index sampler: seeded per epoch (so a resumed run sees the same batches), grouping
examples of similar length into the same batch (so dynamic padding pads little), and sharded
across processes.
"""

from __future__ import annotations

import math
import random

from torch.utils.data import Sampler


class LengthGroupedSampler(Sampler[int]):
    """Yields example indices; every ``batch_size`` consecutive ones form a batch.

    Training (``shuffle=True``): each epoch a permutation seeded by (seed, epoch); with
    ``group_by_length`` it is cut into mega-batches of ``mega_batches`` batches, each sorted by
    length and cut into batches, and the full batches are shuffled again, so batches hold
    similar lengths while their order stays random (a short last batch stays last).
    Evaluation (``shuffle=False``): indices sorted by length (when grouping) so padding is minimal.

    Sharding: with ``num_replicas > 1`` every process gets a disjoint part. Training shards are
    padded to equal size (every process must run the same number of steps); evaluation shards
    are not, so no example is counted twice in a metric.

    Lightning calls ``set_epoch`` on a DataLoader's ``sampler`` at every epoch start.
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
    ):
        self.lengths, self.batch_size, self.shuffle = list(lengths), batch_size, shuffle
        self.group_by_length, self.seed, self.mega_batches = group_by_length, seed, mega_batches
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0
        self._skip_batches = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def skip_next(self, batches: int) -> None:
        """The next iteration starts after ``batches`` batches of this epoch (mid-epoch resume)."""
        self._skip_batches = batches

    def _shard(self, order: list[int]) -> list[int]:
        if self.num_replicas == 1:
            return order
        if self.shuffle:
            per_rank = math.ceil(len(order) / self.num_replicas)
            order = order + order[: per_rank * self.num_replicas - len(order)]
        return order[self.rank :: self.num_replicas]

    def batches(self) -> list[list[int]]:
        """This epoch's batches, in order."""
        rng = random.Random(self.seed * 100_003 + self.epoch)
        order = list(range(len(self.lengths)))
        if self.shuffle:
            rng.shuffle(order)
        order = self._shard(order)
        if self.group_by_length and not self.shuffle:
            order.sort(key=lambda i: -self.lengths[i])
        elif self.group_by_length:
            mega = self.batch_size * self.mega_batches
            order = [
                i
                for start in range(0, len(order), mega)
                for i in sorted(order[start : start + mega], key=lambda i: -self.lengths[i])
            ]
        batches = [order[s : s + self.batch_size] for s in range(0, len(order), self.batch_size)]
        if self.shuffle and self.group_by_length:
            full = len(batches) - (1 if batches and len(batches[-1]) < self.batch_size else 0)
            head = batches[:full]
            rng.shuffle(head)
            batches = head + batches[full:]
        return batches

    def __iter__(self):
        batches, self._skip_batches = self.batches()[self._skip_batches :], 0
        return iter([i for batch in batches for i in batch])

    def __len__(self) -> int:
        n = len(self.lengths)
        if self.num_replicas > 1:
            return math.ceil(n / self.num_replicas) if self.shuffle else len(range(self.rank, n, self.num_replicas))
        return n
