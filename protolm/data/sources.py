"""Reading a split: its local file, else the hub; labelled row by row and streamed into an Arrow
file that :mod:`protolm.data.cache` keeps for later runs."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import asdict
from functools import partial
from itertools import islice
from pathlib import Path

import pyarrow as pa

from protolm.config import DataConfig
from protolm.config.task import LocalSpec, TaskSpec
from protolm.data.cache import ArrowCache, digest, file_identity
from protolm.data.hub import hub_unavailable_reason, load_hub_split
from protolm.data.labels import group_fields, labelled_rows
from protolm.data.readers import read_split, source_exists
from protolm.data.split import WRITE_BATCH, Split
from protolm.utils.errors import DataError

log = logging.getLogger(__name__)


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
