"""The last-layer phase (ProtoPNet's, after the push): only the P -> C weights learn, on the training
split's pooled embeddings computed once (the encoder, the attention pooling and the prototypes are
fixed, so every epoch would compute the same similarities again).

It trains on the data module's seeded, length-grouped training order, epoch by epoch, with AdamW at
``lr`` without weight decay, the loss at the objective's task weight, the gradient clipped to
``clip``: the training a Lightning pass through the encoder did, without the encoder.

What it fits (``objective``):

* ``labels``: cross-entropy with the labels (ProtoPNet's). Replacing the learned prototypes by real
  training examples widens every similarity gap, and a short phase fitted to the labels of the
  training examples, which the encoder was fine-tuned on, leaves the logits about 2.5x too large:
  accuracy holds while the probabilities become confident on errors;
* ``distill``: the probabilities the model gave before projection, on the same examples (the KL
  divergence from them): the last layer learns the new similarities' scale and keeps the model's
  calibration (experiments/results/last_layer/).

``sparsity`` > 0 makes each class's score rest on few prototypes of its own: the other-class
connections are removed (a change of gauge: each prototype's mean other-class weight moved onto its
own class leaves softmax unchanged under the initial +1 / -0.5 layer), an L1 penalty of that weight
on the own-class connections, clamped at zero, trains for ``epochs``, and the connections that
survive are refitted without it for ``refit_epochs`` (the penalty's shrinkage undone).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from protolm.config import DataConfig, LossConfig, OptimConfig, ProjectConfig
from protolm.config.prototypes import LAST_LAYER_OBJECTIVES
from protolm.data.sampling import LengthGroupedSampler
from protolm.modeling.losses import task_loss
from protolm.prototypes.features import Features

log = logging.getLogger(__name__)
OBJECTIVES = LAST_LAYER_OBJECTIVES


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
    objective: str = "labels"  # labels | distill
    sparsity: float = 0.0  # the own-class L1 weight (0: the dense layer as it is)
    refit_epochs: int = 0  # after a sparse phase, the surviving connections refitted without the penalty
    keep_zeros: bool = False  # connections at 0 stay at 0 (an edit's retraining of a sparse layer)


class _Fit:
    """One fit of the last layer's weights (C x P) over the phase's batches."""

    def __init__(self, head, features: Features, phase: LastLayerPhase, target: torch.Tensor):
        self.head, self.features, self.phase, self.target = head, features, phase, target
        self.device = head.last_layer.weight.device
        self.regression = head.num_classes == 1

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.phase.objective == "labels":
            return task_loss(logits, target, self.regression)
        if self.regression:  # the output before projection
            return F.mse_loss(logits.float(), target.float())
        return F.kl_div(F.log_softmax(logits.float(), -1), target, log_target=True, reduction="batchmean")

    def run(self, epochs: int, batches, mask: torch.Tensor | None, l1: float) -> list[float]:
        """``epochs`` epochs; weights outside ``mask`` held at 0, and (with ``l1``) clamped at 0 from below."""
        params = list(self.head.last_layer.parameters())
        optimizer = torch.optim.AdamW(params, lr=self.phase.lr, weight_decay=0.0)
        weight, losses = self.head.last_layer.weight, []
        for epoch in range(epochs):
            total, seen = 0.0, 0
            for batch in batches(epoch):
                index = torch.tensor(batch)
                with torch.no_grad():
                    similarities = self.head.similarities(self.features.pooled[index].to(self.device))
                logits = self.head.logits_from_similarities(similarities)
                loss = self.phase.task_weight * self.loss(logits, self.target[index.to(self.device)])
                if l1:
                    loss = loss + l1 * (weight * mask).abs().sum()
                optimizer.zero_grad()
                loss.backward()
                if self.phase.clip:
                    torch.nn.utils.clip_grad_norm_(params, self.phase.clip)
                optimizer.step()
                if mask is not None:
                    with torch.no_grad():
                        weight.masked_fill_(~mask | ((weight < 0) if l1 else torch.zeros_like(mask)), 0.0)
                total, seen = total + loss.item() * len(batch), seen + len(batch)
            losses.append(total / max(1, seen))
        return losses


def train_last_layer(
    head, features: Features, lengths: list[int], phase: LastLayerPhase, teacher_logits: torch.Tensor | None = None
) -> list[float]:
    """Train ``head.last_layer`` on ``features`` as ``phase`` says; the mean loss of each epoch.
    ``teacher_logits`` (N x C): the model's logits on the same examples before projection, which
    ``objective="distill"`` fits."""
    if phase.objective not in OBJECTIVES:
        raise ValueError(f"project.last_layer_objective={phase.objective!r} is not one of {', '.join(OBJECTIVES)}")
    device = head.last_layer.weight.device
    if phase.objective == "labels":
        target = features.labels.to(device)
    elif head.num_classes == 1:
        target = teacher_logits.detach().squeeze(-1).to(device)
    else:
        target = F.log_softmax(teacher_logits.detach().float(), -1).to(device)
    sampler = LengthGroupedSampler(
        lengths, phase.batch_size, shuffle=True, group_by_length=phase.group_by_length, seed=phase.seed
    )

    def batches(epoch: int):
        sampler.set_epoch(epoch)
        return sampler.batches()

    fit = _Fit(head, features, phase, target)
    if phase.keep_zeros:
        losses = fit.run(phase.epochs, batches, head.last_layer.weight.detach() != 0, 0.0)
    elif not phase.sparsity or head.num_classes == 1:
        losses = fit.run(phase.epochs, batches, None, 0.0)
    else:
        own = own_class_connections(head)
        with torch.no_grad():
            head.last_layer.weight.copy_(block_diagonal(head.last_layer.weight, own))
        losses = fit.run(phase.epochs, batches, own, phase.sparsity)
        live = own & (head.last_layer.weight > 0)
        for c in range(head.num_classes):  # a class keeps at least its strongest prototype of its own
            if not live[c].any():
                live[c, head.last_layer.weight[c].masked_fill(~own[c], -torch.inf).argmax()] = True
        losses += fit.run(phase.refit_epochs, lambda e: batches(phase.epochs + e), live, 0.0)
    log.info("last layer trained (%s) for %d epoch(s) on %d examples: loss %s", phase.objective, len(losses),
             len(features), [round(v, 4) for v in losses])  # fmt: skip
    return losses


def own_class_connections(head) -> torch.Tensor:
    """C x P: True where the last layer connects a prototype to its own class."""
    return F.one_hot(head.prototype_class, head.num_classes).t().bool().to(head.last_layer.weight.device)


def block_diagonal(weight: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
    """Each prototype's connections with its mean other-class weight subtracted, other classes then 0:
    a constant added to one prototype's column shifts every class's logit alike, so under the initial
    +1 / -0.5 layer this is the same model with no other-class connections."""
    other = ~own
    mean_other = (weight * other).sum(0) / other.sum(0).clamp_min(1)
    return (weight - mean_other[None, :]) * own


def unconnected(head) -> torch.Tensor:
    """P: True for the prototypes with no connection left to any class (a sparse phase's zeros)."""
    return (head.last_layer.weight == 0).all(0)


def phase_from_run(run: dict, project: ProjectConfig) -> LastLayerPhase:
    """The last-layer phase as ``project`` asks it, at the training settings of the run recorded in
    ``run`` (its resolved config)."""
    optim, data, loss = (run.get(name) or {} for name in ("optim", "data", "loss"))
    return LastLayerPhase(
        epochs=project.last_layer_epochs,
        lr=optim.get("head_lr", OptimConfig.head_lr),
        batch_size=data.get("batch_size", DataConfig.batch_size),
        task_weight=loss.get("task", LossConfig.task),
        clip=(run.get("trainer") or {}).get("gradient_clip_val"),
        seed=run.get("seed", 0),
        group_by_length=data.get("length_grouping", DataConfig.length_grouping),
        objective=project.last_layer_objective,
        sparsity=project.last_layer_sparsity,
        refit_epochs=project.last_layer_refit_epochs,
    )
