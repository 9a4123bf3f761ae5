"""One LightningDataModule for every task: the task YAML says where the data is and what it means.

The splits are built by :mod:`protolm.data.build` (read, label, carve, limit, encode); this
module only hands them out by role and makes their loaders: batches grouped by length
(:mod:`protolm.data.sampling`), padded to their own longest sequence (:mod:`protolm.data.collate`).
"""

from __future__ import annotations

import hashlib
import json

import lightning as L
from torch.utils.data import DataLoader, Dataset

from protolm.config import DataConfig
from protolm.data import build
from protolm.data.build import Split
from protolm.data.collate import PadCollator
from protolm.data.sampling import LengthGroupedSampler
from protolm.data.task import TaskSpec
from protolm.distributed import world as process_world
from protolm.resume import ResumableDataLoader, TrainOrder

STAGE_ROLES = {"fit": ["train", "val", "test"], "validate": ["val"], "test": ["test"]}


class EncodedDataset(Dataset):
    """Items carry ``index``: the example's position in its split, kept through subsetting."""

    def __init__(self, split: Split, positions: list[int] | None = None):
        self.split, self.positions = split, positions

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> dict:
        index = self.positions[i] if self.positions is not None else i
        return {**self.split.encodings[i], "labels": self.split.labels[i], "index": index}


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
        self.train_order = TrainOrder(self)
        self._fingerprint: str | None = None

    def load_splits(self, names: list[str]) -> dict[str, Split]:
        """Read, carve and label the named splits (and any split they are carved from); not tokenized."""
        return build.load_splits(self.spec, names, self.data, self.splits)

    def role_split(self, role: str) -> Split:
        """The encoded split playing ``role``: train, val (= task.select_on) or test (= task.report_on)."""
        if role not in self.roles:
            name = {"train": "train", "val": self.spec.select_on, "test": self.spec.report_on}.get(role, role)
            split = self.load_splits([name])[name]
            count = self.data.max_train_samples if role == "train" else self.data.max_eval_samples
            split = build.limit(split, count, self.data.split_seed)
            self.roles[role] = build.encode(split, self.tokenizer, self.data.max_length, self.spec.name)
        return self.roles[role]

    def fingerprint(self) -> str:
        """A digest of the training examples as used (texts, pairs, labels, in order): a resumed run
        compares it with its checkpoint's, so that it never continues on data that changed."""
        if self._fingerprint is None:
            split = self.role_split("train")
            digest = hashlib.sha256()
            for values in (split.texts, split.pairs or [], split.labels):
                digest.update(json.dumps(values, ensure_ascii=False).encode())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def setup(self, stage: str | None = None) -> None:
        for role in STAGE_ROLES.get(stage or "fit", STAGE_ROLES["fit"]):
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
            [len(e["input_ids"]) for e in split.encodings],
            batch_size,
            shuffle=shuffle,
            group_by_length=self.data.length_grouping,
            seed=self.seed,
            num_replicas=world,
            rank=rank,
        )
        pad_to = None if self.data.dynamic_padding else self.data.max_length
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
        return self.dataloader("train", shuffle=True)

    def val_dataloader(self):
        return self.dataloader("val")

    def test_dataloader(self):
        return self.dataloader("test")

    def describe(self) -> dict:
        """Which data each role used, for results.json (loaded here if this process has not:
        under ddp_spawn the training ran in child processes)."""
        out = {}
        for role in ("train", "val", "test"):
            split = self.role_split(role)
            out[role] = {"split": split.name, "origin": split.origin, "size": len(split), "truncated": split.truncated}
        return out
