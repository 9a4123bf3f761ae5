"""Batch prediction over files of any size: read rows as a stream, classify them in chunks (sorted by
length inside a chunk, so batches carry little padding), write one output row per input row, in
input order. Memory is bounded by the chunk, not the file.

Inputs: ``.txt`` (one text per line; pair models: ``text<TAB>text_pair``), ``.csv`` (a header
naming the text column(s)), ``.jsonl`` (one object per line). Every line of a ``.txt`` or
``.jsonl`` and every record of a ``.csv`` is a row, blank ones included, so ``row`` (from 0) is
the line (the record) it answers. A row with no text (empty or only whitespace) is not classified:
it is written with ``empty`` true and no prediction. A text longer than the model reads is
classified on its beginning and written as the model read it, with ``truncated`` true. A
byte-order mark is skipped. Outputs: ``.jsonl`` (the fields of ``Classifier.predict``, or of
``explain`` with ``explain=true``) or ``.csv`` (one ``prob_<label>`` column per class;
explanations as a JSON column). Rows are kept as they are written (:mod:`protolm.serving.partial`):
an interrupted run loses at most the chunk in progress, and the same command run again goes on
from there.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from protolm.data.readers import json_objects
from protolm.modeling.inference import read_parts
from protolm.serving.partial import PartialOutput
from protolm.utils.errors import ConfigError, DataError, ProtoLMError
from protolm.utils.progress import counting

log = logging.getLogger(__name__)

INPUT_FORMATS = ("txt", "csv", "jsonl")
OUTPUT_FORMATS = ("csv", "jsonl")


@dataclass
class Row:
    number: int  # 0-based position among the input's rows (its line in a .txt or .jsonl)
    text: str
    text_pair: str | None

    @property
    def empty(self) -> bool:
        """No text to classify: the text, or the pair's second text, is empty or only whitespace."""
        return not self.text.strip() or (self.text_pair is not None and not self.text_pair.strip())


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during batch prediction, with what was kept and how to go on (still a KeyboardInterrupt)."""


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


def _blank(number: int, pair: bool) -> Row:
    return Row(number, "", "" if pair else None)


def _txt_rows(f, path: Path, pair: bool) -> Iterator[Row]:
    for number, line in enumerate(f):
        line = line.rstrip("\n").rstrip("\r")
        if not line.strip():
            yield _blank(number, pair)
            continue
        text, sep, second = line.partition("\t") if pair else (line, "", None)
        if pair and not sep:
            raise DataError(f"{path}: line {number + 1}: a pair model needs 'text<TAB>text_pair'")
        yield Row(number, text, second)


def _csv_rows(f, path: Path, pair: bool, text_field: str, pair_field: str) -> Iterator[Row]:
    reader = csv.reader(f)
    header = next(reader, None) or []
    for number, values in enumerate(reader):
        where = f"{path}: row {number + 1}"
        if not values:  # a blank line
            yield _blank(number, pair)
            continue
        if len(values) != len(header):
            raise DataError(f"{where}: {len(values)} values, but the header names {len(header)} columns")
        record = dict(zip(header, values))
        yield Row(number, _field(record, text_field, where), _field(record, pair_field, where) if pair else None)


def _jsonl_rows(f, path: Path, pair: bool, text_field: str, pair_field: str) -> Iterator[Row]:
    for line_number, record in json_objects(f, path, keep_blank=True):
        if record is None:
            yield _blank(line_number - 1, pair)
            continue
        where = f"{path}: line {line_number}"
        second = _field(record, pair_field, where) if pair else None
        yield Row(line_number - 1, _field(record, text_field, where), second)


def read_rows(path: Path, pair: bool, text_field: str = "text", pair_field: str = "text_pair") -> Iterator[Row]:
    """The input's rows, one at a time."""
    fmt = file_format(path, INPUT_FORMATS, "input_file")
    if not path.is_file():
        raise DataError(f"input_file={path}: no such file")
    with open(path, encoding="utf-8-sig", newline="" if fmt == "csv" else None) as f:
        try:
            if fmt == "txt":
                yield from _txt_rows(f, path, pair)
            elif fmt == "csv":
                yield from _csv_rows(f, path, pair, text_field, pair_field)
            else:
                yield from _jsonl_rows(f, path, pair, text_field, pair_field)
        except UnicodeDecodeError as err:
            raise DataError(f"{path}: not valid UTF-8 (byte {err.start})") from None


class RowStream:
    """The input's rows, counted and digested as they are read: a resumed run checks that its input
    still begins with the rows an earlier run answered."""

    def __init__(self, rows: Iterator[Row]):
        self.rows, self.count, self.hash = rows, 0, hashlib.sha256()

    def __iter__(self) -> RowStream:
        return self

    def __next__(self) -> Row:
        row = next(self.rows)
        self.hash.update(json.dumps([row.text, row.text_pair]).encode("ascii") + b"\n")
        self.count += 1
        return row

    def digest(self) -> str:
        return self.hash.hexdigest()


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


def _output_row(clf, row: Row, result: dict | None) -> dict:
    """One output row: the input's row number and texts (as the model read them), then the result."""
    if result is None:  # no text: not classified
        found = {"prediction": None, "probs": None, "truncated": False}
        return {"row": row.number, "text": row.text, "text_pair": row.text_pair, **found, "empty": True}
    text, pair = row.text, row.text_pair
    if result.get("truncated"):  # what the model read, not the whole (possibly megabytes long) text
        text, pair = read_parts(clf.tokenizer, text, pair, clf.max_length)
    rest = {k: v for k, v in result.items() if k not in ("text", "text_pair")}
    return {"row": row.number, "text": text, "text_pair": pair, **rest, "empty": False}


def classify_chunk(clf, chunk: list[Row], batch_size: int, explain: dict | None) -> list[dict]:
    """Outputs for a chunk of rows, in the chunk's order (computed longest first); rows without text
    are not given to the model."""
    order = [i for i in range(len(chunk)) if not chunk[i].empty]
    order.sort(key=lambda i: -len(chunk[i].text) - len(chunk[i].text_pair or ""))
    texts = [chunk[i].text for i in order]
    pairs = [chunk[i].text_pair for i in order] if clf.text_pair else None
    results = []
    if explain is not None and order:
        results = clf.explain(texts, pairs, batch_size=batch_size, **explain)
    elif order:
        results = clf.predict(texts, pairs, batch_size=batch_size)
    by_position = dict(zip(order, results))
    return [_output_row(clf, row, by_position.get(i)) for i, row in enumerate(chunk)]


class Layout:
    """How output rows are written: one JSON object a line, or CSV columns (``row``, ``text``,
    [``text_pair``], ``prediction``, ``prob_<label>``..., ``truncated``, ``empty``, [``explanation``])."""

    def __init__(self, path: Path, labels: list[str] | None, pair: bool, explain: bool):
        self.fmt = file_format(path, OUTPUT_FORMATS, "output")
        self.columns = ["row", "text", *(["text_pair"] if pair else []), "prediction"]
        self.columns += [f"prob_{label}" for label in labels or []]
        self.columns += ["truncated", "empty", *(["explanation"] if explain else [])]

    def header(self) -> str:
        return self._csv([self.columns]) if self.fmt == "csv" else ""

    def lines(self, results: list[dict]) -> str:
        if self.fmt == "jsonl":
            return "".join(json.dumps(result, ensure_ascii=False) + "\n" for result in results)
        return self._csv([self._cells(result) for result in results])

    def _cells(self, result: dict) -> list:
        probs = result.get("probs") or {}
        shown = {"row", "text", "text_pair", "prediction", "probs", "truncated", "empty"}
        extra = {k: v for k, v in result.items() if k not in shown}
        cells = {**result, **{f"prob_{label}": p for label, p in probs.items()}}
        cells["explanation"] = json.dumps(extra, ensure_ascii=False) if extra else None
        return [cells.get(column) for column in self.columns]

    @staticmethod
    def _csv(rows: list[list]) -> str:
        buffer = io.StringIO()
        csv.writer(buffer).writerows(rows)
        return buffer.getvalue()


def _settings(clf, explain: dict | None, text_field: str, pair_field: str) -> dict:
    """What decides the output rows besides the input: a run goes on from an earlier one's rows only
    when these are the same (the model file's modification time: a model trained again is another)."""
    source = Path(clf.source)
    modified = source.stat().st_mtime_ns if source.exists() else None
    model = str(source.resolve()) if source.exists() else clf.source
    return {"model": model, "model_modified": modified, "explain": explain, "text_field": text_field,
            "text_pair_field": pair_field}  # fmt: skip


def _resume(partial: PartialOutput, open_rows, overwrite: bool) -> tuple[dict | None, RowStream]:
    """(the record of the earlier run to go on from, or None; the input's rows after the ones it answered)."""
    rows = RowStream(open_rows())
    record = partial.earlier(overwrite)
    if record is None:
        return None, rows
    for _ in islice(rows, record["rows"]):
        pass
    if rows.count == record["rows"] and rows.digest() == record["digest"]:
        log.warning("%s: going on from row %d (the rows before it were written by an earlier run)",
                    partial.output, record["rows"])  # fmt: skip
        return record, rows
    if not overwrite:
        raise DataError(
            f"{partial.path} holds the first {record['rows']} rows of an earlier run of this command, but "
            "input_file no longer begins with the rows they answer: restore it, or pass overwrite=true to start again"
        )
    return None, RowStream(open_rows())


def _report(empty: list[int], truncated: int, max_length: int) -> None:
    if empty:
        log.warning("%d row(s) have no text (empty or only whitespace; the first is row %d): written with "
                    "empty=true and no prediction", len(empty), empty[0])  # fmt: skip
    if truncated:
        log.warning("%d row(s) are longer than the model reads (%d tokens): classified on their beginning, "
                    "written as the model read them with truncated=true", truncated, max_length)  # fmt: skip


def _write_predictions(clf, rows: RowStream, partial: PartialOutput, layout: Layout, options: dict) -> None:
    empty, truncated = [], 0
    total = count_lines(options["input_file"]) if options["progress"] else None  # a second pass: progress only
    with counting("predict", total, "rows", enabled=options["progress"]) as bar:
        bar.advance(partial.rows)  # a resumed run starts where the kept rows end
        for chunk in _chunks(rows, options["chunk_size"]):
            results = classify_chunk(clf, chunk, options["batch_size"], options["explain"])
            partial.append(layout.lines(results))
            partial.checkpoint(rows.count, rows.digest())
            empty += [r["row"] for r in results if r["empty"]]
            truncated += sum(bool(r["truncated"]) for r in results)
            bar.advance(len(chunk))
    _report(empty, truncated, clf.max_length)


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
    overwrite: bool = False,
) -> int:
    """Classify every row of ``input_file`` into ``output``; returns the number of rows. An earlier,
    interrupted run of the same command is gone on from (``overwrite``: start again whatever it was)."""
    layout = Layout(output, clf.labels, clf.text_pair, explain is not None)
    options = {"input_file": input_file, "batch_size": batch_size, "chunk_size": chunk_size, "explain": explain,
               "progress": progress}  # fmt: skip
    with PartialOutput(output, _settings(clf, explain, text_field, pair_field)) as partial:
        record, rows = _resume(partial, lambda: read_rows(input_file, clf.text_pair, text_field, pair_field), overwrite)
        partial.start(record, layout.header())
        try:
            _write_predictions(clf, rows, partial, layout, options)
        except KeyboardInterrupt:
            raise Interrupted(_kept(partial)) from None
        except ProtoLMError as err:
            if partial.rows:
                raise type(err)(f"{err} ({_kept(partial)})") from None
            raise
        partial.finish()
    return partial.rows


def _kept(partial: PartialOutput) -> str:
    if not partial.rows:
        return "no row was finished"
    return (
        f"the first {partial.rows} rows are kept in {partial.path}: "
        f"run the same command again to go on from row {partial.rows}"
    )
