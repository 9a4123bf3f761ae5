"""Readers for the local file formats a task may name: csv, tsv, jsonl, json, fasttext, textdir.

Each reader returns a list of records (dicts of field -> value), each with a ``_row`` entry
saying where it came from (line number, id or archive member), so that errors and prototype
explanations can point back at the source.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tarfile
from functools import lru_cache
from pathlib import Path

from protolm.data.task import LocalSpec, SplitSource
from protolm.errors import DataError

csv.field_size_limit(2**31 - 1)


def decode_file(path: Path, encoding: str) -> str:
    """The whole file as text; a decoding error names the file and the line."""
    data = path.read_bytes()
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DataError(
            f"{path}: line {line}: bytes {data[err.start : err.end]!r} are not valid {encoding} "
            f"(set task.local.encoding, e.g. latin-1, or re-encode the file as UTF-8)"
        ) from None


def read_delimited(path: Path, local: LocalSpec, delimiter: str) -> list[dict]:
    text = decode_file(path, local.encoding)
    quoting = csv.QUOTE_NONE if local.quoting == "none" else csv.QUOTE_MINIMAL
    rows = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
    header = local.columns
    records, first_line = [], 1
    if local.header:
        try:
            file_header = next(rows)
        except StopIteration:
            return []
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
        records.append(record)
    return records


def json_objects(lines, path: Path):
    """(line number, object) for each non-blank line of a JSON-lines text, one at a time; a line
    that is not a JSON object is an error naming the file and the line."""
    for line, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: line {line}: not valid JSON ({err.msg})") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}: line {line}: expected a JSON object, got {type(record).__name__}")
        yield line, record


def read_jsonl(path: Path, local: LocalSpec) -> list[dict]:
    records = []
    for line, record in json_objects(decode_file(path, local.encoding).splitlines(), path):
        record["_row"] = line
        records.append(record)
    return records


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


def read_fasttext(path: Path, local: LocalSpec) -> list[dict]:
    """Lines '__label__X<whitespace>text' -> {'label': 'X', 'text': text}."""
    records = []
    for line, text in enumerate(decode_file(path, local.encoding).splitlines(), start=1):
        if not text.strip():
            continue
        head, _, rest = text.partition("\t") if "\t" in text else text.partition(" ")
        if not head.startswith("__label__"):
            raise DataError(f"{path}: line {line}: expected '__label__<label> <text>', got {text[:60]!r}")
        records.append({"label": head[len("__label__") :], "text": rest.strip(), "_row": line})
    return records


@lru_cache(maxsize=4)
def _textdir_archive(path: str, mtime: float, encoding: str) -> dict[str, list[dict]]:
    """All .txt members of a tar archive, grouped by their top-two-level folder; read once."""
    grouped: dict[str, list[dict]] = {}
    with tarfile.open(path) as archive:
        for member in archive:
            if not member.isfile() or not member.name.endswith(".txt"):
                continue
            parts = member.name.split("/")
            if len(parts) < 3:
                continue
            raw = archive.extractfile(member).read()
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError:
                raise DataError(f"{path}: member {member.name}: not valid {encoding}") from None
            record = {"text": text, "label": parts[-2], "file": parts[-1], "_row": member.name}
            grouped.setdefault("/".join(parts[:-2]), []).append(record)
    return grouped


def read_textdir(path: Path, local: LocalSpec, member: str | None) -> list[dict]:
    """One example per .txt file, label = its folder name (IMDb's aclImdb layout).

    ``path`` is a directory or a .tar/.tar.gz archive; ``member`` the folder inside it that
    holds one sub-folder per label (e.g. aclImdb/train).
    """
    member = (member or "").strip("/")
    if path.is_dir():
        root = path / member
        records = []
        for label_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            for file in sorted(label_dir.glob("*.txt")):
                text = decode_file(file, local.encoding)
                records.append({"text": text, "label": label_dir.name, "file": file.name, "_row": str(file)})
        return records
    grouped = _textdir_archive(str(path), os.path.getmtime(path), local.encoding)
    records = [r for prefix, rows in grouped.items() if prefix == member for r in rows]
    if not records:
        raise DataError(f"{path}: no '<label>/<name>.txt' files under {member!r}; folders: {sorted(grouped)}")
    return records


def read_ids(path: Path) -> set[str]:
    text = decode_file(path, "utf-8-sig")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return {line.strip() for line in text.splitlines() if line.strip()}
    return {str(x) for x in (data.keys() if isinstance(data, dict) else data)}


def read_split(source: SplitSource, local: LocalSpec, data_dir: Path) -> list[dict]:
    path = data_dir / source.path
    fmt = local.format
    if fmt in ("csv", "tsv"):
        records = read_delimited(path, local, "," if fmt == "csv" else "\t")
    elif fmt == "jsonl":
        records = read_jsonl(path, local)
    elif fmt == "json":
        records = read_json(path, local)
    elif fmt == "fasttext":
        records = read_fasttext(path, local)
    else:
        records = read_textdir(path, local, source.member)
    if not records:
        raise DataError(f"{path}: no examples in it (the file is empty, or holds only a header row)")
    for key, keep in (("include_ids", True), ("exclude_ids", False)):
        ids_file = getattr(source, key)
        if ids_file:
            ids = read_ids(data_dir / ids_file)
            records = [r for r in records if (str(r.get(local.id_field)) in ids) == keep]
            if not records:
                raise DataError(f"{path}: no examples left after {key}={data_dir / ids_file}")
    return records


def source_exists(source: SplitSource, data_dir: Path) -> list[Path]:
    """The files this source needs that are missing (empty when all are there)."""
    needed = [source.path] + [p for p in (source.include_ids, source.exclude_ids) if p]
    return [data_dir / p for p in needed if not (data_dir / p).exists()]
