"""One LightningDataModule for every task: the task YAML says where the data is and what it means.

Pipeline: read each split (local file, else the hub) -> carve seeded slices (e.g. a
validation slice of train) -> subsample (data.max_*_samples) -> labels to indices ->
tokenize once -> batches padded to their own longest sequence.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from protolm.data.hub import HUB_MODES, hub_unavailable_reason, load_hub_split
from protolm.data.readers import read_split, source_exists
from protolm.data.sampling import LengthGroupedSampler
from protolm.data.task import LocalSpec, TaskSpec
from protolm.distributed import world as process_world
from protolm.errors import ConfigError, DataError

log = logging.getLogger(__name__)


@dataclass
class Split:
    """One split's examples, in a fixed order; ``rows`` say where each came from."""

    name: str
    origin: str
    texts: list[str]
    pairs: list[str] | None
    labels: list
    rows: list
    encodings: list[dict] = field(default_factory=list)
    truncated: int = 0

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: list[int], name: str | None = None, origin: str | None = None) -> Split:
        pick = lambda xs: [xs[i] for i in indices] if xs is not None else None  # noqa: E731
        return Split(
            name or self.name,
            origin or self.origin,
            pick(self.texts),
            pick(self.pairs),
            pick(self.labels),
            pick(self.rows),
            pick(self.encodings) if self.encodings else [],
        )


class EncodedDataset(Dataset):
    """Items carry ``index``: the example's position in its split, kept through subsetting."""

    def __init__(self, split: Split, positions: list[int] | None = None):
        self.split, self.positions = split, positions

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> dict:
        index = self.positions[i] if self.positions is not None else i
        return {**self.split.encodings[i], "labels": self.split.labels[i], "index": index}


class PadCollator:
    """Pads a batch to its longest sequence (or to ``pad_to`` when dynamic padding is off)."""

    def __init__(self, pad_token_id: int, regression: bool, pad_to: int | None = None):
        self.pad_token_id, self.regression, self.pad_to = pad_token_id, regression, pad_to

    def __call__(self, examples: list[dict]) -> dict:
        width = self.pad_to or max(len(e["input_ids"]) for e in examples)
        batch = {}
        for key in examples[0]:
            if key in ("labels", "index"):
                continue
            pad = self.pad_token_id if key == "input_ids" else 0
            batch[key] = torch.tensor([e[key] + [pad] * (width - len(e[key])) for e in examples])
        batch["attention_mask"] = torch.tensor(
            [[1] * len(e["input_ids"]) + [0] * (width - len(e["input_ids"])) for e in examples]
        )
        batch["labels"] = torch.tensor(
            [e["labels"] for e in examples], dtype=torch.float32 if self.regression else torch.long
        )
        batch["index"] = torch.tensor([e["index"] for e in examples])
        return batch


class ResumableDataLoader(DataLoader):
    """The training DataLoader: it resumes mid-epoch exactly where a checkpoint left off.

    Its ``state_dict`` (saved by Lightning with the loops) is (epoch, batches processed in it),
    read from the trainer's progress so that prefetched batches do not count. On a mid-epoch
    resume the saved state comes back through :meth:`TaskDataModule.resume_train_order` (or
    Lightning's ``load_state_dict``); the next iterator then runs that epoch's seeded, hence
    identical, order without the batches already done.
    """

    def __init__(self, *args, datamodule=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._datamodule = datamodule

    def state_dict(self) -> dict:
        return self._datamodule.train_progress() if self._datamodule else {"epoch": 0, "completed": 0}

    def load_state_dict(self, state: dict) -> None:
        if self._datamodule is not None:
            self._datamodule.resume_train_order(state)

    def __iter__(self):
        state = self._datamodule.take_resume_state() if self._datamodule is not None else None
        if state is None:
            return super().__iter__()
        self.sampler.set_epoch(state["epoch"])
        self.sampler.skip_next(state["completed"])
        # Creating an iterator draws a seed from the global generator; the uninterrupted run drew
        # it at the start of this epoch, before the generator state the checkpoint restored.
        rng = torch.get_rng_state()
        iterator = super().__iter__()
        torch.set_rng_state(rng)
        return iterator


class TaskDataModule(L.LightningDataModule):
    """Feeds any task described by a :class:`TaskSpec`.

    ``val`` dataloaders come from ``task.select_on`` (checkpoint selection) and ``test``
    dataloaders from ``task.report_on`` (the figure reported), which must differ.
    """

    def __init__(
        self,
        task: TaskSpec | dict,
        tokenizer,
        data_dir: str | Path,
        max_length: int = 128,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        max_train_samples: int | None = None,
        max_eval_samples: int | None = None,
        num_workers: int = 0,
        split_seed: int = 0,
        seed: int = 0,
        length_grouping: bool = True,
        dynamic_padding: bool = True,
        hub: str = "auto",
        hub_timeout_s: float = 5.0,
    ):
        super().__init__()
        self.spec = task if isinstance(task, TaskSpec) else TaskSpec.from_config(task)
        if hub not in HUB_MODES:
            raise ConfigError(f"data.hub={hub!r} is not one of {', '.join(HUB_MODES)}")
        self.tokenizer, self.data_dir = tokenizer, Path(data_dir).expanduser()
        self.max_length, self.batch_size = max_length, batch_size
        self.eval_batch_size = eval_batch_size or 2 * batch_size
        self.max_train_samples, self.max_eval_samples = max_train_samples, max_eval_samples
        self.num_workers, self.split_seed, self.seed = num_workers, split_seed, seed
        self.length_grouping, self.dynamic_padding = length_grouping, dynamic_padding
        self.hub, self.hub_timeout_s = hub, hub_timeout_s
        self.splits: dict[str, Split] = {}

    # ------------------------------------------------------------------ loading
    def _read_raw(self, name: str) -> tuple[list[dict], str]:
        source = getattr(self.spec.local, name)
        tried = []
        if source is not None:
            missing = source_exists(source, self.data_dir)
            if not missing:
                return read_split(source, self.spec.local, self.data_dir), source.path
            tried += [str(p) for p in missing]
        hub = self.spec.hub
        if hub is not None and name in hub.splits:
            reason = hub_unavailable_reason(self.hub, self.hub_timeout_s)
            if reason is None:
                log.info(
                    "task %s: reading split %s from the hub (%s %s)", self.spec.name, name, hub.path, hub.name or ""
                )
                return load_hub_split(hub, name), f"hub:{hub.path}/{hub.name or ''}[{hub.splits[name]}]"
            tried.append(f"hub {hub.path} {hub.name or ''} (not used: {reason})")
        what = f"split {name!r} of task {self.spec.name}"
        if not tried:
            raise DataError(f"{what}: the task config names no local file or hub split for it")
        raise DataError(
            f"{what} not found. Tried: {'; '.join(tried)}. Point data.data_dir=/path/to/data "
            f"(or the PROTOLM_DATA_DIR variable) at the folder that holds it, or set "
            f"task.local.{name}=<path relative to data.data_dir>"
        )

    def _to_split(self, name: str, records: list[dict], origin: str) -> Split:
        spec, texts, pairs, labels, rows = self.spec, [], [], [], []
        for record in records:
            where = f"{origin}: row {record.get('_row')}"
            fields = []
            for key in spec.text_fields:
                if key not in record:
                    present = sorted(k for k in record if k != "_row")
                    raise DataError(f"{where}: no text field {key!r} (fields present: {', '.join(present)})")
                value = record[key]
                fields.append(
                    " ".join(map(str, value)) if isinstance(value, list) else ("" if value is None else str(value))
                )
            if spec.label_field not in record:
                raise DataError(f"{where}: no label field {spec.label_field!r}")
            labels.append(self._label(record[spec.label_field], where))
            texts.append(fields[0])
            pairs.append(fields[1] if spec.is_pair else None)
            rows.append(record.get("_row"))
        return Split(name, origin, texts, pairs if spec.is_pair else None, labels, rows)

    def _label(self, raw, where: str):
        spec = self.spec
        if spec.is_regression:
            try:
                return float(raw)
            except (TypeError, ValueError):
                raise DataError(f"{where}: label {raw!r} is not a number (task {spec.name} is a regression)") from None
        key = str(raw).strip()
        if spec.label_map is not None:
            if key in spec.label_map:
                return spec.label_map[key]
        elif key in spec.labels:
            return spec.labels.index(key)
        elif key.lstrip("-").isdigit() and 0 <= int(key) < spec.num_classes:
            return int(key)
        valid = sorted(spec.label_map) if spec.label_map is not None else spec.labels
        raise DataError(
            f"{where}: label {raw!r} is not in the label set of task {spec.name} ({', '.join(valid)}); "
            "fix the file or map raw values with task.label_map"
        )

    def load_splits(self, names: list[str]) -> dict[str, Split]:
        """Read, carve and subsample the named splits (and any split they are carved from)."""
        spec = self.spec
        # A carved split needs its source, and a source must never be used before its carves are
        # taken out of it (that would leak the validation slice into train): close over both.
        needed, grown = set(names), True
        while grown:
            before = len(needed)
            for c in spec.carve:
                if c.split in needed or c.from_split in needed:
                    needed |= {c.split, c.from_split}
            grown = len(needed) > before
        carved = {c.split for c in spec.carve}
        for name in LocalSpec.SPLITS:
            if name in needed and name not in carved and name not in self.splits:
                records, origin = self._read_raw(name)
                self.splits[name] = self._to_split(name, records, origin)
        for carve in spec.carve:
            if carve.split in needed and carve.split not in self.splits:
                source = self.splits[carve.from_split]
                n = carve.size if carve.size is not None else max(1, round(carve.fraction * len(source)))
                if n >= len(source):
                    raise DataError(
                        f"task.carve: cannot carve {n} examples out of the {len(source)} of {carve.from_split!r}"
                    )
                order = list(range(len(source)))
                random.Random(f"{self.split_seed}:{carve.split}").shuffle(order)
                taken, kept = sorted(order[:n]), sorted(order[n:])
                self.splits[carve.split] = source.subset(
                    taken, carve.split, f"{n} rows carved (seed {self.split_seed}) from {source.origin}"
                )
                self.splits[carve.from_split] = source.subset(kept)
        return {name: self.splits[name] for name in names}

    def _limit(self, split: Split, limit: int | None) -> Split:
        if limit is None or limit >= len(split):
            return split
        if limit < 1:
            raise ConfigError(f"data.max_*_samples={limit} must be >= 1 (or null for all)")
        order = list(range(len(split)))
        random.Random(f"{self.split_seed}:limit:{split.name}").shuffle(order)
        return split.subset(sorted(order[:limit]), origin=f"{limit} of {len(split)} rows of {split.origin}")

    def _encode(self, split: Split) -> Split:
        if split.encodings:
            return split
        tok = self.tokenizer
        args = (split.texts, split.pairs) if split.pairs is not None else (split.texts,)
        enc = tok(*args, truncation=True, max_length=self.max_length, return_attention_mask=False)
        keys = [k for k in enc.keys() if k in ("input_ids", "token_type_ids")]
        split.encodings = [{k: enc[k][i] for k in keys} for i in range(len(split))]
        if getattr(enc, "encodings", None):  # fast tokenizers keep what truncation cut off
            split.truncated = sum(bool(e.overflowing) for e in enc.encodings)
        else:  # slow tokenizers: only examples that reached the limit can have been cut
            at_limit = [i for i, e in enumerate(split.encodings) if len(e["input_ids"]) >= self.max_length]
            if at_limit:
                sub = [[xs[i] for i in at_limit] for xs in args]
                full = tok(*sub, truncation=False, return_attention_mask=False)["input_ids"]
                split.truncated = sum(len(ids) > self.max_length for ids in full)
        if split.truncated:
            log.warning(
                "%s/%s: %d of %d examples truncated to data.max_length=%d tokens",
                self.spec.name,
                split.name,
                split.truncated,
                len(split),
                self.max_length,
            )
        return split

    def setup(self, stage: str | None = None) -> None:
        names = {"fit": ["train", "val", "test"], "validate": ["val"], "test": ["test"]}.get(
            stage or "fit", ["train", "val", "test"]
        )
        for role in names:
            self.role_split(role)

    def role_split(self, role: str) -> Split:
        """The encoded split playing ``role``: train, val (= task.select_on) or test (= task.report_on)."""
        name = {"train": "train", "val": self.spec.select_on, "test": self.spec.report_on}.get(role, role)
        key = f"@{role}"
        if key not in self.splits:
            split = self.load_splits([name])[name]
            limit = self.max_train_samples if role == "train" else self.max_eval_samples
            self.splits[key] = self._encode(self._limit(split, limit))
        return self.splits[key]

    # -------------------------------------------------------------- dataloaders
    def dataloader(
        self, role: str, shuffle: bool = False, indices: list[int] | None = None, shard: bool = True
    ) -> DataLoader:
        """Batches of ``role``'s split (or of ``indices`` into it), sharded across processes unless ``shard=False``."""
        split = self.role_split(role)
        if indices is not None:
            split = split.subset(indices)
        world, rank = process_world() if shard else (1, 0)
        batch_size = self.batch_size if shuffle else self.eval_batch_size
        sampler = LengthGroupedSampler(
            [len(e["input_ids"]) for e in split.encodings],
            batch_size,
            shuffle=shuffle,
            group_by_length=self.length_grouping,
            seed=self.seed,
            num_replicas=world,
            rank=rank,
        )
        pad_to = None if self.dynamic_padding else self.max_length
        collate = PadCollator(self.tokenizer.pad_token_id, self.spec.is_regression, pad_to)
        loader_class, extra = DataLoader, {}
        if shuffle and indices is None:
            loader_class, extra = ResumableDataLoader, {"datamodule": self}
        return loader_class(
            EncodedDataset(split, indices),
            sampler=sampler,
            batch_size=batch_size,
            collate_fn=collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            **extra,
        )

    # ----------------------------------------------------------- exact resumption
    def train_progress(self) -> dict:
        """(epoch, batches processed in it): what a checkpoint saved now has trained on."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return {"epoch": 0, "completed": 0}
        # "processed": a checkpoint written at the end of a batch (every N steps, SIGTERM) comes
        # after that batch's optimizer step but before Lightning counts it "completed".
        return {
            "epoch": trainer.current_epoch,
            "completed": trainer.fit_loop.epoch_loop.batch_progress.current.processed,
        }

    def resume_train_order(self, state: dict) -> None:
        """Resume the training order mid-epoch (an epoch-end state needs nothing)."""
        batches = len(self.train_dataloader()) if "@train" in self.splits else None
        if state.get("completed", 0) > 0 and (batches is None or state["completed"] < batches):
            self._resume_state = dict(state)

    def take_resume_state(self) -> dict | None:
        state, self._resume_state = getattr(self, "_resume_state", None), None
        return state

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
