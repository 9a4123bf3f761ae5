"""The last-layer phase (ProtoPNet's, after the push): only the P -> C weights learn, on the training
split's pooled embeddings computed once (the encoder, the attention pooling and the prototypes are
fixed, so every epoch would compute the same similarities again).

It is the training the Lightning loop did before, without the encoder: the same batches (the data
module's seeded, length-grouped training order, epoch by epoch), AdamW at ``lr`` without weight
decay, the objective's task term at its weight (the other terms do not depend on the last layer),
the gradient clipped to ``clip``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from protolm.config import DataConfig, LossConfig, OptimConfig
from protolm.data.sampling import LengthGroupedSampler
from protolm.modeling.losses import task_loss
from protolm.prototypes.features import Features

log = logging.getLogger(__name__)


@dataclass
class LastLayerPhase:
    """How the last layer is retrained."""

    epochs: int
    lr: float  # the head's learning rate (optim.head_lr)
    batch_size: int  # data.batch_size
    task_weight: float = 1.0  # loss.task: the task term's weight in the objective
    clip: float | None = None  # gradient-norm clipping (trainer.gradient_clip_val)
    seed: int = 0  # the run's seed: the training order's
    group_by_length: bool = True  # data.length_grouping


def train_last_layer(head, features: Features, lengths: list[int], phase: LastLayerPhase) -> list[float]:
    """Train ``head.last_layer`` for ``phase.epochs`` epochs on ``features``; the mean loss of each epoch."""
    device = head.last_layer.weight.device
    regression = head.num_classes == 1
    params = list(head.last_layer.parameters())
    optimizer = torch.optim.AdamW(params, lr=phase.lr, weight_decay=0.0)
    sampler = LengthGroupedSampler(
        lengths, phase.batch_size, shuffle=True, group_by_length=phase.group_by_length, seed=phase.seed
    )
    labels = features.labels.to(device)
    losses = []
    for epoch in range(phase.epochs):
        sampler.set_epoch(epoch)
        total, seen = 0.0, 0
        for batch in sampler.batches():
            index = torch.tensor(batch)
            with torch.no_grad():
                similarities = head.similarities(features.pooled[index].to(device))
            logits = head.logits_from_similarities(similarities)
            loss = phase.task_weight * task_loss(logits, labels[index.to(device)], regression)
            optimizer.zero_grad()
            loss.backward()
            if phase.clip:
                torch.nn.utils.clip_grad_norm_(params, phase.clip)
            optimizer.step()
            total, seen = total + loss.item() * len(batch), seen + len(batch)
        losses.append(total / max(1, seen))
    log.info("last layer trained for %d epoch(s) on %d examples: loss %s", phase.epochs, len(features), losses)
    return losses


def phase_from_run(run: dict, epochs: int) -> LastLayerPhase:
    """The last-layer phase as the run recorded in ``run`` (its resolved config) trained it."""
    optim, data, loss = (run.get(name) or {} for name in ("optim", "data", "loss"))
    return LastLayerPhase(
        epochs=epochs,
        lr=optim.get("head_lr", OptimConfig.head_lr),
        batch_size=data.get("batch_size", DataConfig.batch_size),
        task_weight=loss.get("task", LossConfig.task),
        clip=(run.get("trainer") or {}).get("gradient_clip_val"),
        seed=run.get("seed", 0),
        group_by_length=data.get("length_grouping", DataConfig.length_grouping),
    )
