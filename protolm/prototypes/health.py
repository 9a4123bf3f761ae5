"""Prototype health: usage, dead prototypes, duplicates, class purity, pruning, and a 2-D map."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import torch

from protolm.prototypes.features import Features
from protolm.prototypes.projection import nearest_examples
from protolm.prototypes.records import projection_of

log = logging.getLogger(__name__)


@dataclass
class PrototypeHealth:
    prototype_id: int
    class_index: int  # "class" in health.json
    nearest_count: int  # examples whose most similar prototype this is
    top_contributor_count: int  # examples whose predicted class it contributes most to
    dead: bool  # neither, on any example
    # Share of its k nearest training examples (any class, its replace anchor excluded) in its
    # class; None for a regression.
    purity: float | None
    shares_nearest_example_with: list[int]  # prototypes anchored on the same example
    near_identical_to: list[int]  # prototypes at least duplicate_cosine cosine-similar

    def to_dict(self) -> dict:
        record = dataclasses.asdict(self)
        return {"prototype_id": record.pop("prototype_id"), "class": record.pop("class_index"), **record}


@dataclass
class HealthSummary:
    prototypes: int
    dead: int
    sharing_a_nearest_example: int
    near_identical: int
    mean_purity: float | None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class HealthReport:
    """Per-prototype health and its summary (health.json)."""

    usage_split: str
    usage_examples: int
    purity_k: int
    purity_excludes_anchor: bool  # a replace projection: each prototype's own example is not counted
    duplicate_cosine: float
    summary: HealthSummary
    prototypes: list[PrototypeHealth]

    def to_dict(self) -> dict:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return fields | {"summary": self.summary.to_dict(), "prototypes": [p.to_dict() for p in self.prototypes]}


@dataclass
class PruneResult:
    """What pruning removed (ids before renumbering) and how many prototypes remain."""

    min_purity: float
    k: int  # the purity's neighbourhood size
    removed: list[int]
    remaining: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def usage_counts(head, features: Features) -> tuple[torch.Tensor, torch.Tensor]:
    """Per prototype: how often it is the nearest prototype, and the top contributor to the
    predicted class (similarity x last-layer weight), over the examples of ``features``."""
    device = head.prototypes.device
    weights = head.last_layer.weight.detach().float()
    nearest = torch.zeros(head.num_prototypes, dtype=torch.long)
    top = torch.zeros(head.num_prototypes, dtype=torch.long)
    for _, rows in features.chunks():
        sims = head.similarities(rows.to(device)).float()
        if head.num_classes == 1:
            predicted = torch.zeros(len(sims), dtype=torch.long, device=sims.device)
        else:
            predicted = head.logits_from_similarities(sims).argmax(-1)
        nearest += torch.bincount(sims.argmax(1), minlength=head.num_prototypes).cpu()
        top += torch.bincount((sims * weights[predicted]).argmax(1), minlength=head.num_prototypes).cpu()
    return nearest, top


def _purity(labels: list, indices: list[int], class_index: int, anchor: int | None, k: int) -> float | None:
    """Share of the k nearest examples other than ``anchor`` that are of ``class_index``. A prototype
    sitting on its anchor has it as its nearest example, of its class by construction: counting
    it would add a point of purity that says nothing about the neighbourhood."""
    nearest = [i for i in indices if i >= 0 and i != anchor][:k]
    return sum(labels[i] == class_index for i in nearest) / len(nearest) if nearest else None


def _anchors(head, projection, neighbour_indices: torch.Tensor) -> list[int]:
    """A prototype's anchor: its nearest example of its class from the projection when there is one,
    else its nearest example of any class. Prototypes sharing an anchor are duplicates."""
    anchors = []
    for j in range(head.num_prototypes):
        record = projection.record(j) if projection is not None else None
        anchors.append(record.nearest[0].index if record and record.nearest else int(neighbour_indices[j, 0]))
    return anchors


def _near_identical(head, duplicate_cosine: float) -> list[list[int]]:
    vectors = torch.nn.functional.normalize(head.prototypes.detach().float().cpu(), dim=1)
    cosine = vectors @ vectors.t()
    cosine.fill_diagonal_(-1)
    return [torch.nonzero(row >= duplicate_cosine).flatten().tolist() for row in cosine]


def _summary(rows: list[PrototypeHealth]) -> HealthSummary:
    purities = [r.purity for r in rows if r.purity is not None]
    return HealthSummary(
        prototypes=len(rows),
        dead=sum(r.dead for r in rows),
        sharing_a_nearest_example=sum(bool(r.shares_nearest_example_with) for r in rows),
        near_identical=sum(bool(r.near_identical_to) for r in rows),
        mean_purity=sum(purities) / len(purities) if purities else None,
    )


@dataclass
class HealthSettings:
    """What :func:`prototype_health` measures: purity over ``k`` neighbours, near-duplicates above
    ``duplicate_cosine``, usage on the ``usage_split`` named so in the report."""

    k: int = 10
    duplicate_cosine: float = 0.999
    usage_split: str = "train"


@torch.no_grad()
def prototype_health(net, train: Features, usage: Features, settings: HealthSettings) -> HealthReport:
    """Per-prototype report and summary. Purity: share of the k nearest training examples (any
    class, by the model's similarity) that belong to the prototype's class, not counting the
    example a replace projection put the prototype on (k + 1 are retrieved, the anchor dropped)."""
    head, projection, k = net.head, projection_of(net), settings.k
    replaced = [projection.record(j).replaced_by if projection else None for j in range(head.num_prototypes)]
    excludes_anchor = any(a is not None for a in replaced)
    neighbours = nearest_examples(head, train, k + 1 if excludes_anchor else k, restrict_to_class=False)
    nearest, top = usage_counts(head, usage)
    labels = train.labels.tolist()
    anchors, identical = (
        _anchors(head, projection, neighbours.indices),
        _near_identical(head, settings.duplicate_cosine),
    )
    rows = []
    for j in range(head.num_prototypes):
        c = int(head.prototype_class[j])
        purity = None if net.config.regression else _purity(labels, neighbours.indices[j].tolist(), c, replaced[j], k)
        rows.append(
            PrototypeHealth(
                prototype_id=j,
                class_index=c,
                nearest_count=int(nearest[j]),
                top_contributor_count=int(top[j]),
                dead=bool(nearest[j] == 0 and top[j] == 0),
                purity=purity,
                shares_nearest_example_with=[i for i, a in enumerate(anchors) if i != j and a == anchors[j]],
                near_identical_to=identical[j],
            )
        )
    return HealthReport(
        usage_split=settings.usage_split,
        usage_examples=len(usage),
        purity_k=k,
        purity_excludes_anchor=excludes_anchor,
        duplicate_cosine=settings.duplicate_cosine,
        summary=_summary(rows),
        prototypes=rows,
    )
