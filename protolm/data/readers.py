"""Readers for the local file formats a task may name: csv, tsv, jsonl, json, fasttext, textdir.

Each reader yields records (dicts of field -> value) one at a time, each with a ``_row`` entry
saying where it came from (line number, id or archive member), so that errors and prototype
explanations can point back at the source. Line-based formats are read a line at a time, so a
file larger than memory streams through (a whole-document ``json`` file is the exception).
"""

from __future__ import annotations

import codecs
import csv
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

from protolm.config.task import LocalSpec, SplitSource
from protolm.utils.errors import DataError

csv.field_size_limit(2**31 - 1)


def undecodable(path: Path, line: int, bad: bytes, encoding: str) -> DataError:
    """The error for bytes that are not valid in the task's encoding, naming the file and the line."""
    return DataError(
        f"{path}: line {line}: bytes {bad!r} are not valid {encoding} "
        f"(set task.local.encoding, e.g. latin-1, or re-encode the file as UTF-8)"
    )


def decode_file(path: Path, encoding: str) -> str:
    """The whole file as text; a decoding error names the file and the line."""
    data = path.read_bytes()
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise undecodable(path, line, data[err.start : err.end], encoding) from None


def decoded_lines(path: Path, encoding: str) -> Iterator[str]:
    """The file's lines as text (line endings kept), read one at a time; a decoding error names
    the file and the line. An incremental decoder, so a byte-order mark is stripped once."""
    decoder = codecs.getincrementaldecoder(encoding)()
    with open(path, "rb") as file:
        for line, raw in enumerate(file, start=1):
            try:
                yield decoder.decode(raw)
            except UnicodeDecodeError as err:
                raise undecodable(path, line, raw[err.start : err.end], encoding) from None


def read_delimited(path: Path, local: LocalSpec, delimiter: str) -> Iterator[dict]:
    quoting = csv.QUOTE_NONE if local.quoting == "none" else csv.QUOTE_MINIMAL
    rows = csv.reader(decoded_lines(path, local.encoding), delimiter=delimiter, quoting=quoting)
    header = local.columns
    first_line = 1
    if local.header:
        try:
            file_header = next(rows)
        except StopIteration:
            return
        header = header or file_header
        first_line = 2
    if not header:
        raise DataError(f"{path}: task.local.header is false, so task.local.columns must name the columns")
    for line, row in enumerate(rows, start=first_line):
        if not row:
            continue
        if len(row) > len(header):
            # GLUE's RTE train.tsv has a stray empty field in one row: drop surplus empty fields.
            surplus = len(row) - len(header)
            empties = [i for i, v in enumerate(row) if v == ""]
            if len(empties) >= surplus:
                drop = set(empties[:surplus])
                row = [v for i, v in enumerate(row) if i not in drop]
        if len(row) != len(header):
            raise DataError(
                f"{path}: line {line}: {len(row)} fields where the header has {len(header)} ({', '.join(header)})"
            )
        record = dict(zip(header, row))
        record["_row"] = line
        yield record


def json_objects(lines, path: Path, keep_blank: bool = False):
    """(line number, object) for each non-blank line of a JSON-lines text, one at a time; a line
    that is not a JSON object is an error naming the file and the line. ``keep_blank``: blank lines
    too, as (line number, None), for readers whose rows are lines (batch prediction)."""
    for line, text in enumerate(lines, start=1):
        if not text.strip():
            if keep_blank:
                yield line, None
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: line {line}: not valid JSON ({err.msg})") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}: line {line}: expected a JSON object, got {type(record).__name__}")
        yield line, record


def read_jsonl(path: Path, local: LocalSpec) -> Iterator[dict]:
    for line, record in json_objects(decoded_lines(path, local.encoding), path):
        record["_row"] = line
        yield record


def read_json(path: Path, local: LocalSpec) -> list[dict]:
    """A JSON list of objects, or an object mapping id -> object (PubMedQA's layout)."""
    try:
        data = json.loads(decode_file(path, local.encoding))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: line {err.lineno}: not valid JSON ({err.msg})") from None
    if isinstance(data, dict):
        items = [({local.id_field: key, **value}, key) for key, value in data.items() if isinstance(value, dict)]
    elif isinstance(data, list):
        items = [(value, i) for i, value in enumerate(data) if isinstance(value, dict)]
    else:
        raise DataError(f"{path}: expected a JSON list of objects or an object of objects")
    return [{**record, "_row": row} for record, row in items]


def read_fasttext(path: Path, local: LocalSpec) -> Iterator[dict]:
    """Lines '__label__X<whitespace>text' -> {'label': 'X', 'text': text}."""
    for line, text in enumerate(decoded_lines(path, local.encoding), start=1):
        text = text.rstrip("\r\n")
        if not text.strip():
            continue
        head, _, rest = text.partition("\t") if "\t" in text else text.partition(" ")
        if not head.startswith("__label__"):
            raise DataError(f"{path}: line {line}: expected '__label__<label> <text>', got {text[:60]!r}")
        yield {"label": head[len("__label__") :], "text": rest.strip(), "_row": line}


def textdir_archive(path: Path, member: str, encoding: str) -> Iterator[dict]:
    """The .txt members of a tar archive under ``member``/<label>/, in archive order, one at a time."""
    folders = set()
    with tarfile.open(path) as archive:
        for entry in archive:
            if not entry.isfile() or not entry.name.endswith(".txt"):
                continue
            parts = entry.name.split("/")
            if len(parts) < 3:
                continue
            folder = "/".join(parts[:-2])
            folders.add(folder)
            if folder != member:
                continue
            raw = archive.extractfile(entry).read()
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError:
                raise DataError(f"{path}: member {entry.name}: not valid {encoding}") from None
            yield {"text": text, "label": parts[-2], "file": parts[-1], "_row": entry.name}
    if member not in folders:
        raise DataError(f"{path}: no '<label>/<name>.txt' files under {member!r}; folders: {sorted(folders)}")


def read_textdir(path: Path, local: LocalSpec, member: str | None) -> Iterator[dict]:
    """One example per .txt file, label = its folder name (IMDb's aclImdb layout).

    ``path`` is a directory or a .tar/.tar.gz archive; ``member`` the folder inside it that
    holds one sub-folder per label (e.g. aclImdb/train).
    """
    member = (member or "").strip("/")
    if not path.is_dir():
        yield from textdir_archive(path, member, local.encoding)
        return
    root = path / member
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for file in sorted(label_dir.glob("*.txt")):
            text = decode_file(file, local.encoding)
            yield {"text": text, "label": label_dir.name, "file": file.name, "_row": str(file)}


def read_ids(path: Path) -> set[str]:
    text = decode_file(path, "utf-8-sig")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return {line.strip() for line in text.splitlines() if line.strip()}
    return {str(x) for x in (data.keys() if isinstance(data, dict) else data)}


def read_split(source: SplitSource, local: LocalSpec, data_dir: Path) -> Iterator[dict]:
    """The split's records, one at a time, narrowed by its id files; an empty result is an error."""
    path = data_dir / source.path
    fmt = local.format
    if fmt in ("csv", "tsv"):
        records = read_delimited(path, local, "," if fmt == "csv" else "\t")
    elif fmt == "jsonl":
        records = read_jsonl(path, local)
    elif fmt == "json":
        records = iter(read_json(path, local))
    elif fmt == "fasttext":
        records = read_fasttext(path, local)
    else:
        records = read_textdir(path, local, source.member)
    filters = [
        (key, keep, read_ids(data_dir / getattr(source, key)))
        for key, keep in (("include_ids", True), ("exclude_ids", False))
        if getattr(source, key)
    ]
    read = kept = 0
    for record in records:
        read += 1
        if all((str(record.get(local.id_field)) in ids) == keep for _, keep, ids in filters):
            kept += 1
            yield record
    if not read:
        raise DataError(f"{path}: no examples in it (the file is empty, or holds only a header row)")
    if not kept:
        applied = "; ".join(f"{key}={data_dir / getattr(source, key)}" for key, _, _ in filters)
        raise DataError(f"{path}: no examples left after {applied}")


def source_exists(source: SplitSource, data_dir: Path) -> list[Path]:
    """The files this source needs that are missing (empty when all are there)."""
    needed = [source.path] + [p for p in (source.include_ids, source.exclude_ids) if p]
    return [data_dir / p for p in needed if not (data_dir / p).exists()]
