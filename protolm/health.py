"""Prototype health: usage, dead prototypes, duplicates, class purity, pruning, and a 2-D map."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from protolm.distributed import world
from protolm.inference import outputs
from protolm.projection import Neighbours, nearest_examples, projected_record

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


class UsageCounter:
    """Counts, per prototype, how often it is the nearest prototype and the top contributor to
    the predicted class (similarity x last-layer weight)."""

    def __init__(self, model):
        self.model = model
        self.weights = model.head.last_layer.weight.detach().float()
        self.nearest = torch.zeros(model.head.num_prototypes, dtype=torch.long)
        self.top = torch.zeros(model.head.num_prototypes, dtype=torch.long)
        self.seen = 0

    def __call__(self, out: dict, batch: dict) -> None:
        sims = out["similarities"].float()
        if self.model.regression:
            predicted = torch.zeros(len(sims), dtype=torch.long, device=sims.device)
        else:
            predicted = out["logits"].argmax(-1)
        P = self.model.head.num_prototypes
        self.nearest += torch.bincount(sims.argmax(1), minlength=P).cpu()
        self.top += torch.bincount((sims * self.weights[predicted]).argmax(1), minlength=P).cpu()
        self.seen += len(sims)

    def totals(self) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(nearest counts, top-contributor counts, examples seen), summed over processes."""
        nearest, top, seen = (
            _sum_over_processes(x, self.model.device) for x in (self.nearest, self.top, torch.tensor(self.seen))
        )
        return nearest, top, int(seen)


def _sum_over_processes(t: torch.Tensor, device) -> torch.Tensor:
    """The streaming passes shard the data across processes: add up their counts."""
    import torch.distributed as dist

    if world()[0] == 1:
        return t
    t = t.to(device)
    dist.all_reduce(t)
    return t.cpu()


def _usage_and_neighbours(model, datamodule, k: int, usage_role: str) -> tuple[UsageCounter, Neighbours]:
    usage = UsageCounter(model)
    if usage_role == "train":  # one pass gives both the usage and the neighbours
        neighbours = nearest_examples(model, datamodule, k, restrict_to_class=False, on_batch=usage)
    else:
        nearest_examples(model, datamodule, 1, role=usage_role, on_batch=usage)
        neighbours = nearest_examples(model, datamodule, k, restrict_to_class=False)
    return usage, neighbours


def _replace_anchors(model) -> list[int | None]:
    """Per prototype, the training example a replace projection moved it onto (None: not replaced)."""
    records = [projected_record(model, j) for j in range(model.head.num_prototypes)]
    return [record.replaced_by if record is not None else None for record in records]


def _purity(labels: list, indices: list[int], class_index: int, anchor: int | None, k: int) -> float | None:
    """Share of the k nearest examples other than ``anchor`` that are of ``class_index``. A prototype
    sitting on its anchor has it as its nearest example, of its class by construction: counting
    it would add a point of purity that says nothing about the neighbourhood."""
    nearest = [i for i in indices if i >= 0 and i != anchor][:k]
    return sum(labels[i] == class_index for i in nearest) / len(nearest) if nearest else None


def _anchors(model, neighbours: Neighbours) -> list[int]:
    """A prototype's anchor: its nearest example of its class from the projection when there is one,
    else its nearest example of any class. Prototypes sharing an anchor are duplicates."""
    anchors = []
    for j in range(model.head.num_prototypes):
        record = projected_record(model, j)
        anchors.append(record.nearest[0].index if record and record.nearest else int(neighbours.indices[j, 0]))
    return anchors


def _near_identical(model, duplicate_cosine: float) -> list[list[int]]:
    vectors = torch.nn.functional.normalize(model.head.prototypes.detach().float().cpu(), dim=1)
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


def prototype_health(
    model, datamodule, k: int = 10, usage_role: str = "train", duplicate_cosine: float = 0.999
) -> HealthReport:
    """Per-prototype report and summary. Purity: share of the k nearest training examples (any
    class, by the model's similarity) that belong to the prototype's class, not counting the
    example a replace projection put the prototype on (k + 1 are retrieved, the anchor dropped)."""
    replaced = _replace_anchors(model)
    excludes_anchor = any(a is not None for a in replaced)
    usage, neighbours = _usage_and_neighbours(model, datamodule, k + 1 if excludes_anchor else k, usage_role)
    nearest, top, seen = usage.totals()
    labels = datamodule.role_split("train").labels
    anchors, identical = _anchors(model, neighbours), _near_identical(model, duplicate_cosine)
    rows = []
    for j in range(model.head.num_prototypes):
        c = int(model.head.prototype_class[j])
        rows.append(
            PrototypeHealth(
                prototype_id=j,
                class_index=c,
                nearest_count=int(nearest[j]),
                top_contributor_count=int(top[j]),
                dead=bool(nearest[j] == 0 and top[j] == 0),
                purity=None if model.regression else _purity(labels, neighbours.indices[j].tolist(), c, replaced[j], k),
                shares_nearest_example_with=[i for i, a in enumerate(anchors) if i != j and a == anchors[j]],
                near_identical_to=identical[j],
            )
        )
    usage_split = datamodule.role_split(usage_role).name
    return HealthReport(
        usage_split=usage_split,
        usage_examples=seen,
        purity_k=k,
        purity_excludes_anchor=excludes_anchor,
        duplicate_cosine=duplicate_cosine,
        summary=_summary(rows),
        prototypes=rows,
    )


def prune_prototypes(model, report: HealthReport, min_purity: float) -> PruneResult:
    """Remove prototypes whose purity is below ``min_purity``; every class keeps its purest one.

    The head, its last layer, the prototype classes and the projection record stay consistent;
    remaining prototypes are renumbered and keep their ``original_id``.
    """
    if model.regression:
        raise ValueError("prune: purity is undefined for regression tasks")
    head = model.head
    purity = torch.tensor([r.purity if r.purity is not None else 0.0 for r in report.prototypes])
    keep = purity >= min_purity
    for c in range(head.num_classes):
        members = (head.prototype_class == c).nonzero().flatten()
        if not keep[members].any():
            keep[members[purity[members].argmax()]] = True
    removed = (~keep).nonzero().flatten().tolist()
    head.keep_prototypes(keep)
    if model.projection is not None:
        model.projection = model.projection.kept(keep.tolist())
    log.info("pruned %d prototypes below purity %.2f; %d remain", len(removed), min_purity, head.num_prototypes)
    return PruneResult(min_purity, report.purity_k, removed, head.num_prototypes)


# ------------------------------------------------------------------------------- the map
def _embedding_sample(model, datamodule, max_examples: int, seed: int) -> tuple[torch.Tensor, list]:
    """Pooled embeddings and labels of up to ``max_examples`` random training examples."""
    split = datamodule.role_split("train")
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:max_examples].tolist()
    pooled, labels = [], []
    for batch, out in outputs(model, datamodule.dataloader("train", indices=sorted(order), shard=False)):
        pooled.append(out["pooled"].float().cpu())
        labels += [split.labels[i] for i in batch["index"].tolist()]
    return torch.cat(pooled), labels


def _pca_2d(points: torch.Tensor, prototypes: torch.Tensor):
    """Both point sets on the first two principal components of their union (numpy arrays)."""
    everything = torch.cat([points, prototypes])
    mean = everything.mean(0)
    _, _, v = torch.linalg.svd(everything - mean, full_matrices=False)
    return ((points - mean) @ v[:2].t()).numpy(), ((prototypes - mean) @ v[:2].t()).numpy()


def _draw_classes(ax, model, xy, pxy, labels: list) -> None:
    """Each class's training examples and its prototypes (stars) in the class's colour."""
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab10")
    for c, name in enumerate(model.task_info.labels or ["target"]):
        mask = [y == c for y in labels]
        ax.scatter(xy[mask, 0], xy[mask, 1], s=6, alpha=0.35, color=cmap(c % 10), label=f"{name} (training)")
        own = (model.head.prototype_class == c).numpy()
        ax.scatter(
            pxy[own, 0],
            pxy[own, 1],
            marker="*",
            s=220,
            color=cmap(c % 10),
            edgecolors="black",
            linewidths=0.8,
            label=f"{name} prototypes",
        )


@torch.no_grad()
def plot_prototypes(model, datamodule, path: str | Path, max_examples: int = 2000, seed: int = 0) -> Path:
    """PCA of training embeddings and prototypes in 2-D, coloured by class; saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points, labels = _embedding_sample(model, datamodule, max_examples, seed)
    xy, pxy = _pca_2d(points, model.head.prototypes.detach().float().cpu())
    fig, ax = plt.subplots(figsize=(7, 6), dpi=110)
    if model.regression:
        scatter = ax.scatter(xy[:, 0], xy[:, 1], c=labels, s=6, alpha=0.5, cmap="viridis")
        fig.colorbar(scatter, ax=ax, label="target")
        ax.scatter(pxy[:, 0], pxy[:, 1], marker="*", s=180, c="black", label="prototypes")
    else:
        _draw_classes(ax, model, xy, pxy, labels)
    ax.set_title(f"{model.task_info.name}: prototypes and {len(points)} training embeddings (PCA)")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.legend(fontsize=8, markerscale=1.0, loc="best")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
