"""Building a task's splits from its spec, as plain functions: read -> label -> carve -> limit -> encode.

Read: each split from its local file, else the hub. Label: text fields and labels checked and
labels turned into indices, so a bad row fails before anything else runs. Carve: seeded slices
of a split become splits of their own (e.g. a validation slice of train), by rows or by whole
groups of related rows (:mod:`protolm.data.carving`). Limit: a seeded subset
(``data.max_*_samples``). Encode: tokenized once, truncation counted.

Carving and limiting are seeded by ``data.split_seed`` and the split's name only, never by the
run's seed, so every run of a sweep sees the same examples in the same order.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

from protolm.config import DataConfig
from protolm.data.carving import carve
from protolm.data.hub import hub_unavailable_reason, load_hub_split
from protolm.data.readers import read_split, source_exists
from protolm.data.task import LocalSpec, TaskSpec
from protolm.errors import DataError

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
    fields: dict[str, list[str]] = field(default_factory=dict)  # raw values carves group by, by field name

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: list[int], name: str | None = None, origin: str | None = None) -> Split:
        def pick(values):
            return [values[i] for i in indices] if values is not None else None

        return Split(
            name or self.name,
            origin or self.origin,
            pick(self.texts),
            pick(self.pairs),
            pick(self.labels),
            pick(self.rows),
            pick(self.encodings) if self.encodings else [],
            fields={name: pick(values) for name, values in self.fields.items()},
        )


# ------------------------------------------------------------------------------------ read
def read_records(spec: TaskSpec, name: str, data: DataConfig) -> tuple[list[dict], str]:
    """A split's raw records and where they came from: its local file, else the hub."""
    data_dir = Path(data.data_dir).expanduser()
    source = getattr(spec.local, name)
    tried = []
    if source is not None:
        missing = source_exists(source, data_dir)
        if not missing:
            return read_split(source, spec.local, data_dir), source.path
        tried += [str(p) for p in missing]
    hub = spec.hub
    if hub is not None and name in hub.splits:
        reason = hub_unavailable_reason(data.hub, data.hub_timeout_s)
        if reason is None:
            log.info("task %s: reading split %s from the hub (%s %s)", spec.name, name, hub.path, hub.name or "")
            return load_hub_split(hub, name), f"hub:{hub.path}/{hub.name or ''}[{hub.splits[name]}]"
        tried.append(f"hub {hub.path} {hub.name or ''} (not used: {reason})")
    what = f"split {name!r} of task {spec.name}"
    if not tried:
        raise DataError(f"{what}: the task config names no local file or hub split for it")
    raise DataError(
        f"{what} not found. Tried: {'; '.join(tried)}. Point data.data_dir=/path/to/data "
        f"(or the PROTOLM_DATA_DIR variable) at the folder that holds it, or set "
        f"task.local.{name}=<path relative to data.data_dir>"
    )


# ----------------------------------------------------------------------------------- label
def text_of(value) -> str:
    """A text field as one string: lists (e.g. PubMedQA's context sentences) joined, None empty."""
    if isinstance(value, list):
        return " ".join(map(str, value))
    return "" if value is None else str(value)


def label_index(spec: TaskSpec, raw, where: str) -> int | float:
    """A raw label as the model's target: a float (regression), else a class index.

    Classes are matched through ``task.label_map`` when given, else by name, else as an index.
    """
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


def record_texts(spec: TaskSpec, record: dict, where: str) -> list[str]:
    """The record's text fields, in ``task.text_fields`` order."""
    texts = []
    for key in spec.text_fields:
        if key not in record:
            present = sorted(k for k in record if k != "_row")
            raise DataError(f"{where}: no text field {key!r} (fields present: {', '.join(present)})")
        texts.append(text_of(record[key]))
    return texts


def group_fields(spec: TaskSpec, name: str) -> list[str]:
    """The ``group_by`` fields of every carve taken out of split ``name``, directly or through other carves."""
    carved_from = {c.split: c.from_split for c in spec.carve}

    def root(split: str) -> str:
        seen = set()
        while split in carved_from and split not in seen:
            seen.add(split)
            split = carved_from[split]
        return split

    return sorted({f for c in spec.carve if root(c.from_split) == name for f in c.group_by})


def record_groups(names: list[str], record: dict, where: str) -> list[str]:
    """The record's values of the ``group_by`` fields, as strings (lists joined, None empty)."""
    for key in names:
        if key not in record:
            present = ", ".join(sorted(k for k in record if k != "_row"))
            raise DataError(
                f"{where}: task.carve group_by field {key!r} is not in the record (fields present: {present})"
            )
    return [text_of(record[key]) for key in names]


def to_split(spec: TaskSpec, name: str, records: list[dict], origin: str) -> Split:
    """Raw records as a labelled split; any bad row fails here, naming its file and row."""
    texts, pairs, labels, rows = [], [], [], []
    grouping = group_fields(spec, name)
    groups = {key: [] for key in grouping}
    for record in records:
        where = f"{origin}: row {record.get('_row')}"
        fields = record_texts(spec, record, where)
        if spec.label_field not in record:
            raise DataError(f"{where}: no label field {spec.label_field!r}")
        labels.append(label_index(spec, record[spec.label_field], where))
        texts.append(fields[0])
        pairs.append(fields[1] if spec.is_pair else None)
        rows.append(record.get("_row"))
        for key, value in zip(grouping, record_groups(grouping, record, where)):
            groups[key].append(value)
    return Split(name, origin, texts, pairs if spec.is_pair else None, labels, rows, fields=groups)


# ----------------------------------------------------------------------------------- carve
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


def load_splits(spec: TaskSpec, names: list[str], data: DataConfig, loaded: dict[str, Split]) -> dict[str, Split]:
    """The named splits read, labelled and carved; ``loaded`` caches every split built so far (updated here)."""
    needed = splits_needed(spec, names)
    carved = {c.split for c in spec.carve}
    for name in LocalSpec.SPLITS:
        if name in needed and name not in carved and name not in loaded:
            records, origin = read_records(spec, name, data)
            loaded[name] = to_split(spec, name, records, origin)
    for c in spec.carve:
        if c.split in needed and c.split not in loaded:
            loaded[c.split], loaded[c.from_split] = carve(loaded[c.from_split], c, data.split_seed)
    return {name: loaded[name] for name in names}


# ----------------------------------------------------------------------------------- limit
def limit(split: Split, count: int | None, split_seed: int) -> Split:
    """A seeded subset of ``count`` examples, in the split's order (all of them when None)."""
    if count is None or count >= len(split):
        return split
    order = list(range(len(split)))
    random.Random(f"{split_seed}:limit:{split.name}").shuffle(order)
    return split.subset(sorted(order[:count]), origin=f"{count} of {len(split)} rows of {split.origin}")


# ---------------------------------------------------------------------------------- encode
TOKEN_KEYS = ("input_ids", "token_type_ids")


def encode(split: Split, tokenizer, max_length: int, task_name: str) -> Split:
    """Tokenize the split once (in place), counting the examples truncation cut."""
    if split.encodings:
        return split
    args = (split.texts, split.pairs) if split.pairs is not None else (split.texts,)
    enc = tokenizer(*args, truncation=True, max_length=max_length, return_attention_mask=False)
    keys = [k for k in enc.keys() if k in TOKEN_KEYS]
    split.encodings = [{k: enc[k][i] for k in keys} for i in range(len(split))]
    split.truncated = count_truncated(tokenizer, enc, split.encodings, args, max_length)
    if split.truncated:
        log.warning(
            "%s/%s: %d of %d examples truncated to data.max_length=%d tokens",
            task_name,
            split.name,
            split.truncated,
            len(split),
            max_length,
        )
    return split


def count_truncated(tokenizer, enc, encodings: list[dict], args: tuple, max_length: int) -> int:
    """How many examples truncation cut: fast tokenizers record it; slow ones are asked again."""
    if getattr(enc, "encodings", None):
        return sum(bool(e.overflowing) for e in enc.encodings)
    # Only examples that reached the limit can have been cut: re-tokenize just those, untruncated.
    at_limit = [i for i, e in enumerate(encodings) if len(e["input_ids"]) >= max_length]
    if not at_limit:
        return 0
    sub = [[texts[i] for i in at_limit] for texts in args]
    full = tokenizer(*sub, truncation=False, return_attention_mask=False)["input_ids"]
    return sum(len(ids) > max_length for ids in full)
