"""Building a task's splits from its spec, as plain functions: read -> label -> carve -> limit -> encode.

Read: each split from its local file, else the hub. Label: text fields and labels checked and
labels turned into indices, so a bad row fails before anything else runs, naming its file and
row. Carve: seeded slices of a split become splits of their own (e.g. a validation slice of
train), by rows or by whole groups of related rows (:mod:`protolm.data.carving`). Limit: a
seeded subset (``data.max_*_samples``). Encode: tokenized in batches, truncation counted.

A split is an Arrow table read through ``datasets`` (memory-mapped, not a Python list): reading
streams each file into one, carving and limiting select rows of it, encoding writes a new one.
:mod:`protolm.data.cache` keeps what reading and encoding write, so later runs skip both.

Carving and limiting are seeded by ``data.split_seed`` and the split's name only, never by the
run's seed, so every run of a sweep sees the same examples in the same order.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from functools import cached_property, partial
from itertools import islice
from pathlib import Path

import pyarrow as pa

from protolm.config import DataConfig
from protolm.data.cache import ArrowCache, digest, file_identity
from protolm.data.carving import carve
from protolm.data.hub import hub_unavailable_reason, load_hub_split
from protolm.data.readers import read_split, source_exists
from protolm.data.task import LocalSpec, TaskSpec
from protolm.errors import DataError

log = logging.getLogger(__name__)

GROUP = "group:"  # column-name prefix of the raw values that carves group by
TOKEN_KEYS = ("input_ids", "token_type_ids")
WRITE_BATCH = 10_000  # rows per Arrow record batch while reading a file


@dataclass
class Split:
    """One split's examples, in a fixed order, as an Arrow-backed ``datasets.Dataset``.

    Columns: ``text``, ``pair`` (pair tasks), ``label`` (a class index or a float), ``row`` (where
    the example came from), ``group:<field>`` (raw values carves group by); once encoded,
    ``input_ids`` (and ``token_type_ids``), ``length`` and ``truncated``.
    """

    name: str
    origin: str
    dataset: object  # datasets.Dataset
    truncated: int = 0
    fingerprint: str | None = None  # of the examples as used, for the training role (see examples_digest)

    @classmethod
    def from_lists(cls, name: str, origin: str, texts: list[str], pairs: list[str] | None, labels: list, rows: list):
        """A split of examples held in memory (e.g. built by a test or a caller), not yet encoded."""
        import datasets

        columns = {"text": texts, **({"pair": pairs} if pairs is not None else {}), "label": labels, "row": rows}
        return cls(name, origin, datasets.Dataset.from_dict(columns))

    def __len__(self) -> int:
        return self.dataset.num_rows

    @property
    def texts(self):
        """The first texts: a lazy column (index, slice, iterate, compare with a list)."""
        return self.dataset["text"]

    @property
    def pairs(self):
        return self.dataset["pair"] if "pair" in self.dataset.column_names else None

    @property
    def rows(self):
        return self.dataset["row"]

    @cached_property
    def labels(self) -> list:
        return self.column("label")

    @cached_property
    def lengths(self) -> list[int]:
        """Tokens per example (encoded splits)."""
        return self.column("length")

    def field(self, name: str) -> list[str]:
        """The raw values of a carve's ``group_by`` field, one per example."""
        return self.column(GROUP + name)

    def column(self, name: str) -> list:
        """A whole column as a Python list, converted by Arrow (iterating ``datasets``' lazy column
        converts row by row: about 13 s for a million labels against 0.06 s)."""
        return self.dataset.with_format("arrow")[name].to_pylist()

    def encoding(self, i: int) -> dict:
        """Example ``i``'s token ids: ``input_ids`` (and ``token_type_ids``)."""
        row = self.dataset.select_columns(self.token_keys)[i]
        return {key: row[key] for key in self.token_keys}

    @property
    def token_keys(self) -> list[str]:
        return [key for key in TOKEN_KEYS if key in self.dataset.column_names]

    def subset(self, indices: list[int], name: str | None = None, origin: str | None = None) -> Split:
        return Split(name or self.name, origin or self.origin, self.dataset.select(indices))


# ------------------------------------------------------------------------------------ read
def resolve_source(
    spec: TaskSpec, name: str, data: DataConfig, streaming: bool = False
) -> tuple[list, str, Callable[[], Iterator[dict]]]:
    """(identity, origin, records) of a split read from its local file, else the hub (streamed
    from it when ``streaming``).

    The identity says when the content changed (for the cache key); ``records()`` yields the raw
    records (a partial, not a closure: a data module keeping it still pickles, as ``ddp_spawn``
    needs). A split found nowhere is an error that says where it looked and how to fix it.
    """
    data_dir = Path(data.data_dir).expanduser()
    source = getattr(spec.local, name)
    tried = []
    if source is not None:
        missing = source_exists(source, data_dir)
        if not missing:
            files = [source.path] + [p for p in (source.include_ids, source.exclude_ids) if p]
            identity = ["local", asdict(source), [file_identity(data_dir / f) for f in files]]
            return identity, source.path, partial(read_split, source, spec.local, data_dir)
        tried += [str(p) for p in missing]
    hub = spec.hub
    if hub is not None and name in hub.splits:
        reason = hub_unavailable_reason(data.hub, data.hub_timeout_s)
        if reason is None:
            log.info("task %s: reading split %s from the hub (%s %s)", spec.name, name, hub.path, hub.name or "")
            dataset = load_hub_split(hub, name, streaming)
            origin = f"hub:{hub.path}/{hub.name or ''}[{hub.splits[name]}]"
            version = None if streaming else dataset._fingerprint
            return ["hub", asdict(hub), version], origin, partial(hub_records, hub, dataset)
        tried.append(f"hub {hub.path} {hub.name or ''} (not used: {reason})")
    what = f"split {name!r} of task {spec.name}"
    if not tried:
        raise DataError(f"{what}: the task config names no local file or hub split for it")
    raise DataError(
        f"{what} not found. Tried: {'; '.join(tried)}. Point data.data_dir=/path/to/data "
        f"(or the PROTOLM_DATA_DIR variable) at the folder that holds it, or set "
        f"task.local.{name}=<path relative to data.data_dir>"
    )


Source = tuple[list, str, Callable[[], Iterator[dict]]]  # what resolve_source returns


def source_of(spec: TaskSpec, name: str, data: DataConfig, sources: dict[str, Source] | None) -> Source:
    """:func:`resolve_source`, once per split for a caller that keeps ``sources`` (updated here): the
    cache key of every role and the reading of the split both need it, and resolving may walk a
    text directory or load a hub dataset."""
    if sources is None:
        return resolve_source(spec, name, data)
    if name not in sources:
        sources[name] = resolve_source(spec, name, data)
    return sources[name]


def hub_records(hub, dataset) -> Iterator[dict]:
    for i, row in enumerate(dataset):
        record = {hub.rename.get(k, k): v for k, v in row.items()}  # hub ClassLabels: ints in the task's order
        record["_row"] = i
        yield record


def reading_settings(spec: TaskSpec, name: str) -> dict:
    """What decides a split's labelled rows besides its file: read from the task spec."""
    local = {k: v for k, v in asdict(spec.local).items() if k not in LocalSpec.SPLITS}
    keys = ("text_fields", "label_field", "labels", "label_map", "problem")
    return {"local": local, **{k: getattr(spec, k) for k in keys}, "groups": group_fields(spec, name)}


def read(spec: TaskSpec, name: str, data: DataConfig, cache: ArrowCache, sources: dict | None = None) -> Split:
    """The split read and labelled, from the cache when its file and reading settings are unchanged."""
    identity, origin, records = source_of(spec, name, data, sources)

    def build(path: Path) -> dict:
        write_arrow(path, labelled_rows(spec, name, records(), origin), origin)
        return {"origin": origin}

    dataset, meta = cache.entry("split", digest(["split", name, identity, reading_settings(spec, name)]), build)
    return Split(name, meta["origin"], dataset)


def write_arrow(path: Path, rows: Iterator[dict], source: str) -> int:
    """Stream ``rows`` (dicts with the same keys) read from ``source`` into an Arrow file, a batch at a
    time; the row count."""
    rows = iter(rows)
    first = next(rows, None)
    if first is None:
        raise DataError(f"{source}: no examples in it")
    fields = [(key, arrow_type(key, value)) for key, value in first.items()]
    schema = pa.schema(fields)
    as_text = [key for key, kind in fields if kind == pa.string()]
    written = 0
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        batch = [first]
        while batch:
            for row in batch:  # e.g. json ids: some files key rows by name, some by position
                for key in as_text:
                    if not isinstance(row[key], str):
                        row[key] = str(row[key])
            writer.write_batch(pa.RecordBatch.from_pylist(batch, schema=schema))
            written += len(batch)
            batch = list(islice(rows, WRITE_BATCH))
    return written


def arrow_type(key: str, value) -> pa.DataType:
    if key == "label":
        return pa.float64() if isinstance(value, float) else pa.int64()
    if key == "row" and isinstance(value, int):
        return pa.int64()
    return pa.string()


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


def labelled_rows(spec: TaskSpec, name: str, records: Iterator[dict], origin: str) -> Iterator[dict]:
    """Raw records as a split's rows; any bad row fails here, naming its file and row."""
    grouping = group_fields(spec, name)
    for record in records:
        where = f"{origin}: row {record.get('_row')}"
        fields = record_texts(spec, record, where)
        if spec.label_field not in record:
            raise DataError(f"{where}: no label field {spec.label_field!r}")
        row = {"text": fields[0]}
        if spec.is_pair:
            row["pair"] = fields[1]
        row["label"] = label_index(spec, record[spec.label_field], where)
        row["row"] = record.get("_row")
        for key, value in zip(grouping, record_groups(grouping, record, where)):
            row[GROUP + key] = value
        yield row


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


# ----------------------------------------------------------------------------------- limit
def limit(split: Split, count: int | None, split_seed: int) -> Split:
    """A seeded subset of ``count`` examples, in the split's order (all of them when None)."""
    if count is None or count >= len(split):
        return split
    order = list(range(len(split)))
    random.Random(f"{split_seed}:limit:{split.name}").shuffle(order)
    return split.subset(sorted(order[:count]), origin=f"{count} of {len(split)} rows of {split.origin}")


# ---------------------------------------------------------------------------------- encode
def source_identities(spec: TaskSpec, name: str, data: DataConfig, sources: dict | None = None) -> dict[str, list]:
    """The identity of every file (or hub split) that split ``name`` is read or carved from or with."""
    carved = {c.split for c in spec.carve}
    needed = sorted(s for s in splits_needed(spec, [name]) if s not in carved)
    return {s: source_of(spec, s, data, sources)[0] for s in needed}


def role_key(
    spec: TaskSpec, name: str, count: int | None, data: DataConfig, tokenizer_id: str, sources: dict | None = None
) -> str:
    """The cache key of split ``name`` limited to ``count`` and encoded: everything its tokens depend on
    (``tokenizer_id``: :func:`~protolm.data.cache.tokenizer_identity` of the tokenizer; ``sources``:
    as :func:`source_of` keeps them)."""
    return digest(
        [
            "role",
            asdict(spec),
            name,
            source_identities(spec, name, data, sources),
            data.split_seed,
            count,
            tokenizer_id,
            data.max_length,
        ]
    )


def encode(split: Split, tokenizer, max_length: int, path: Path) -> Split:
    """The split tokenized in batches into the Arrow file ``path``; truncation counted."""
    pair = split.pairs is not None

    def tokenize(batch: dict) -> dict:
        args = (batch["text"], batch["pair"]) if pair else (batch["text"],)
        enc, out = token_ids(tokenizer, args, max_length)
        out["length"] = [len(ids) for ids in enc["input_ids"]]
        out["truncated"] = truncated_flags(tokenizer, enc, args, max_length)
        return out

    dataset = split.dataset.map(
        tokenize,
        batched=True,
        remove_columns=[c for c in split.dataset.column_names if c.startswith(GROUP)],
        cache_file_name=str(path),
        load_from_cache_file=False,
        new_fingerprint=hashlib.sha256(str(path).encode()).hexdigest()[:16],  # not a hash of the tokenizer
        desc=f"tokenizing {split.name}",
    )
    encoded = Split(split.name, split.origin, dataset)
    encoded.truncated = sum(encoded.column("truncated"))
    return encoded


def token_ids(tokenizer, args: tuple, max_length: int) -> tuple[object, dict[str, list]]:
    """Texts (and pairs) tokenized as every split is, truncated to ``max_length``: the tokenizer's
    encoding and its id columns (``input_ids``, and ``token_type_ids`` where the tokenizer makes them)."""
    enc = tokenizer(*args, truncation=True, max_length=max_length, return_attention_mask=False)
    return enc, {key: enc[key] for key in enc.keys() if key in TOKEN_KEYS}


def truncated_flags(tokenizer, enc, args: tuple, max_length: int) -> list[bool]:
    """Which examples truncation cut: fast tokenizers record it; slow ones are asked again."""
    if getattr(enc, "encodings", None):
        return [bool(e.overflowing) for e in enc.encodings]
    # Only examples that reached the limit can have been cut: re-tokenize just those, untruncated.
    flags = [False] * len(enc["input_ids"])
    at_limit = [i for i, ids in enumerate(enc["input_ids"]) if len(ids) >= max_length]
    if at_limit:
        sub = [[texts[i] for i in at_limit] for texts in args]
        full = tokenizer(*sub, truncation=False, return_attention_mask=False)["input_ids"]
        for i, ids in zip(at_limit, full):
            flags[i] = len(ids) > max_length
    return flags


def examples_digest(split: Split) -> str:
    """A digest of the examples as used (texts, pairs, labels, in order), streamed over the table:
    the sha256 of each of the three JSON lists in turn, as ``json.dumps`` of whole lists writes them."""
    hasher = hashlib.sha256()
    for column in ("text", "pair", "label"):
        hasher.update(b"[")
        if column in split.dataset.column_names:
            first = True
            for batch in split.dataset.select_columns([column]).iter(batch_size=WRITE_BATCH):
                for value in batch[column]:
                    hasher.update(((", " if not first else "") + json.dumps(value, ensure_ascii=False)).encode())
                    first = False
        hasher.update(b"]")
    return hasher.hexdigest()
