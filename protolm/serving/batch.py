"""Batch prediction over files of any size: read rows as a stream, classify them in chunks (sorted by
length inside a chunk, so batches carry little padding), write one output row per input row, in
input order. Memory is bounded by the chunk, not the file.

Inputs: ``.txt`` (one text per line; pair models: ``text<TAB>text_pair``), ``.csv`` (a header
naming the text column(s)), ``.jsonl`` (one object per line); blank lines are not rows, and
``row`` counts the rows that are. A byte-order mark is skipped. Outputs:
``.jsonl`` (the fields of ``Classifier.predict``, or of ``explain`` with ``explain=true``) or
``.csv`` (one ``prob_<label>`` column per class; explanations as a JSON column).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from protolm.data.readers import json_objects
from protolm.utils.errors import ConfigError, DataError
from protolm.utils.progress import counting

INPUT_FORMATS = ("txt", "csv", "jsonl")
OUTPUT_FORMATS = ("csv", "jsonl")


@dataclass
class Row:
    number: int  # 0-based position among the input's rows
    text: str
    text_pair: str | None


def file_format(path: Path, allowed: tuple[str, ...], key: str) -> str:
    suffix = path.suffix.lstrip(".").lower()
    if suffix not in allowed:
        raise ConfigError(f"{key}={path}: the file name must end in one of {', '.join('.' + a for a in allowed)}")
    return suffix


def is_unicode(text: str) -> bool:
    """Whether ``text`` is encodable text (JSON's \\ud800-style escapes can smuggle in halves of a
    surrogate pair, which tokenizers refuse)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _text(value: str, where: str) -> str:
    if not is_unicode(value):
        raise DataError(f"{where}: not valid Unicode text (a lone surrogate escape)")
    return value


def _field(record: dict, name: str, where: str) -> str:
    if name not in record:
        raise DataError(f"{where}: no field {name!r} (it has {', '.join(map(repr, record))}); set text_field=...")
    value = record[name]
    if not isinstance(value, str):
        raise DataError(f"{where}: field {name!r} must be a string, got {type(value).__name__}")
    return _text(value, where)


def read_rows(path: Path, pair: bool, text_field: str = "text", pair_field: str = "text_pair") -> Iterator[Row]:
    """The input's rows, one at a time."""
    fmt = file_format(path, INPUT_FORMATS, "input_file")
    if not path.is_file():
        raise DataError(f"input_file={path}: no such file")
    with open(path, encoding="utf-8-sig", newline="" if fmt == "csv" else None) as f:
        try:
            if fmt == "txt":
                number = 0
                for line_number, line in enumerate(f, start=1):
                    line = line.rstrip("\n").rstrip("\r")
                    if not line.strip():
                        continue
                    text, sep, second = line.partition("\t") if pair else (line, "", None)
                    if pair and not sep:
                        raise DataError(f"{path}: line {line_number}: a pair model needs 'text<TAB>text_pair'")
                    yield Row(number, text, second)
                    number += 1
            elif fmt == "csv":
                for number, record in enumerate(csv.DictReader(f)):
                    where = f"{path}: row {number + 1}"
                    second = _field(record, pair_field, where) if pair else None
                    yield Row(number, _field(record, text_field, where), second)
            else:
                for number, (line_number, record) in enumerate(json_objects(f, path)):
                    where = f"{path}: line {line_number}"
                    second = _field(record, pair_field, where) if pair else None
                    yield Row(number, _field(record, text_field, where), second)
        except UnicodeDecodeError as err:
            raise DataError(f"{path}: not valid UTF-8 (byte {err.start})") from None


def count_lines(path: Path) -> int:
    """Lines in a file, read in blocks (the progress bar's total; a CSV row may span lines)."""
    with open(path, "rb") as f:
        return sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))


def _chunks(rows: Iterator[Row], size: int) -> Iterator[list[Row]]:
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def classify_chunk(clf, chunk: list[Row], batch_size: int, explain: dict | None) -> list[dict]:
    """Outputs for a chunk of rows, in the chunk's order (computed longest first)."""
    order = sorted(range(len(chunk)), key=lambda i: -len(chunk[i].text) - len(chunk[i].text_pair or ""))
    texts = [chunk[i].text for i in order]
    pairs = [chunk[i].text_pair for i in order] if clf.text_pair else None
    if explain is not None:
        results = clf.explain(texts, pairs, batch_size=batch_size, **explain)
    else:
        results = clf.predict(texts, pairs, batch_size=batch_size)
    out = [None] * len(chunk)
    for position, result in zip(order, results):
        row = chunk[position]
        out[position] = {"row": row.number, "text": row.text, "text_pair": row.text_pair, **result}
    return out


class Writer:
    """Writes output rows to ``<output>.partial``, renamed to ``output`` once every row is written."""

    def __init__(self, path: Path, labels: list[str] | None, pair: bool):
        self.path, self.fmt = path, file_format(path, OUTPUT_FORMATS, "output")
        self.partial = path.with_name(path.name + ".partial")
        self.file = open(self.partial, "w", encoding="utf-8", newline="")
        self.columns = ["row", "text", *(["text_pair"] if pair else []), "prediction"]
        self.columns += [f"prob_{label}" for label in labels or []]
        self.csv = None

    def write(self, result: dict) -> None:
        if self.fmt == "jsonl":
            self.file.write(json.dumps(result, ensure_ascii=False) + "\n")
            return
        probs = result.get("probs") or {}
        row = {key: result.get(key) for key in self.columns if not key.startswith("prob_")}
        row |= {f"prob_{label}": p for label, p in probs.items()}
        extra = {k: v for k, v in result.items() if k not in {"row", "text", "text_pair", "prediction", "probs"}}
        if self.csv is None:
            self.columns += ["explanation"] if extra else []
            self.csv = csv.DictWriter(self.file, fieldnames=self.columns)
            self.csv.writeheader()
        if extra:
            row["explanation"] = json.dumps(extra, ensure_ascii=False)
        self.csv.writerow(row)

    def finish(self) -> None:
        if self.csv is None and self.fmt == "csv":  # an empty input still gets its header
            csv.DictWriter(self.file, fieldnames=self.columns).writeheader()
        self.file.close()
        self.partial.replace(self.path)

    def abandon(self) -> None:
        self.file.close()
        self.partial.unlink(missing_ok=True)


def predict_file(
    clf,
    input_file: Path,
    output: Path,
    batch_size: int = 32,
    chunk_size: int = 1024,
    explain: dict | None = None,
    text_field: str = "text",
    pair_field: str = "text_pair",
    progress: bool = True,
) -> int:
    """Classify every row of ``input_file`` into ``output``; returns the number of rows."""
    rows = read_rows(input_file, clf.text_pair, text_field, pair_field)
    writer = Writer(output, clf.labels, clf.text_pair)
    written = 0
    try:
        total = count_lines(input_file) if progress else None  # a second pass over the file: only for progress
        with counting("predict", total, "rows", enabled=progress) as counter:
            for chunk in _chunks(rows, chunk_size):
                for result in classify_chunk(clf, chunk, batch_size, explain):
                    writer.write(result)
                written += len(chunk)
                counter.advance(len(chunk))
    except BaseException:
        writer.abandon()
        raise
    writer.finish()
    return written
