"""Building a task's splits from its spec: read -> label -> carve -> limit (then encode,
:mod:`protolm.data.encoding`).

Read: each split from its local file, else the hub (:mod:`protolm.data.sources`), labelled on the
way (:mod:`protolm.data.labels`). Carve: seeded slices of a split become splits of their own (e.g.
a validation slice of train), by rows or by whole groups of related rows
(:mod:`protolm.data.carving`). Limit: a seeded subset (``data.max_*_samples``).

Carving and limiting are seeded by ``data.split_seed`` and the split's name only, never by the
run's seed, so every run of a sweep sees the same examples in the same order.
"""

from __future__ import annotations

import random

from protolm.config import DataConfig
from protolm.config.task import LocalSpec, TaskSpec
from protolm.data.cache import ArrowCache
from protolm.data.carving import carve
from protolm.data.sources import Source, read
from protolm.data.split import Split


def splits_needed(spec: TaskSpec, names: list[str]) -> set[str]:
    """``names`` with every split they are carved from and every split carved from them.

    A source must never be used before its carves are taken out of it (that would leak the
    validation slice into train), so loading either side of a carve loads both.
    """
    needed, grown = set(names), True
    while grown:
        before = len(needed)
        for c in spec.carve:
            if c.split in needed or c.from_split in needed:
                needed |= {c.split, c.from_split}
        grown = len(needed) > before
    return needed


def load_splits(
    spec: TaskSpec,
    names: list[str],
    data: DataConfig,
    loaded: dict[str, Split],
    cache: ArrowCache | None = None,
    sources: dict[str, Source] | None = None,
) -> dict[str, Split]:
    """The named splits read, labelled and carved; ``loaded`` caches every split built so far and
    ``sources`` every split's resolved source (both updated here)."""
    needed = splits_needed(spec, names)
    carved = {c.split for c in spec.carve}
    cache = cache or ArrowCache(data.cache_dir, data.cache)
    for name in LocalSpec.SPLITS:
        if name in needed and name not in carved and name not in loaded:
            loaded[name] = read(spec, name, data, cache, sources)
    for c in spec.carve:
        if c.split in needed and c.split not in loaded:
            loaded[c.split], loaded[c.from_split] = carve(loaded[c.from_split], c, data.split_seed)
    return {name: loaded[name] for name in names}


def limit(split: Split, count: int | None, split_seed: int) -> Split:
    """A seeded subset of ``count`` examples, in the split's order (all of them when None, or when
    ``count`` is more than the split holds: the data module warns then, naming the key)."""
    if count is None or count >= len(split):
        return split
    order = list(range(len(split)))
    random.Random(f"{split_seed}:limit:{split.name}").shuffle(order)
    return split.subset(sorted(order[:count]), origin=f"{count} of {len(split)} rows of {split.origin}")
