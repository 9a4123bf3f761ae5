"""Prototype projection: tie every prototype to real training examples of its own class.

From the training split's pooled embeddings (:mod:`protolm.prototypes.features`), each prototype
keeps its M most similar examples (by the model's own similarity, restricted to the prototype's
class), scanned in chunks: memory is O(P x M) beyond the features themselves.

``link`` records the nearest examples and keeps the learned vector. ``replace`` moves each
prototype onto the pooled embedding of its nearest example (ProtoPNet's push), giving two
prototypes the same example only when a class has fewer examples than prototypes, then records
the nearest examples of the new vectors.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from protolm.config.prototypes import PROJECTION_MODES
from protolm.prototypes.features import Features
from protolm.prototypes.records import Neighbour, Projection, PrototypeRecord

log = logging.getLogger(__name__)


class StreamingTopK:
    """Per-prototype top-M (similarity, example index), updated a block of examples at a time."""

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


@dataclass
class Neighbours:
    scores: torch.Tensor  # P x M similarities (-inf: no eligible example)
    indices: torch.Tensor  # P x M positions in the split (-1: none)


@torch.no_grad()
def nearest_examples(head, features: Features, m: int, restrict_to_class: bool = True) -> Neighbours:
    """Each prototype's M most similar examples among ``features`` (of its own class when
    ``restrict_to_class`` and the task has classes)."""
    device = head.prototypes.device
    topk = StreamingTopK(head.num_prototypes, m, "cpu")
    restrict = restrict_to_class and head.num_classes > 1
    for start, rows in features.chunks():
        similarities = head.similarities(rows.to(device)).float().cpu()
        if restrict:
            labels = features.labels[start : start + len(rows)]
            eligible = labels.unsqueeze(1) == head.prototype_class.cpu().unsqueeze(0)
            similarities = similarities.masked_fill(~eligible, -torch.inf)
        topk.update(similarities, torch.arange(start, start + len(rows)))
    return Neighbours(topk.scores, topk.indices)


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


def describe(net, split, neighbours: Neighbours, top_k: int) -> list[PrototypeRecord]:
    """Per prototype: its class and its top-k nearest examples with text, label, source row, similarity."""
    names = net.config.class_names()

    def neighbour(index: int, score: float) -> Neighbour:
        label = split.labels[index]
        pair = split.pairs[index] if split.pairs is not None else None
        name = names[label] if names else None
        return Neighbour(index, split.rows[index], split.texts[index], pair, label, name, score)

    records = []
    for j in range(net.head.num_prototypes):
        c = int(net.head.prototype_class[j])
        pairs = zip(neighbours.scores[j, :top_k].tolist(), neighbours.indices[j, :top_k].tolist())
        nearest = [neighbour(index, score) for score, index in pairs if index >= 0 and score != -float("inf")]
        records.append(PrototypeRecord(j, c, names[c] if names else None, nearest))
    return records


def move_onto_examples(head, features: Features, top_k: int) -> tuple[list[int], int]:
    """ProtoPNet's push: every prototype onto the pooled embedding of its nearest example of its class."""
    # Enough candidates that every prototype of a class can get its own example.
    m = max(top_k, int(torch.bincount(head.prototype_class).max()))
    replaced_by, shared = assign_distinct(nearest_examples(head, features, m, restrict_to_class=True))
    head.set_prototypes(features.pooled[torch.tensor(replaced_by)])
    if shared:
        log.warning("projection: %d prototypes share a training example (their class has too few examples)", shared)
    return replaced_by, shared


def project(net, features: Features, split, mode: str = "link", top_k: int = 5, epoch: int | None = None) -> Projection:
    """Project the model's prototypes onto the examples of ``split`` (whose pooled embeddings are
    ``features``); returns the record and sets it as the model's ``prototypes``."""
    if mode not in PROJECTION_MODES:
        raise ValueError(f"project.mode={mode!r} is not one of {', '.join(PROJECTION_MODES)}")
    replaced_by, shared = move_onto_examples(net.head, features, top_k) if mode == "replace" else (None, 0)
    neighbours = nearest_examples(net.head, features, top_k, restrict_to_class=True)
    prototypes = describe(net, split, neighbours, top_k)
    for record, index in zip(prototypes, replaced_by or []):
        record.replaced_by = index
    projection = Projection(
        mode=mode,
        split=split.name,
        origin=split.origin,
        size=len(split),
        top_k=top_k,
        epoch=epoch,
        shared_examples=shared,
        prototypes=prototypes,
    )
    net.prototypes = projection.to_dict()
    return projection
