"""One LightningDataModule for every task: the task YAML says where the data is and what it means.

The splits are built by :mod:`protolm.data.build` (read, label, carve, limit, encode); this
module only hands them out by role and makes their loaders: batches grouped by length
(:mod:`protolm.data.sampling`), padded to their own longest sequence (:mod:`protolm.data.collate`).
"""

from __future__ import annotations

import logging
from functools import cached_property

import lightning as L
from torch.utils.data import DataLoader, Dataset

from protolm.config import DataConfig
from protolm.config.task import TaskSpec
from protolm.data import build, encoding, sources
from protolm.data.cache import ArrowCache, digest, tokenizer_identity
from protolm.data.collate import PadCollator
from protolm.data.resumable import ResumableDataLoader, TrainOrder
from protolm.data.sampling import LengthGroupedSampler
from protolm.data.shortcut import plant
from protolm.data.split import Split
from protolm.data.stream import StreamedTrainSplit
from protolm.utils.errors import ConfigError
from protolm.utils.processes import world as process_world

log = logging.getLogger(__name__)

STAGE_ROLES = {"fit": ["train", "val", "test"], "validate": ["val"], "test": ["test"]}


class EncodedDataset(Dataset):
    """Items carry ``index``: the example's position in its split, kept through subsetting.

    Batches are read from the Arrow table a batch at a time (``__getitems__``), not row by row.
    """

    def __init__(self, split: Split, positions: list[int] | None = None):
        self.positions = positions
        self.keys = split.token_keys
        self.table = split.dataset.select_columns([*self.keys, "label"])

    def __len__(self) -> int:
        return self.table.num_rows

    def __getitem__(self, i: int) -> dict:
        return self.__getitems__([i])[0]

    def __getitems__(self, items: list[int]) -> list[dict]:
        batch = self.table[items]
        indices = [self.positions[i] for i in items] if self.positions is not None else items
        return [
            {**{key: batch[key][k] for key in self.keys}, "labels": batch["label"][k], "index": index}
            for k, index in enumerate(indices)
        ]


class TaskDataModule(L.LightningDataModule):
    """Feeds any task described by a :class:`TaskSpec`, as ``data`` (:class:`DataConfig`) says.

    ``val`` dataloaders come from ``task.select_on`` (checkpoint selection) and ``test``
    dataloaders from ``task.report_on`` (the figure reported), which must differ. ``seed`` (the
    run's) orders the training batches; which examples are used depends on ``data.split_seed`` only.
    """

    def __init__(self, task: TaskSpec | dict, tokenizer, data: DataConfig, seed: int = 0):
        super().__init__()
        self.spec = task if isinstance(task, TaskSpec) else TaskSpec.from_config(task)
        self.tokenizer, self.data, self.seed = tokenizer, data, seed
        self.splits: dict[str, Split] = {}  # read, labelled and carved, by split name
        self.roles: dict[str, Split] = {}  # limited and encoded, by role
        self.sources: dict[str, sources.Source] = {}  # each read split's resolved source (sources.source_of)
        self.train_order = TrainOrder(self)
        self._cache: ArrowCache | None = None
        self._stream: StreamedTrainSplit | None = None

    @property
    def cache(self) -> ArrowCache:
        if self._cache is None:
            self._cache = ArrowCache(self.data.cache_dir, self.data.cache)
        return self._cache

    @cached_property
    def tokenizer_id(self) -> str:
        return tokenizer_identity(self.tokenizer)

    def load_splits(self, names: list[str]) -> dict[str, Split]:
        """Read, carve and label the named splits (and any split they are carved from); not tokenized."""
        return build.load_splits(self.spec, names, self.data, self.splits, self.cache, self.sources)

    def role_split(self, role: str) -> Split:
        """The encoded split playing ``role``: train, val (= task.select_on) or test (= task.report_on).

        From the cache when the same examples were encoded the same way before (by any run).
        """
        if role == "train" and self.data.streaming:
            raise ConfigError(
                "data.streaming=true: the training split is read as a stream and cannot be indexed; "
                "run this with data.streaming=false"
            )
        if role not in self.roles:
            name = {"train": "train", "val": self.spec.select_on, "test": self.spec.report_on}.get(role, role)
            count = self.data.max_train_samples if role == "train" else self.data.max_eval_samples

            def encode(path) -> dict:
                split = build.limit(self.load_splits([name])[name], count, self.data.split_seed)
                if self.data.shortcut_token and role in ("train", "val"):
                    d = self.data
                    split = plant(split, d.shortcut_token, d.shortcut_class, d.shortcut_share, d.split_seed)
                split = encoding.encode(split, self.tokenizer, self.data.max_length, path)
                digest = encoding.examples_digest(split) if role == "train" else None
                return {"name": split.name, "origin": split.origin, "truncated": split.truncated, "fingerprint": digest}

            key = encoding.role_key(self.spec, name, count, self.data, self.tokenizer_id, self.sources)
            dataset, meta = self.cache.entry("role", key, encode)
            split = Split(meta["name"], meta["origin"], dataset, meta["truncated"], meta["fingerprint"])
            self._say_what_was_left_out(role, count, split)
            self.roles[role] = split
        return self.roles[role]

    def _say_what_was_left_out(self, role: str, count: int | None, split: Split) -> None:
        """A warning for an asked-for subset larger than the split (checked here, on every use: a
        split read from the cache is not limited again) and for texts cut to data.max_length."""
        if count is not None and count > len(split):
            key = "data.max_train_samples" if role == "train" else "data.max_eval_samples"
            name, available = f"{self.spec.name}/{split.name}", len(split)
            log.warning("%s=%d, but %s has only %d examples: all %d are used", key, count, name, available, available)
        if split.truncated:
            log.warning(
                "%s/%s: %d of %d examples truncated to data.max_length=%d tokens",
                self.spec.name,
                split.name,
                split.truncated,
                len(split),
                self.data.max_length,
            )

    def fingerprint(self) -> str:
        """A digest of the training examples as used (texts, pairs, labels, in order): a resumed run
        compares it with its checkpoint's, so that it never continues on data that changed. A
        stream's is the digest of its source's identity (file path, size, time) and reading settings."""
        if self.data.streaming:
            stream = self.streamed_train()
            return digest(["stream", stream.identity, sources.reading_settings(self.spec, "train")])
        return self.role_split("train").fingerprint

    def streamed_train(self) -> StreamedTrainSplit:
        if self._stream is None:
            self._stream = StreamedTrainSplit(self.spec, self.data, self.tokenizer, self.seed, self._epoch)
        return self._stream

    def _epoch(self) -> int:
        trainer = getattr(self, "trainer", None)
        return trainer.current_epoch if trainer is not None else 0

    def setup(self, stage: str | None = None) -> None:
        for role in STAGE_ROLES.get(stage or "fit", STAGE_ROLES["fit"]):
            if role == "train" and self.data.streaming:
                self.streamed_train()
            else:
                self.role_split(role)

    def dataloader(
        self, role: str, shuffle: bool = False, indices: list[int] | None = None, shard: bool = True
    ) -> DataLoader:
        """Batches of ``role``'s split (or of ``indices`` into it), sharded across processes unless ``shard=False``.

        Shuffled batches of a whole split are the training order, which a resumed run continues mid-epoch.
        """
        split = self.role_split(role)
        if indices is not None:
            split = split.subset(indices)
        world, rank = process_world() if shard else (1, 0)
        batch_size = self.data.batch_size if shuffle else self.data.eval_batch
        sampler = LengthGroupedSampler(
            split.lengths,
            batch_size,
            shuffle=shuffle,
            group_by_length=self.data.length_grouping,
            seed=self.seed,
            num_replicas=world,
            rank=rank,
        )
        pad_to = self._pad_to
        loader_class, extra = DataLoader, {}
        if shuffle and indices is None:
            loader_class, extra = ResumableDataLoader, {"train_order": self.train_order}
        return loader_class(
            EncodedDataset(split, indices),
            sampler=sampler,
            batch_size=batch_size,
            collate_fn=PadCollator(self.tokenizer.pad_token_id, self.spec.is_regression, pad_to),
            num_workers=self.data.num_workers,
            persistent_workers=self.data.num_workers > 0,
            **extra,
        )

    def train_dataloader(self):
        if not self.data.streaming:
            return self.dataloader("train", shuffle=True)
        if process_world()[0] > 1:
            raise ConfigError("data.streaming=true trains in one process: one stream cannot be split evenly")
        return ResumableDataLoader(
            self.streamed_train(),
            batch_size=self.data.batch_size,
            collate_fn=PadCollator(self.tokenizer.pad_token_id, self.spec.is_regression, self._pad_to),
            train_order=self.train_order,
        )

    def val_dataloader(self):
        return self.dataloader("val")

    def test_dataloader(self):
        return self.dataloader("test")

    @property
    def _pad_to(self) -> int | None:
        return None if self.data.dynamic_padding else self.data.max_length

    def describe(self) -> dict:
        """Which data each role used, for results.json (loaded here if this process has not:
        under ddp_spawn the training ran in child processes)."""
        out = {}
        for role in ("train", "val", "test"):
            if role == "train" and self.data.streaming:
                stream = self.streamed_train()
                out[role] = {"split": "train", "origin": f"{stream.origin} (streamed)", "size": None, "truncated": None}
                continue
            split = self.role_split(role)
            out[role] = {"split": split.name, "origin": split.origin, "size": len(split), "truncated": split.truncated}
        return out
