"""Removing prototypes: those whose neighbourhood is mostly of other classes (pruning), those a sparse
last layer left unconnected, those a person removes; the model stays consistent either way."""

from __future__ import annotations

import logging

import torch

from protolm.prototypes.health import HealthReport, PruneResult
from protolm.prototypes.records import projection_of

log = logging.getLogger(__name__)


def prune_prototypes(net, report: HealthReport, min_purity: float) -> PruneResult:
    """Remove prototypes whose purity is below ``min_purity``; every class keeps its purest one.

    The head, its last layer, the prototype classes and the projection record stay consistent;
    remaining prototypes are renumbered and keep their ``original_id``.
    """
    if net.config.regression:
        raise ValueError("prune: purity is undefined for regression tasks")
    head = net.head
    purity = torch.tensor([r.purity if r.purity is not None else 0.0 for r in report.prototypes])
    keep = purity >= min_purity
    for c in range(head.num_classes):
        members = (head.prototype_class == c).nonzero().flatten()
        if not keep[members].any():
            keep[members[purity[members].argmax()]] = True
    removed = remove_prototypes(net, keep)
    log.info("pruned %d prototypes below purity %.2f; %d remain", len(removed), min_purity, head.num_prototypes)
    return PruneResult(min_purity, report.purity_k, removed, head.num_prototypes)


def remove_prototypes(net, keep: torch.Tensor) -> list[int]:
    """Keep only the prototypes ``keep`` marks (a bool mask over P): the head, its last layer, the
    prototype classes and the projection record stay consistent; the rest are renumbered and keep
    their ``original_id``. Returns the ids removed (before renumbering)."""
    keep = keep.bool().cpu()
    removed = (~keep).nonzero().flatten().tolist()
    if not removed:
        return []
    net.head.keep_prototypes(keep)
    projection = projection_of(net)
    if projection is not None:
        net.prototypes = projection.kept(keep.tolist()).to_dict()
    net.refresh_config()
    return removed
