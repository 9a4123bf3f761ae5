"""Prototype health: usage, dead prototypes, duplicates, class purity, pruning, and a 2-D map."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from protolm.distributed import world
from protolm.projection import _forward_context, nearest_examples

log = logging.getLogger(__name__)


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


def _sum_over_processes(t: torch.Tensor, device) -> torch.Tensor:
    """The streaming passes shard the data across processes: add up their counts."""
    import torch.distributed as dist

    if world()[0] == 1:
        return t
    t = t.to(device)
    dist.all_reduce(t)
    return t.cpu()


def prototype_health(
    model, datamodule, k: int = 10, usage_role: str = "train", duplicate_cosine: float = 0.999
) -> dict:
    """Per-prototype report and summary. Purity: share of the k nearest training examples (any
    class, by the model's similarity) that belong to the prototype's class."""
    head = model.head
    usage = UsageCounter(model)
    if usage_role == "train":  # one pass gives both the usage and the neighbours
        neighbours = nearest_examples(model, datamodule, k, restrict_to_class=False, on_batch=usage)
    else:
        nearest_examples(model, datamodule, 1, role=usage_role, on_batch=usage)
        neighbours = nearest_examples(model, datamodule, k, restrict_to_class=False)
    nearest, top, seen = (
        _sum_over_processes(x, model.device) for x in (usage.nearest, usage.top, torch.tensor(usage.seen))
    )
    seen = int(seen)
    labels = datamodule.role_split("train").labels
    vectors = torch.nn.functional.normalize(head.prototypes.detach().float().cpu(), dim=1)
    cosine = vectors @ vectors.t()
    cosine.fill_diagonal_(-1)
    # A prototype's anchor: its nearest example of its class (from the projection when there is
    # one, else its nearest example of any class). Prototypes sharing an anchor are duplicates.
    projected = {p["prototype_id"]: p for p in (model.projection or {}).get("prototypes", [])}
    anchors = [
        (projected[j]["nearest"][0]["index"] if projected.get(j, {}).get("nearest") else int(neighbours.indices[j, 0]))
        for j in range(head.num_prototypes)
    ]
    rows = []
    for j in range(head.num_prototypes):
        c = int(head.prototype_class[j])
        idx = [i for i in neighbours.indices[j].tolist() if i >= 0]
        purity = None if model.regression or not idx else sum(labels[i] == c for i in idx) / len(idx)
        shares = [i for i in range(head.num_prototypes) if i != j and anchors[i] == anchors[j]]
        rows.append(
            {
                "prototype_id": j,
                "class": c,
                "nearest_count": int(nearest[j]),
                "top_contributor_count": int(top[j]),
                "dead": bool(nearest[j] == 0 and top[j] == 0),
                "purity": purity,
                "shares_nearest_example_with": shares,
                "near_identical_to": torch.nonzero(cosine[j] >= duplicate_cosine).flatten().tolist(),
            }
        )
    purities = [r["purity"] for r in rows if r["purity"] is not None]
    return {
        "usage_split": datamodule.role_split(usage_role).name,
        "usage_examples": seen,
        "purity_k": k,
        "duplicate_cosine": duplicate_cosine,
        "summary": {
            "prototypes": head.num_prototypes,
            "dead": sum(r["dead"] for r in rows),
            "sharing_a_nearest_example": sum(bool(r["shares_nearest_example_with"]) for r in rows),
            "near_identical": sum(bool(r["near_identical_to"]) for r in rows),
            "mean_purity": sum(purities) / len(purities) if purities else None,
        },
        "prototypes": rows,
    }


def prune(model, report: dict, min_purity: float) -> dict:
    """Remove prototypes whose purity is below ``min_purity``; every class keeps its purest one.

    The head, its last layer, the prototype classes and the projection record stay consistent;
    remaining prototypes are renumbered and keep their ``original_id``.
    """
    if model.regression:
        raise ValueError("prune: purity is undefined for regression tasks")
    head = model.head
    purity = torch.tensor([r["purity"] if r["purity"] is not None else 0.0 for r in report["prototypes"]])
    keep = purity >= min_purity
    for c in range(head.num_classes):
        members = (head.prototype_class == c).nonzero().flatten()
        if not keep[members].any():
            keep[members[purity[members].argmax()]] = True
    removed = (~keep).nonzero().flatten().tolist()
    head.keep_prototypes(keep)
    if model.projection:
        kept = [p for p, k in zip(model.projection["prototypes"], keep.tolist()) if k]
        for new_id, record in enumerate(kept):
            record.setdefault("original_id", record["prototype_id"])
            record["prototype_id"] = new_id
        model.projection["prototypes"] = kept
    info = {"min_purity": min_purity, "k": report["purity_k"], "removed": removed, "remaining": head.num_prototypes}
    log.info("pruned %d prototypes below purity %.2f; %d remain", len(removed), min_purity, head.num_prototypes)
    return info


@torch.no_grad()
def plot_prototypes(model, datamodule, path: str | Path, max_examples: int = 2000, seed: int = 0) -> Path:
    """PCA of training embeddings and prototypes in 2-D, coloured by class; saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    split = datamodule.role_split("train")
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:max_examples].tolist()
    model.eval()
    pooled, labels = [], []
    with _forward_context(model):
        for batch in datamodule.dataloader("train", indices=sorted(order), shard=False):
            batch = {k: v.to(model.device) for k, v in batch.items()}
            pooled.append(model(batch)["pooled"].float().cpu())
            labels += [split.labels[i] for i in batch["index"].tolist()]
    points = torch.cat(pooled)
    prototypes = model.head.prototypes.detach().float().cpu()
    everything = torch.cat([points, prototypes])
    mean = everything.mean(0)
    _, _, v = torch.linalg.svd(everything - mean, full_matrices=False)
    project2d = lambda x: ((x - mean) @ v[:2].t()).numpy()  # noqa: E731
    xy, pxy = project2d(points), project2d(prototypes)
    names = model.task_info.get("labels") or ["target"]
    fig, ax = plt.subplots(figsize=(7, 6), dpi=110)
    cmap = plt.get_cmap("tab10")
    if model.regression:
        scatter = ax.scatter(xy[:, 0], xy[:, 1], c=labels, s=6, alpha=0.5, cmap="viridis")
        fig.colorbar(scatter, ax=ax, label="target")
        ax.scatter(pxy[:, 0], pxy[:, 1], marker="*", s=180, c="black", label="prototypes")
    else:
        for c, name in enumerate(names):
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
    ax.set_title(f"{model.task_info['name']}: prototypes and {len(points)} training embeddings (PCA)")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.legend(fontsize=8, markerscale=1.0, loc="best")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
