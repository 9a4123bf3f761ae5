"""proto-lm's training objective: L = ce * CE + cohesion * L_coh + separation * L_sep.

Signs follow the paper's stated intent (DESIGN.md section 1): minimising L *raises* the
similarity of an example to the K least similar prototypes of its own class (cohesion) and
*lowers* its similarity to the K most similar prototypes of the other classes (separation).
The reference code applied distance-style signs to similarities, which does the opposite;
``reference_signs=True`` reproduces that for comparison only.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def resolve_k(cohsep_ratio: float, prototypes_per_class: int) -> int:
    """K from ``loss.cohsep_ratio``: a fraction in (0, 1) of P/C, or a flat count >= 1."""
    ratio = float(cohsep_ratio)
    if 0.0 < ratio < 1.0:
        return max(1, int(ratio * prototypes_per_class))
    if ratio >= 1.0 and ratio.is_integer():
        k = int(ratio)
        if k > prototypes_per_class:
            raise ValueError(
                f"loss.cohsep_ratio={cohsep_ratio}: a flat count K must be at most the "
                f"{prototypes_per_class} prototypes per class"
            )
        return k
    raise ValueError(
        f"loss.cohsep_ratio={cohsep_ratio} must be a fraction in (0, 1) of the prototypes per "
        f"class or a whole count >= 1"
    )


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
