"""The task schema: what one YAML under conf/task/ may say, checked with errors that list valid keys.

A task names its local files (relative to ``data.data_dir``), the Hugging Face dataset to use
when they are absent, its text and label fields, its labels, and which split selects
checkpoints (``select_on``) and which one the results report (``report_on``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from protolm.utils.errors import ConfigError, check_choice, check_keys

log = logging.getLogger(__name__)
# A task without a validation split selects checkpoints on this share of train, carved out of it.
SELECTION_FRACTION = 0.1

FORMATS = ("csv", "tsv", "jsonl", "json", "fasttext", "textdir")
METRICS = {
    "classification": ("acc", "f1", "f1_macro", "mcc"),
    "regression": ("pearson", "spearman", "mse"),
}


@dataclass
class SplitSource:
    """Where one split's rows come from: a path, optionally narrowed.

    ``member``: a sub-folder inside a directory or .tar(.gz) archive (format textdir);
    ``include_ids`` / ``exclude_ids``: a file of ids (JSON dict keys, JSON list, or one per line)
    keeping or dropping rows by ``local.id_field``.
    """

    path: str
    member: str | None = None
    include_ids: str | None = None
    exclude_ids: str | None = None

    @classmethod
    def parse(cls, where: str, value: Any) -> SplitSource | None:
        if value is None:
            return None
        if isinstance(value, str):
            return cls(path=value)
        if isinstance(value, dict):
            check_keys(where, value, cls.__dataclass_fields__)
            if "path" not in value:
                raise ConfigError(f"{where}: missing 'path'")
            return cls(**value)
        raise ConfigError(f"{where} must be a path or a mapping with 'path', got {value!r}")


@dataclass
class LocalSpec:
    format: str = "tsv"
    train: SplitSource | None = None
    validation: SplitSource | None = None
    test: SplitSource | None = None
    columns: list[str] | None = None  # names for files without a header row
    header: bool = True
    quoting: str = "none"  # csv quoting: none (GLUE files) or minimal
    encoding: str = "utf-8-sig"  # -sig: strips a byte-order mark (GLUE's MRPC has one)
    id_field: str = "id"

    SPLITS = ("train", "validation", "test")

    @classmethod
    def parse(cls, where: str, value: dict) -> LocalSpec:
        check_keys(where, value, cls.__dataclass_fields__)
        spec = cls(**value)
        check_choice(f"{where}.format", spec.format, FORMATS)
        check_choice(f"{where}.quoting", spec.quoting, ("none", "minimal"))
        for split in cls.SPLITS:
            setattr(spec, split, SplitSource.parse(f"{where}.{split}", getattr(spec, split)))
        if spec.columns is not None:
            spec.columns = list(spec.columns)
        return spec


@dataclass
class HubSpec:
    """A Hugging Face dataset used for any split whose local file is absent."""

    path: str
    name: str | None = None
    splits: dict[str, str] = field(default_factory=lambda: {s: s for s in LocalSpec.SPLITS})
    rename: dict[str, str] = field(default_factory=dict)  # hub column -> the task's field name

    @classmethod
    def parse(cls, where: str, value: dict | None) -> HubSpec | None:
        if value is None:
            return None
        check_keys(where, value, cls.__dataclass_fields__)
        if "path" not in value:
            raise ConfigError(f"{where}: missing 'path' (a dataset id such as nyu-mll/glue)")
        spec = cls(**value)
        check_keys(f"{where}.splits", spec.splits, LocalSpec.SPLITS)
        spec.splits, spec.rename = dict(spec.splits), dict(spec.rename)
        return spec


@dataclass
class CarveSpec:
    """Carve a seeded slice out of a split into a new split (e.g. a validation slice of train).

    ``fraction`` or ``size``: how many rows the slice takes. ``group_by``: a field of the raw
    records (or a list of them) whose equal values keep rows together, on one side of the carve,
    so that e.g. every hypothesis of a premise lands on the same side; with several fields, rows
    sharing a value of any of them are one group. Whole groups are taken until the slice has at
    least the rows asked for. ``outermost``: carve only examples whose text no other example's
    text contains (SST-2: whole sentences, not their phrases); ``fraction`` then counts those.
    ``drop_contained``: drop from the source every example whose text a carved text contains, at
    whitespace-token boundaries. The carving itself is :func:`protolm.data.carving.carve`.
    """

    split: str
    from_split: str
    fraction: float | None = None
    size: int | None = None
    group_by: list[str] = field(default_factory=list)
    outermost: bool = False
    drop_contained: bool = False

    KEYS = ("split", "from", "fraction", "size", "group_by", "outermost", "drop_contained")

    @classmethod
    def parse(cls, where: str, value: dict) -> CarveSpec:
        value = dict(value)
        check_keys(where, value, cls.KEYS)
        if "split" not in value or "from" not in value:
            raise ConfigError(f"{where}: needs 'split' (new split name) and 'from' (source split)")
        spec = cls(
            split=value["split"],
            from_split=value["from"],
            fraction=value.get("fraction"),
            size=value.get("size"),
            group_by=parse_group_by(f"{where}.group_by", value.get("group_by")),
            outermost=parse_flag(f"{where}.outermost", value.get("outermost", False)),
            drop_contained=parse_flag(f"{where}.drop_contained", value.get("drop_contained", False)),
        )
        if (spec.fraction is None) == (spec.size is None):
            raise ConfigError(f"{where}: give exactly one of 'fraction' (0 < f < 1) or 'size' (>= 1)")
        if spec.fraction is not None and not 0 < spec.fraction < 1:
            raise ConfigError(f"{where}.fraction={spec.fraction} must lie in (0, 1)")
        if spec.size is not None and spec.size < 1:
            raise ConfigError(f"{where}.size={spec.size} must be >= 1")
        return spec


def parse_group_by(where: str, value: Any) -> list[str]:
    """``group_by`` as a list of field names: one name, or a list of them (absent: no grouping)."""
    if value is None:
        return []
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) and n for n in names):
        raise ConfigError(f"{where}={value!r} must name a field of the records, or list several")
    return list(names)


def parse_flag(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}={value!r} must be true or false")
    return value


@dataclass
class TaskSpec:
    name: str
    text_fields: list[str]
    label_field: str
    local: LocalSpec
    problem: str = "classification"
    labels: list[str] | None = None
    label_map: dict[str, int] | None = None
    metric: str = "acc"
    hub: HubSpec | None = None
    carve: list[CarveSpec] = field(default_factory=list)
    select_on: str = "validation"
    report_on: str = "test"

    REQUIRED = ("name", "text_fields", "label_field", "local")

    @property
    def num_classes(self) -> int:
        return 1 if self.problem == "regression" else len(self.labels)

    @property
    def is_regression(self) -> bool:
        return self.problem == "regression"

    @property
    def is_pair(self) -> bool:
        return len(self.text_fields) == 2

    def split_names(self) -> list[str]:
        names = [s for s in LocalSpec.SPLITS if getattr(self.local, s) is not None or self._from_hub(s)]
        return names + [c.split for c in self.carve if c.split not in names]

    def _from_hub(self, split: str) -> bool:
        return self.hub is not None and split in self.hub.splits

    @classmethod
    def from_config(cls, value: dict) -> TaskSpec:
        where = f"task {value.get('name', '?')}"
        check_keys(where, value, cls.__dataclass_fields__)
        missing = [k for k in cls.REQUIRED if k not in value]
        if missing:
            raise ConfigError(f"{where}: missing required key(s) {', '.join(missing)}")
        value = dict(value)
        value["local"] = LocalSpec.parse("task.local", dict(value["local"]))
        value["hub"] = HubSpec.parse("task.hub", value.get("hub") and dict(value["hub"]))
        value["carve"] = [CarveSpec.parse(f"task.carve[{i}]", dict(c)) for i, c in enumerate(value.get("carve") or [])]
        spec = cls(**value)
        if "select_on" not in value and spec.select_on not in spec.split_names() and "train" in spec.split_names():
            # No validation split and none named for selection: select on a seeded slice of train.
            spec.carve.append(CarveSpec(split=spec.select_on, from_split="train", fraction=SELECTION_FRACTION))
            log.info(
                "task %s has no %s split: checkpoints are selected on a seeded %d %% slice carved from train "
                "(set task.select_on, or task.carve, to choose another)",
                spec.name,
                spec.select_on,
                round(100 * SELECTION_FRACTION),
            )
        spec._validate()
        return spec

    def _validate(self):
        check_choice("task.problem", self.problem, METRICS)
        check_choice("task.metric", self.metric, METRICS[self.problem])
        if isinstance(self.text_fields, str):
            self.text_fields = [self.text_fields]
        self.text_fields = list(self.text_fields)
        if not 1 <= len(self.text_fields) <= 2:
            raise ConfigError(f"task.text_fields={self.text_fields} must name one or two fields")
        if self.problem == "classification":
            if not self.labels or len(self.labels) < 2:
                raise ConfigError("task.labels must list at least two class names (or set task.problem=regression)")
            self.labels = [str(x) for x in self.labels]
        elif self.labels:
            raise ConfigError("task.labels must be empty for task.problem=regression")
        if self.label_map is not None:
            self.label_map = {str(k): int(v) for k, v in self.label_map.items()}
            bad = {k: v for k, v in self.label_map.items() if not 0 <= v < self.num_classes}
            if bad:
                raise ConfigError(f"task.label_map: targets {bad} are outside 0..{self.num_classes - 1}")
        known = self.split_names()
        for i, carve in enumerate(self.carve):
            if carve.from_split not in known:
                raise ConfigError(f"task.carve: source split {carve.from_split!r} is not one of {known}")
            # Containment is between whole texts; a pair's two texts give no one text to compare.
            for option in ("outermost", "drop_contained"):
                if getattr(carve, option) and self.is_pair:
                    raise ConfigError(
                        f"task.carve[{i}].{option} needs a task with one text field, not {self.text_fields}"
                    )
        for key in ("select_on", "report_on"):
            if getattr(self, key) not in known:
                raise ConfigError(f"task.{key}={getattr(self, key)!r} is not one of the task's splits {known}")
        if self.select_on == self.report_on:
            raise ConfigError(
                f"task.select_on and task.report_on are both {self.select_on!r}: selecting checkpoints "
                "on the split you report leaks it; carve a validation slice from train instead"
            )
