"""Where prototypes start: on pooled embeddings of training examples of their class.

Prototypes drawn far from the embedding cloud give near-constant similarities and the head never
learns (docs/method.md, "Initialisation"); starting on real examples avoids that.
"""

from __future__ import annotations

import logging

import torch

from protolm.modeling.inference import Precision
from protolm.prototypes.features import pooled_of
from protolm.utils.errors import DataError

log = logging.getLogger(__name__)


def examples_per_prototype(head, labels: list, regression: bool, generator: torch.Generator) -> list[int]:
    """A distinct random training example of each prototype's class (reused when a class has too few)."""
    per_class = head.prototypes_per_class
    chosen = []
    for c in range(head.num_classes):
        members = [i for i, y in enumerate(labels) if regression or y == c]
        if not members:
            raise DataError(f"head.prototype_init=train_embeddings: no training example of class {c}")
        picks = torch.randperm(len(members), generator=generator)[:per_class].tolist()
        while len(picks) < per_class:  # fewer examples than prototypes: reuse (noise added by the caller)
            picks += picks[: per_class - len(picks)]
        chosen += [members[i] for i in picks]
    return chosen


@torch.no_grad()
def init_prototypes_from_training_data(net, datamodule, seed: int, broadcast=None, precision: Precision | None = None):
    """Set each prototype to the pooled embedding of a distinct random training example of its class.

    Every process computes the same vectors; ``broadcast`` makes sure they start identical."""
    generator = torch.Generator().manual_seed(seed)
    regression = net.config.regression
    chosen = examples_per_prototype(net.head, datamodule.role_split("train").labels, regression, generator)
    vectors = pooled_of(net, datamodule, chosen, "train", precision)
    if len(set(chosen)) < len(chosen):  # reused examples: break the ties
        vectors += 1e-3 * vectors.std() * torch.randn(vectors.shape, generator=generator).to(vectors)
    if broadcast is not None:
        vectors = broadcast(vectors, src=0)
    net.head.set_prototypes(vectors)
    log.info("initialised %d prototypes from training examples of their class", net.head.num_prototypes)
