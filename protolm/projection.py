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

import contextlib
import logging
from dataclasses import dataclass

import torch

from protolm.distributed import world
from protolm.progress import track

log = logging.getLogger(__name__)

MODES = ("link", "replace")


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


def _forward_context(model):
    trainer = getattr(model, "_trainer", None)
    if trainer is not None:
        return trainer.precision_plugin.forward_context()
    return contextlib.nullcontext()


@torch.no_grad()
def nearest_examples(
    model, datamodule, m: int, restrict_to_class: bool = True, role: str = "train", on_batch=None
) -> Neighbours:
    """Stream ``role``'s examples through the model; keep each prototype's M most similar ones.

    ``on_batch(out, batch)``, when given, sees every batch's model output (to gather other
    statistics in the same pass)."""
    head = model.head
    split = datamodule.role_split(role)
    was_training = model.training
    model.eval()
    topk = StreamingTopK(head.num_prototypes, m, model.device)
    with _forward_context(model):
        for batch in track(datamodule.dataloader(role), f"nearest {role} examples"):
            batch = {k: v.to(model.device) for k, v in batch.items()}
            out = model(batch)
            if on_batch is not None:
                on_batch(out, batch)
            similarities = out["similarities"].float()
            if restrict_to_class and not model.regression:
                eligible = batch["labels"].unsqueeze(1) == head.prototype_class.unsqueeze(0)
                similarities = similarities.masked_fill(~eligible, -torch.inf)
            topk.update(similarities, batch["index"])
    topk.merge_processes()
    model.train(was_training)
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


@torch.no_grad()
def pooled_embeddings(model, datamodule, indices: list[int], role: str = "train") -> torch.Tensor:
    """Pooled embeddings of the given examples, in the given order (computed on every process)."""
    was_training = model.training
    model.eval()
    by_index = {}
    with _forward_context(model):
        for batch in datamodule.dataloader(role, indices=sorted(set(indices)), shard=False):
            batch = {k: v.to(model.device) for k, v in batch.items()}
            for index, vector in zip(batch["index"].tolist(), model(batch)["pooled"].float()):
                by_index[index] = vector
    model.train(was_training)
    return torch.stack([by_index[i] for i in indices])


def describe(model, datamodule, neighbours: Neighbours, top_k: int, role: str = "train") -> list[dict]:
    """Per prototype: its class and its top-k nearest examples with text, label, source row, similarity."""
    split = datamodule.role_split(role)
    names = model.task_info.get("labels") or None
    out = []
    for j in range(model.head.num_prototypes):
        c = int(model.head.prototype_class[j])
        nearest = []
        for score, index in zip(neighbours.scores[j, :top_k].tolist(), neighbours.indices[j, :top_k].tolist()):
            if index < 0 or score == -float("inf"):
                continue
            label = split.labels[index]
            nearest.append(
                {
                    "index": index,
                    "row": split.rows[index],
                    "text": split.texts[index],
                    "text_pair": split.pairs[index] if split.pairs is not None else None,
                    "label": label,
                    "label_name": names[label] if names and not model.regression else None,
                    "similarity": score,
                }
            )
        out.append(
            {
                "prototype_id": j,
                "class": c,
                "class_name": names[c] if names and not model.regression else None,
                "nearest": nearest,
            }
        )
    return out


def project(model, datamodule, mode: str = "link", top_k: int = 5, role: str = "train") -> dict:
    """Project the model's prototypes onto ``role``'s examples; returns (and stores) the record."""
    if mode not in MODES:
        raise ValueError(f"project.mode={mode!r} is not one of {', '.join(MODES)}")
    head = model.head
    shared = 0
    replaced_by = None
    if mode == "replace":
        # Enough candidates that every prototype of a class can get its own example.
        m = max(top_k, int(torch.bincount(head.prototype_class).max()))
        candidates = nearest_examples(model, datamodule, m, restrict_to_class=True, role=role)
        replaced_by, shared = assign_distinct(candidates)
        head.set_prototypes(pooled_embeddings(model, datamodule, replaced_by, role=role))
        if shared:
            log.warning("projection: %d prototypes share a training example (their class has too few examples)", shared)
    neighbours = nearest_examples(model, datamodule, top_k, restrict_to_class=True, role=role)
    prototypes = describe(model, datamodule, neighbours, top_k, role=role)
    if replaced_by is not None:
        for record, index in zip(prototypes, replaced_by):
            record["replaced_by"] = index
    split = datamodule.role_split(role)
    record = {
        "mode": mode,
        "split": split.name,
        "origin": split.origin,
        "size": len(split),
        "top_k": top_k,
        "epoch": int(getattr(model, "current_epoch", 0)) if getattr(model, "_trainer", None) else None,
        "shared_examples": shared,
        "prototypes": prototypes,
    }
    model.projection = record
    return record
