"""After training: the stages a prototype model goes through before it is shipped.

projection (optionally preceded by a test of the unprojected model and followed by the
last-layer phase) -> health -> pruning. Each stage takes typed settings and returns a typed
result; training (:func:`after_training`, called by ``protolm.train``) and the checkpoint tools
(``protolm.cli``) run the same stage functions. What needs a Lightning Trainer (testing,
saving a checkpoint of the live model, the last-layer phase) comes in as :class:`TrainerHooks`,
so that this module knows nothing of how a run is built.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch

from protolm import projection
from protolm.config import HealthConfig, ProjectConfig, PruneConfig
from protolm.health import HealthReport, HealthSummary, PruneResult, plot_prototypes, prototype_health, prune_prototypes
from protolm.projection import Projection

log = logging.getLogger(__name__)


@dataclass
class TrainerHooks:
    """What the stages need a trainer for, as callables (training passes its Trainer's; a tool its own)."""

    save_checkpoint: Callable[[Path], None]  # a weights-only checkpoint of the model as it is now
    test: Callable[[], dict[str, float]] | None = None  # test metrics of the model as it is now
    train_last_layer: Callable[[int], None] | None = None  # the last-layer phase, for that many epochs
    is_writer: bool = True  # this process writes the run's files (rank 0 under DDP)


@dataclass
class ProjectionResult:
    projection: Projection
    checkpoint: Path  # projected.ckpt
    unprojected: dict[str, float] = field(default_factory=dict)  # unprojected/test/* metrics


@dataclass
class HealthResult:
    """health.json: the report the pruning used (on prune.k's neighbours when that differs from
    health.k) and, when pruning ran, what it removed and the summary after it."""

    report: HealthReport
    pruned: PruneResult | None = None
    after_pruning: HealthSummary | None = None
    checkpoint: Path | None = None  # pruned.ckpt

    def to_dict(self) -> dict:
        record = self.report.to_dict()
        if self.pruned is not None:
            record |= {"pruned": self.pruned.to_dict(), "after_pruning": self.after_pruning.to_dict()}
        return record

    def summary(self) -> dict:
        """What results.json keeps."""
        return {
            "summary": self.report.summary.to_dict(),
            "pruned": self.pruned.to_dict() if self.pruned else None,
            "after_pruning": self.after_pruning.to_dict() if self.after_pruning else None,
        }


@dataclass
class PostTrainingResult:
    checkpoint: str | None  # the weights to ship and evaluate: projected, pruned, or the selected ones
    projected: ProjectionResult | None = None
    health: HealthResult | None = None

    @property
    def metrics(self) -> dict[str, float]:
        """Metrics measured along the way (``unprojected/test/*``)."""
        return self.projected.unprojected if self.projected else {}

    def record(self) -> dict:
        """results.json's ``projection`` and ``health`` entries."""
        return {
            "projection": self.projected.projection.summary() if self.projected else None,
            "health": self.health.summary() if self.health else None,
        }


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path


def load_weights(model, path: str | Path) -> None:
    """The weights of a checkpoint, into ``model`` (its projection record stays as it is)."""
    model.load_weights(torch.load(path, map_location=model.device, weights_only=True)["state_dict"], path)


# --------------------------------------------------------------------------- projection
def projection_stage(
    model, datamodule, project: ProjectConfig, hooks: TrainerHooks, checkpoint: Path, out_dir: Path
) -> ProjectionResult:
    """Project the prototypes (after testing the unprojected model, when asked and possible), then
    the last-layer phase after a replace; save ``checkpoint`` and write prototypes.json in ``out_dir``."""
    unprojected = {}
    if project.report_unprojected and hooks.test is not None:
        log.info("testing the model before projection (project.report_unprojected)")
        unprojected = {f"unprojected/{k}": v for k, v in hooks.test().items()}
    log.info(
        "projecting the %d prototypes onto training examples (project.mode=%s)", model.head.num_prototypes, project.mode
    )
    record = projection.project(model, datamodule, project.mode, project.top_k)
    if project.mode == "replace" and project.last_layer_epochs:
        log.info(
            "training the last layer for %d epoch(s) after the replace (project.last_layer_epochs)",
            project.last_layer_epochs,
        )
        hooks.train_last_layer(project.last_layer_epochs)
    hooks.save_checkpoint(checkpoint)
    if hooks.is_writer:
        write_json(out_dir / "prototypes.json", record.to_dict())
    return ProjectionResult(record, checkpoint, unprojected)


def train_last_layer(model, datamodule, epochs: int, trainer_kwargs: dict, root_dir: str | Path) -> None:
    """ProtoPNet's last-layer phase after a push: only the P -> C weights learn, for ``epochs`` epochs,
    with a Trainer of their own (``trainer_kwargs``: the run's Trainer arguments)."""
    kwargs = {
        **trainer_kwargs,
        "max_epochs": epochs,
        "max_steps": -1,
        "enable_checkpointing": False,
        "num_sanity_val_steps": 0,
        "limit_val_batches": 0,
    }
    trainable = {name: p.requires_grad for name, p in model.named_parameters()}
    model.last_layer_only = True
    # Freeze here, before fit, not in configure_optimizers: DDP registers the parameters that
    # require grad when it wraps the model, before configure_optimizers runs, and would count
    # parameters frozen later as unused.
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("head.last_layer."))
    try:
        L.Trainer(**kwargs, logger=False, default_root_dir=str(root_dir)).fit(model, datamodule=datamodule)
    finally:
        model.last_layer_only = False
        for name, p in model.named_parameters():
            p.requires_grad_(trainable[name])


class ProjectEveryNEpochs(L.Callback):
    """Project the prototypes at the end of every N-th training epoch (``project.every_n_epochs``)."""

    def __init__(self, project: ProjectConfig):
        self.project = project

    def on_train_epoch_end(self, trainer, pl_module):
        if (trainer.current_epoch + 1) % self.project.every_n_epochs == 0:
            projection.project(pl_module, trainer.datamodule, self.project.mode, self.project.top_k)


# ------------------------------------------------------------------------ health, pruning
def measure_health(model, datamodule, health: HealthConfig, k: int | None = None) -> HealthReport:
    """The health report as ``health`` configures it (purity over ``k`` neighbours when given)."""
    return prototype_health(
        model,
        datamodule,
        k=health.k if k is None else k,
        usage_role=health.usage_split,
        duplicate_cosine=health.duplicate_cosine,
    )


def prune_impure(model, datamodule, health: HealthConfig, prune: PruneConfig, report: HealthReport) -> HealthResult:
    """Remove the impure prototypes (purity over prune.k neighbours); report the health after."""
    if prune.k != health.k:
        report = measure_health(model, datamodule, health, k=prune.k)
    pruned = prune_prototypes(model, report, prune.min_purity)
    return HealthResult(report, pruned, measure_health(model, datamodule, health).summary)


def write_health(result: HealthResult, model, datamodule, health: HealthConfig, out_dir: Path) -> list[Path]:
    """health.json and (when ``health.plot``) prototypes_pca.png in ``out_dir``."""
    written = [write_json(out_dir / "health.json", result.to_dict())]
    if health.plot:
        written.append(
            plot_prototypes(model, datamodule, out_dir / "prototypes_pca.png", max_examples=health.plot_max_examples)
        )
    return written


def health_and_pruning(
    model, datamodule, health: HealthConfig, prune: PruneConfig, hooks: TrainerHooks, checkpoint: Path, out_dir: Path
) -> HealthResult:
    """Measure the prototypes' health; prune when ``prune.enabled`` (saving ``checkpoint``); write the report.

    Every process computes the same report (the neighbour search gathers across processes) and
    prunes the same prototypes; the writer writes the files."""
    log.info("measuring prototype health (usage, purity, duplicates) on the %s split", health.usage_split)
    result = HealthResult(measure_health(model, datamodule, health))
    if prune.enabled:
        result = prune_impure(model, datamodule, health, prune, result.report)
    if hooks.is_writer:
        write_health(result, model, datamodule, health, out_dir)
    if prune.enabled:
        hooks.save_checkpoint(checkpoint)
        result.checkpoint = checkpoint
    return result


# ---------------------------------------------------------------------------- the whole
def after_training(
    model,
    datamodule,
    project: ProjectConfig,
    health: HealthConfig,
    prune: PruneConfig,
    selected: str | None,
    run_dir: Path,
    hooks: TrainerHooks,
) -> PostTrainingResult:
    """The stages a run's config asks for, on the selected checkpoint (``selected``; None: the model
    as it is). Writes projected.ckpt / pruned.ckpt in ``run_dir/checkpoints`` and prototypes.json,
    health.json, prototypes_pca.png in ``run_dir``."""
    result = PostTrainingResult(checkpoint=selected)
    if not model.is_prototype:
        return result
    run_dir = Path(run_dir)
    if project.at_end:
        if selected:
            load_weights(model, selected)
        projected = run_dir / "checkpoints" / "projected.ckpt"
        result.projected = projection_stage(model, datamodule, project, hooks, projected, run_dir)
        result.checkpoint = str(projected)
    if health.at_end or prune.enabled:
        if model.projection is None and result.checkpoint:  # not projected: report on the selected weights
            load_weights(model, result.checkpoint)
        pruned = run_dir / "checkpoints" / "pruned.ckpt"
        result.health = health_and_pruning(model, datamodule, health, prune, hooks, pruned, run_dir)
        if result.health.checkpoint is not None:
            result.checkpoint = str(result.health.checkpoint)
    return result
