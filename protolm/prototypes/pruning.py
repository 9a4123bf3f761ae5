"""Pruning: remove the prototypes whose neighbourhood is mostly of other classes."""

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
    removed = (~keep).nonzero().flatten().tolist()
    head.keep_prototypes(keep)
    projection = projection_of(net)
    if projection is not None:
        net.prototypes = projection.kept(keep.tolist()).to_dict()
    net.refresh_config()
    log.info("pruned %d prototypes below purity %.2f; %d remain", len(removed), min_purity, head.num_prototypes)
    return PruneResult(min_purity, report.purity_k, removed, head.num_prototypes)
