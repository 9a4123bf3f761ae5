"""The model's figures on a split from that split's pooled embeddings: the task metrics, the loss
terms and prototype usage, as Lightning's evaluation loop logs them, without the encoder pass."""

from __future__ import annotations

import torch

from protolm.modeling.metrics import task_metrics
from protolm.prototypes.features import Features


@torch.no_grad()
def evaluate_features(net, features: Features, objective, prefix: str) -> dict[str, float]:
    """``<prefix><metric>`` for the task's metrics, the objective's terms (weighted means over the
    examples, as the loop's epoch means are) and ``prototypes_used``."""
    head = net.head
    device = head.prototypes.device
    metrics = task_metrics(net.config.num_labels, net.config.regression, prefix=prefix).to(device)
    sums: dict[str, float] = {}
    nearest = torch.zeros(head.num_prototypes, dtype=torch.long)
    for start, rows in features.chunks():
        labels = features.labels[start : start + len(rows)].to(device)
        sims = head.similarities(rows.to(device))
        logits = head.logits_from_similarities(sims)
        for name, value in objective({"logits": logits, "similarities": sims}, labels).items():
            sums[name] = sums.get(name, 0.0) + float(value) * len(rows)
        metrics.update(logits, labels)
        nearest += torch.bincount(sims.argmax(1).cpu(), minlength=head.num_prototypes)
    figures = {name: float(value) for name, value in metrics.compute().items()}
    figures |= {f"{prefix}{name}": total / max(1, len(features)) for name, total in sums.items()}
    figures[f"{prefix}prototypes_used"] = float((nearest > 0).sum())
    return figures
