"""After fit: the selected weights through the prototype stages, and the figures of the model shipped.

A prototype model's stages and evaluation share one pass of the frozen encoder over each split
(:class:`~protolm.prototypes.stages.StageContext`): the unprojected and the shipped model are
measured on the same pooled embeddings. A linear head has no stages: its selected checkpoint is
evaluated by Lightning's loops.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from protolm.config import Settings
from protolm.prototypes.evaluation import evaluate_features
from protolm.prototypes.last_layer import phase_from_run
from protolm.prototypes.stages import PostTraining, PostTrainingResult, StageContext, after_training

log = logging.getLogger(__name__)


@dataclass
class Shipped:
    """What the run ships: the stages' result, the metrics of the shipped model on both splits
    (and of the unprojected one), and how long each part took."""

    post: PostTrainingResult
    metrics: dict[str, float]
    timings: dict[str, float] = field(default_factory=dict)


def load_weights(model, path: str | Path) -> None:
    """The weights of a checkpoint, into the training module ``model`` (every key checked)."""
    state = torch.load(path, map_location=model.device, weights_only=True)["state_dict"]
    model.check_state_keys(state, path)
    model.load_state_dict(state, strict=False)


def ship(settings: Settings, trainer, model, datamodule, selected: str | None, run_dir: Path) -> Shipped:
    """The stages on the selected checkpoint, then the shipped model's figures on both splits."""
    if not settings.is_prototype:
        return Shipped(
            PostTrainingResult(checkpoint=selected), evaluate_with_loops(trainer, model, datamodule, selected)
        )
    started = time.time()
    if selected:
        load_weights(model, selected)
    model.to(trainer.strategy.root_device)
    ctx = StageContext(
        net=model.model,
        datamodule=datamodule,
        out_dir=Path(run_dir),
        save_checkpoint=lambda path: trainer.save_checkpoint(path, weights_only=True),
        precision=trainer.precision_plugin.forward_context,
        is_writer=trainer.is_global_zero,
    )
    ctx.evaluate = lambda role: evaluate_features(ctx.net, ctx.features(role), model.objective, f"{role}/")
    phase = phase_from_run(model.artifacts["config"], settings.project)
    stages = PostTraining(settings.project, settings.health, settings.prune, phase)
    post = after_training(ctx, stages)
    post.checkpoint = post.checkpoint or selected
    metrics = {**ctx.evaluate("val"), **ctx.evaluate("test")}
    return Shipped(post, metrics, {**ctx.timings, "post_training": round(time.time() - started, 1)})


def evaluate_with_loops(trainer, model, datamodule, checkpoint: str | None) -> dict[str, float]:
    """The checkpoint's figures on the selection and the reported split, from Lightning's loops."""
    evaluated = {}
    for run_stage in (trainer.validate, trainer.test):
        evaluated |= run_stage(model, datamodule=datamodule, ckpt_path=checkpoint, weights_only=True, verbose=False)[0]
    return evaluated
