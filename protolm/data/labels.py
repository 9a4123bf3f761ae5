"""Labelling: a raw record's text fields and label checked and turned into a split's row, so a bad
row fails before anything else runs, naming its file and row."""

from __future__ import annotations

from collections.abc import Iterator

from protolm.config.task import TaskSpec
from protolm.data.split import GROUP
from protolm.utils.errors import DataError


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
    elif key.lstrip("-").isdecimal() and 0 <= int(key) < spec.num_classes:  # isdigit() takes '¹', int() not
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
