"""The projection record: each prototype's class and its nearest training examples.

It travels with the model as plain JSON (the model's ``prototypes`` attribute, ``prototypes.json``
beside an export, the ``projection`` entry of a checkpoint); these types are its typed view.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass
class Neighbour:
    """A training example near a prototype, as prototypes.json and checkpoints store it."""

    index: int  # position in the projected split
    row: int | str  # where the example came from in its source file
    text: str
    text_pair: str | None
    label: int | float
    label_name: str | None  # null for a regression, or a task without label names
    similarity: float


@dataclass
class PrototypeRecord:
    """One prototype's projection: its class and its nearest examples of that class."""

    prototype_id: int
    class_index: int  # "class" in the stored record
    class_name: str | None
    nearest: list[Neighbour]
    replaced_by: int | None = None  # replace: the example the prototype was moved onto
    original_id: int | None = None  # after pruning: its id before the prototypes were renumbered
    added_from: str | None = None  # an added prototype: the text a person gave it from
    allowed: bool = False  # a person marked it valid: edits keep it as it is

    def to_dict(self) -> dict:
        record = {
            "prototype_id": self.prototype_id,
            "class": self.class_index,
            "class_name": self.class_name,
            "nearest": [dataclasses.asdict(n) for n in self.nearest],
        }
        # Only present when they apply, as in the records written before these types existed.
        for key in ("replaced_by", "original_id", "added_from"):
            if getattr(self, key) is not None:
                record[key] = getattr(self, key)
        if self.allowed:
            record["allowed"] = True
        return record

    @classmethod
    def from_dict(cls, record: dict) -> PrototypeRecord:
        return cls(
            prototype_id=record["prototype_id"],
            class_index=record["class"],
            class_name=record.get("class_name"),
            nearest=[Neighbour(**n) for n in record["nearest"]],
            replaced_by=record.get("replaced_by"),
            original_id=record.get("original_id"),
            added_from=record.get("added_from"),
            allowed=bool(record.get("allowed", False)),
        )


@dataclass
class Projection:
    """Where the prototypes were projected and onto what: the model's ``prototypes`` record, prototypes.json."""

    mode: str  # link | replace
    split: str
    origin: str  # the split's source (file and rows)
    size: int  # examples streamed
    top_k: int
    epoch: int | None  # the training epoch it happened at (null: outside a fit)
    shared_examples: int  # prototypes that had to share an example (a class with too few)
    prototypes: list[PrototypeRecord] = field(default_factory=list)
    edits: list[dict] = field(default_factory=list)  # the edit log (protolm.prototypes.edits), oldest first

    def record(self, prototype_id: int) -> PrototypeRecord | None:
        """The projected record of prototype ``prototype_id`` (None if it has none)."""
        return next((p for p in self.prototypes if p.prototype_id == prototype_id), None)

    def summary(self) -> dict:
        """Everything but the per-prototype records and the edit log (what results.json keeps)."""
        return {k: v for k, v in self.to_dict().items() if k not in ("prototypes", "edits")}

    def kept(self, keep: list[bool]) -> Projection:
        """The records of the kept prototypes, renumbered 0..n-1 as the pruned head numbers them."""
        kept = [p for p, k in zip(self.prototypes, keep) if k]
        renumbered = [
            dataclasses.replace(
                p, prototype_id=new_id, original_id=p.prototype_id if p.original_id is None else p.original_id
            )
            for new_id, p in enumerate(kept)
        ]
        return dataclasses.replace(self, prototypes=renumbered)

    TABLE_COLUMNS = ("prototype_id", "class", "nearest training example", "similarity")

    def table_rows(self) -> list[list]:
        """One row per prototype (:attr:`TABLE_COLUMNS`), e.g. for a W&B table."""
        rows = []
        for p in self.prototypes:
            nearest = p.nearest[0] if p.nearest else None
            name = p.class_name or p.class_index
            rows.append(
                [p.prototype_id, name, nearest.text if nearest else "", nearest.similarity if nearest else None]
            )
        return rows

    def to_dict(self) -> dict:
        """Plain types only: checkpoints are read with ``torch.load(weights_only=True)``."""
        fields = {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("prototypes", "edits")
        }
        record = {**fields, "prototypes": [p.to_dict() for p in self.prototypes]}
        return record | ({"edits": list(self.edits)} if self.edits else {})  # absent until a first edit

    @classmethod
    def from_dict(cls, record: dict) -> Projection:
        prototypes = [PrototypeRecord.from_dict(p) for p in record["prototypes"]]
        rest = {k: v for k, v in record.items() if k not in ("prototypes", "edits")}
        return cls(**rest, prototypes=prototypes, edits=list(record.get("edits", [])))


def projection_of(net) -> Projection | None:
    """The model's projection record, typed; None when its prototypes were never projected."""
    record = getattr(net, "prototypes", None)
    return Projection.from_dict(record) if record else None


def projected_record(net, prototype_id: int) -> PrototypeRecord | None:
    """The projected record of one of the model's prototypes; None when the model is not projected."""
    projection = projection_of(net)
    return projection.record(prototype_id) if projection is not None else None
