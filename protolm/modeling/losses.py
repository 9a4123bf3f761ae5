"""proto-lm's training objective: L = task * CE (or MSE) + cohesion * L_coh + separation * L_sep.

Signs follow the paper's stated intent (docs/method.md, "Losses"): minimising L *raises* the
similarity of an example to the K least similar prototypes of its own class (cohesion) and
*lowers* its similarity to the K most similar prototypes of the other classes (separation).
The reference code applied distance-style signs to similarities, which does the opposite;
``reference_signs=True`` reproduces that for comparison only.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def cohesion_separation(
    similarities: torch.Tensor,
    labels: torch.Tensor,
    prototype_class: torch.Tensor,
    k: int,
    reference_signs: bool = False,
    with_separation: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cohesion and separation terms, each averaged over the batch and the K chosen prototypes.

    similarities: B x P; labels: B (class index); prototype_class: P. With a single class
    (regression, as in the reference code: every example and prototype in class 0) pass
    ``with_separation=False``: there are no other-class prototypes to separate from.
    """
    own = prototype_class.unsqueeze(0) == labels.unsqueeze(1)  # B x P
    big = torch.finfo(similarities.dtype).max
    # K least similar prototypes of the example's own class: the ones cohesion must pull in.
    least_own = torch.topk(similarities.masked_fill(~own, big), k, dim=1, largest=False).values
    # K most similar prototypes of any other class: the ones separation must push away.
    # (With C >= 2 classes there are P - P/C >= P/C >= K of them.)
    if with_separation:
        separation = torch.topk(similarities.masked_fill(own, -big), k, dim=1).values.mean()
    else:
        separation = similarities.new_zeros(())
    cohesion = -least_own.mean()
    if reference_signs:
        return -cohesion, -separation
    return cohesion, separation


def task_loss(logits: torch.Tensor, labels: torch.Tensor, regression: bool) -> torch.Tensor:
    if regression:
        return F.mse_loss(logits.squeeze(-1).float(), labels.float())
    return F.cross_entropy(logits.float(), labels)


class TaskObjective:
    """The linear head's objective: ``weight`` x cross-entropy (MSE for a regression)."""

    def __init__(self, regression: bool, weight: float = 1.0):
        self.regression, self.weight = regression, weight
        self.term = "mse" if regression else "ce"

    def __call__(self, out: dict, labels: torch.Tensor) -> dict:
        """The weighted objective under ``loss`` and each unweighted term under its own name."""
        value = task_loss(out["logits"], labels, self.regression)
        return {self.term: value, "loss": self.weight * value}


class PrototypeObjective(TaskObjective):
    """The prototype head's objective: the task term plus cohesion and separation.

    K is the configured count capped by the head's smallest class: a pruned head may have fewer
    prototypes in some class than K, and K follows it (read at every step, not at construction).
    """

    def __init__(self, head, regression: bool, weights: dict[str, float], k: int, reference_signs: bool = False):
        super().__init__(regression, weights["task"])
        self.head, self.k, self.reference_signs = head, k, reference_signs
        self.cohesion, self.separation = weights["cohesion"], weights["separation"]

    def __call__(self, out: dict, labels: torch.Tensor) -> dict:
        terms = super().__call__(out, labels)
        # A regression has one block of prototypes, all "of class 0", and nothing to separate from.
        proto_labels = torch.zeros_like(labels, dtype=torch.long) if self.regression else labels
        terms["cohesion"], terms["separation"] = cohesion_separation(
            out["similarities"],
            proto_labels,
            self.head.prototype_class,
            min(self.k, self.head.prototypes_per_class),
            reference_signs=self.reference_signs,
            with_separation=not self.regression,
        )
        terms["loss"] = terms["loss"] + self.cohesion * terms["cohesion"] + self.separation * terms["separation"]
        return terms
