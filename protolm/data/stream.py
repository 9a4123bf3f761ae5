"""The training split as a stream (``data.streaming=true``), for corpora larger than memory or disk.

Each epoch reads the split's file (or the hub, streamed) a record at a time: labelled as the
Arrow path labels it (a bad row names its file and row), shuffled in a seeded buffer of
``data.shuffle_buffer`` examples (seed and epoch decide the order, as ``datasets`` shuffles a
stream), tokenized in batches on the way. ``index`` is the example's position in the file.

What a stream cannot do is refused by :func:`protolm.config.run.check_streaming` before anything
runs: batches grouped by length over the whole split, seeded subsets, carving from train, and the
prototype head's stages that need random access to the training split (initialisation from
training examples, projection, health, pruning); here, several processes or loader workers.
A resumed run reads its epoch again from the start and skips what the checkpoint had trained on:
the same order, so the same batches (slower to reach than with the Arrow path's random access).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import IterableDataset

from protolm.config import DataConfig
from protolm.config.task import TaskSpec
from protolm.data import encoding, labels, sources
from protolm.utils.errors import ConfigError


class StreamedTrainSplit(IterableDataset):
    """Yields the training examples of one epoch as the loaders' other datasets do (token ids,
    ``labels``, ``index``); ``epoch()`` says which epoch is starting."""

    def __init__(self, spec: TaskSpec, data: DataConfig, tokenizer, seed: int, epoch: Callable[[], int]):
        if any("train" in (c.split, c.from_split) for c in spec.carve):
            raise ConfigError(f"data.streaming=true: task {spec.name} carves a split out of train")
        self.spec, self.data, self.tokenizer, self.seed, self.epoch = spec, data, tokenizer, seed, epoch
        self.identity, self.origin, self.records = sources.resolve_source(spec, "train", data, streaming=True)
        self._skip_batches = 0

    def resume_at(self, state: dict) -> None:
        """The next iteration skips the batches a checkpoint's epoch had already trained on."""
        self._skip_batches = state["completed"]

    def examples(self, skip: int = 0):
        """This epoch's labelled examples in their shuffled order, after the first ``skip``."""
        import datasets

        def rows() -> Iterator[dict]:
            labelled = labels.labelled_rows(self.spec, "train", self.records(), self.origin)
            for index, row in enumerate(labelled):
                yield {**row, "index": index}

        stream = datasets.IterableDataset.from_generator(rows)
        stream = stream.shuffle(seed=self.seed, buffer_size=self.data.shuffle_buffer).skip(skip)
        stream.set_epoch(self.epoch())  # last: a derived stream (skip) does not keep the epoch set before
        return stream

    def __iter__(self) -> Iterator[dict]:
        info = torch.utils.data.get_worker_info()
        if info is not None and info.num_workers > 1:
            raise ConfigError("data.streaming=true reads the stream in the main process: set data.num_workers=0")
        skip, self._skip_batches = self._skip_batches * self.data.batch_size, 0
        pair = self.spec.is_pair
        batch: list[dict] = []
        for example in self.examples(skip):
            batch.append(example)
            if len(batch) == 1000:
                yield from self._encoded(batch, pair)
                batch = []
        if batch:
            yield from self._encoded(batch, pair)

    def _encoded(self, batch: list[dict], pair: bool) -> Iterator[dict]:
        texts = [e["text"] for e in batch]
        args = (texts, [e["pair"] for e in batch]) if pair else (texts,)
        _, ids = encoding.token_ids(self.tokenizer, args, self.data.max_length)
        for i, example in enumerate(batch):
            tokens = {key: column[i] for key, column in ids.items()}
            yield {**tokens, "labels": example["label"], "index": example["index"]}
