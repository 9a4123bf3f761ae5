"""Prototype projection: tie every prototype to real training examples of its own class.

One streaming pass over the training split keeps, for each prototype, its M most similar
examples (by the model's own similarity, restricted to the prototype's class): memory is
O(P x M) whatever the size of the training set. Under several processes each one streams its
shard, the candidates are gathered and merged identically everywhere, and rank 0 writes.

``link`` records the nearest examples and keeps the learned vector. ``replace`` moves each
prototype onto the pooled embedding of its nearest example (ProtoPNet's push), giving two
prototypes the same example only when a class has fewer examples than prototypes, then records
the nearest examples of the new vectors.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

import torch

from protolm.config import PROJECTION_MODES
from protolm.distributed import world
from protolm.inference import outputs
from protolm.progress import track

log = logging.getLogger(__name__)


class StreamingTopK:
    """Per-prototype top-M (similarity, example index), updated batch by batch."""

    def __init__(self, num_prototypes: int, m: int, device):
        self.m = m
        self.scores = torch.full((num_prototypes, m), -torch.inf, device=device)
        self.indices = torch.full((num_prototypes, m), -1, dtype=torch.long, device=device)

    def update(self, similarities: torch.Tensor, indices: torch.Tensor) -> None:
        """similarities: B x P (-inf where an example is not eligible); indices: B."""
        scores = torch.cat([self.scores, similarities.t()], dim=1)
        candidates = torch.cat([self.indices, indices.unsqueeze(0).expand(similarities.shape[1], -1)], dim=1)
        top = torch.topk(scores, min(self.m, scores.shape[1]), dim=1)
        self.scores, self.indices = top.values, torch.gather(candidates, 1, top.indices)

    def merge_processes(self) -> None:
        """Gather every process's candidates and keep the global top-M (the same on every rank)."""
        import torch.distributed as dist

        processes, _ = world()
        if processes == 1:
            return
        scores = [torch.empty_like(self.scores) for _ in range(processes)]
        indices = [torch.empty_like(self.indices) for _ in range(processes)]
        dist.all_gather(scores, self.scores.contiguous())
        dist.all_gather(indices, self.indices.contiguous())
        scores, indices = torch.cat(scores, dim=1), torch.cat(indices, dim=1)
        top = torch.topk(scores, self.m, dim=1)
        self.scores, self.indices = top.values, torch.gather(indices, 1, top.indices)


@dataclass
class Neighbours:
    scores: torch.Tensor  # P x M similarities (-inf: no eligible example)
    indices: torch.Tensor  # P x M positions in the split (-1: none)


# ------------------------------------------------------------------------------ records
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

    def to_dict(self) -> dict:
        record = {
            "prototype_id": self.prototype_id,
            "class": self.class_index,
            "class_name": self.class_name,
            "nearest": [dataclasses.asdict(n) for n in self.nearest],
        }
        # Only present when they apply, as in the records written before these types existed.
        for key in ("replaced_by", "original_id"):
            if getattr(self, key) is not None:
                record[key] = getattr(self, key)
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
        )


@dataclass
class Projection:
    """Where the prototypes were projected and onto what: ``model.projection``, prototypes.json."""

    mode: str  # link | replace
    split: str
    origin: str  # the split's source (file and rows)
    size: int  # examples streamed
    top_k: int
    epoch: int | None  # the training epoch it happened at (null: outside a fit)
    shared_examples: int  # prototypes that had to share an example (a class with too few)
    prototypes: list[PrototypeRecord] = field(default_factory=list)

    def record(self, prototype_id: int) -> PrototypeRecord | None:
        """The projected record of prototype ``prototype_id`` (None if it has none)."""
        return next((p for p in self.prototypes if p.prototype_id == prototype_id), None)

    def summary(self) -> dict:
        """Everything but the per-prototype records (what results.json keeps)."""
        return {k: v for k, v in self.to_dict().items() if k != "prototypes"}

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

    def to_dict(self) -> dict:
        """Plain types only: checkpoints are read with ``torch.load(weights_only=True)``."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "prototypes"}
        return {**fields, "prototypes": [p.to_dict() for p in self.prototypes]}

    @classmethod
    def from_dict(cls, record: dict) -> Projection:
        prototypes = [PrototypeRecord.from_dict(p) for p in record["prototypes"]]
        return cls(**{k: v for k, v in record.items() if k != "prototypes"}, prototypes=prototypes)


def projected_record(model, prototype_id: int) -> PrototypeRecord | None:
    """The projected record of one of ``model``'s prototypes; None when the model is not projected."""
    return model.projection.record(prototype_id) if model.projection is not None else None


# ---------------------------------------------------------------------------- streaming
@torch.no_grad()
def nearest_examples(
    model, datamodule, m: int, restrict_to_class: bool = True, role: str = "train", on_batch=None
) -> Neighbours:
    """Stream ``role``'s examples through the model; keep each prototype's M most similar ones.

    ``on_batch(out, batch)``, when given, sees every batch's model output (to gather other
    statistics in the same pass)."""
    head = model.head
    split = datamodule.role_split(role)
    topk = StreamingTopK(head.num_prototypes, m, model.device)
    for batch, out in outputs(model, track(datamodule.dataloader(role), f"nearest {role} examples")):
        if on_batch is not None:
            on_batch(out, batch)
        similarities = out["similarities"].float()
        if restrict_to_class and not model.regression:
            eligible = batch["labels"].unsqueeze(1) == head.prototype_class.unsqueeze(0)
            similarities = similarities.masked_fill(~eligible, -torch.inf)
        topk.update(similarities, batch["index"])
    topk.merge_processes()
    log.debug("streamed %d examples of %s for %d prototypes", len(split), role, head.num_prototypes)
    return Neighbours(topk.scores.cpu(), topk.indices.cpu())


def assign_distinct(neighbours: Neighbours) -> tuple[list[int], int]:
    """One example per prototype, distinct where possible: the most confident prototypes choose first."""
    order = torch.argsort(neighbours.scores[:, 0], descending=True).tolist()
    taken, chosen, shared = set(), [None] * len(order), 0
    for j in order:
        options = [int(i) for i, s in zip(neighbours.indices[j], neighbours.scores[j]) if i >= 0 and s > -torch.inf]
        if not options:
            raise ValueError(f"prototype {j} has no eligible training example (no example of its class?)")
        free = next((i for i in options if i not in taken), None)
        if free is None:
            free, shared = options[0], shared + 1
        taken.add(free)
        chosen[j] = free
    return chosen, shared


def pooled_embeddings(model, datamodule, indices: list[int], role: str = "train") -> torch.Tensor:
    """Pooled embeddings of the given examples of ``role``'s split, in the given order (computed on
    every process, unsharded)."""
    by_index = {}
    for batch, out in outputs(model, datamodule.dataloader(role, indices=sorted(set(indices)), shard=False)):
        for index, vector in zip(batch["index"].tolist(), out["pooled"].float()):
            by_index[index] = vector
    return torch.stack([by_index[i] for i in indices])


# ---------------------------------------------------------------------------- projecting
def describe(model, datamodule, neighbours: Neighbours, top_k: int, role: str = "train") -> list[PrototypeRecord]:
    """Per prototype: its class and its top-k nearest examples with text, label, source row, similarity."""
    split = datamodule.role_split(role)
    names = model.task_info.labels if not model.regression else None

    def neighbour(index: int, score: float) -> Neighbour:
        label = split.labels[index]
        pair = split.pairs[index] if split.pairs is not None else None
        name = names[label] if names else None
        return Neighbour(index, split.rows[index], split.texts[index], pair, label, name, score)

    records = []
    for j in range(model.head.num_prototypes):
        c = int(model.head.prototype_class[j])
        pairs = zip(neighbours.scores[j, :top_k].tolist(), neighbours.indices[j, :top_k].tolist())
        nearest = [neighbour(index, score) for score, index in pairs if index >= 0 and score != -float("inf")]
        records.append(PrototypeRecord(j, c, names[c] if names else None, nearest))
    return records


def _move_onto_examples(model, datamodule, top_k: int, role: str) -> tuple[list[int], int]:
    """ProtoPNet's push: every prototype onto the pooled embedding of its nearest example of its class."""
    head = model.head
    # Enough candidates that every prototype of a class can get its own example.
    m = max(top_k, int(torch.bincount(head.prototype_class).max()))
    candidates = nearest_examples(model, datamodule, m, restrict_to_class=True, role=role)
    replaced_by, shared = assign_distinct(candidates)
    head.set_prototypes(pooled_embeddings(model, datamodule, replaced_by, role=role))
    if shared:
        log.warning("projection: %d prototypes share a training example (their class has too few examples)", shared)
    return replaced_by, shared


def project(model, datamodule, mode: str = "link", top_k: int = 5, role: str = "train") -> Projection:
    """Project the model's prototypes onto ``role``'s examples; returns the record and sets ``model.projection``."""
    if mode not in PROJECTION_MODES:
        raise ValueError(f"project.mode={mode!r} is not one of {', '.join(PROJECTION_MODES)}")
    replaced_by, shared = _move_onto_examples(model, datamodule, top_k, role) if mode == "replace" else (None, 0)
    neighbours = nearest_examples(model, datamodule, top_k, restrict_to_class=True, role=role)
    prototypes = describe(model, datamodule, neighbours, top_k, role=role)
    for record, index in zip(prototypes, replaced_by or []):
        record.replaced_by = index
    split = datamodule.role_split(role)
    model.projection = Projection(
        mode=mode,
        split=split.name,
        origin=split.origin,
        size=len(split),
        top_k=top_k,
        epoch=int(getattr(model, "current_epoch", 0)) if getattr(model, "_trainer", None) else None,
        shared_examples=shared,
        prototypes=prototypes,
    )
    return model.projection
