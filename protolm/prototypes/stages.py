"""After training: the stages a prototype model goes through before it is shipped.

projection (after measuring the unprojected model, when asked) -> the last-layer phase -> health ->
pruning. The encoder is fixed from here on, so the stages share one pass over each split
(:class:`StageContext` keeps its pooled embeddings). Training (``protolm.training.train``) and the
commands (``protolm project``, ``protolm health``) run the same stage functions; what only a
training run has (its objective, a checkpoint writer of its own) comes in through the context.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from protolm.config import HealthConfig, ProjectConfig, PruneConfig
from protolm.modeling.inference import Precision
from protolm.prototypes.features import Features, encode_split
from protolm.prototypes.health import HealthReport, HealthSettings, HealthSummary, PruneResult, prototype_health
from protolm.prototypes.health_map import plot_prototypes
from protolm.prototypes.last_layer import LastLayerPhase, train_last_layer, unconnected
from protolm.prototypes.projection import project
from protolm.prototypes.pruning import prune_prototypes, remove_prototypes
from protolm.prototypes.records import Projection, projection_of
from protolm.prototypes.temperature import calibrate
from protolm.utils.files import write_json

log = logging.getLogger(__name__)


@dataclass
class StageContext:
    """What every stage reads: the model, its data, where files go, how to save the model, and the
    pooled embeddings of each split, computed once (:meth:`features`)."""

    net: object  # ProtoLMForSequenceClassification
    datamodule: object  # TaskDataModule
    out_dir: Path
    save_checkpoint: Callable[[Path], None]  # a weights-only checkpoint of the model as it is now
    precision: Precision | None = None  # a training run's precision context for the passes
    is_writer: bool = True  # this process writes the files (rank 0 under DDP)
    evaluate: Callable[[str], dict[str, float]] | None = None  # the model's figures on a role's split
    encoded: dict[str, Features] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage, for results.json

    def features(self, role: str) -> Features:
        if role not in self.encoded:
            with self.timed(f"encode_{role}"):
                self.encoded[role] = encode_split(self.net, self.datamodule, role, self.precision)
        return self.encoded[role]

    @contextlib.contextmanager
    def timed(self, stage: str):
        """Times the block as ``stage`` (results.json's timings), with a log line at its start and end."""
        log.info("stage %s started", stage)
        started = time.time()
        try:
            yield
        finally:
            seconds = time.time() - started
            self.timings[stage] = round(self.timings.get(stage, 0.0) + seconds, 2)
        log.info("stage %s finished in %.1f s", stage, seconds)


@dataclass
class ProjectionResult:
    projection: Projection
    checkpoint: Path  # projected.ckpt
    unprojected: dict[str, float] = field(default_factory=dict)  # unprojected/test/* metrics
    unconnected: list[int] = field(default_factory=list)  # prototypes a sparse last layer left without a connection
    temperature: dict | None = None  # project.temperature=selection: T and its cross-fitted evidence

    def summary(self) -> dict:
        """What results.json keeps: the projection's summary, the prototypes the last layer removed
        and the temperature fitted."""
        return self.projection.summary() | {"removed_unconnected": self.unconnected, "temperature": self.temperature}


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
            "projection": self.projected.summary() if self.projected else None,
            "health": self.health.summary() if self.health else None,
        }


# --------------------------------------------------------------------------- projection
def projection_stage(
    ctx: StageContext, project_cfg: ProjectConfig, phase: LastLayerPhase | None, checkpoint: Path
) -> ProjectionResult:
    """Project the prototypes (after measuring the unprojected model, when asked and possible), then
    the last-layer phase after a replace; save ``checkpoint`` and write prototypes.json."""
    unprojected = {}
    if project_cfg.report_unprojected and ctx.evaluate is not None:
        log.info("testing the model before projection (project.report_unprojected)")
        unprojected = {f"unprojected/{k}": v for k, v in ctx.evaluate("test").items()}
    train, split = ctx.features("train"), ctx.datamodule.role_split("train")
    retrain = project_cfg.mode == "replace" and phase is not None and phase.epochs > 0
    teacher = train.logits(ctx.net.head, ctx.net.device) if retrain and phase.objective == "distill" else None
    log.info("projecting the %d prototypes onto %d training examples (project.mode=%s)",
             ctx.net.head.num_prototypes, len(train), project_cfg.mode)  # fmt: skip
    with ctx.timed("projection"):
        record = project(ctx.net, train, split, project_cfg.mode, project_cfg.top_k)
    removed = []
    if retrain:
        log.info("training the last layer for %d epoch(s) after the replace (project.last_layer_*)", phase.epochs)
        with ctx.timed("last_layer"):
            train_last_layer(ctx.net.head, train, split.lengths, phase, teacher)
            removed = remove_prototypes(ctx.net, ~unconnected(ctx.net.head))
        record = projection_of(ctx.net)
    temperature = selection_temperature(ctx) if project_cfg.temperature == "selection" else None
    ctx.save_checkpoint(checkpoint)
    if ctx.is_writer:
        write_json(ctx.out_dir / "prototypes.json", record.to_dict())
    return ProjectionResult(record, checkpoint, unprojected, removed, temperature)


def selection_temperature(ctx: StageContext) -> dict | None:
    """Fit a temperature on the selection split and fold it into the last layer (classification only)."""
    head = ctx.net.head
    if head.num_classes == 1:
        log.info("project.temperature=selection: a regression head has no probabilities to calibrate; skipped")
        return None
    val = ctx.features("val")
    with ctx.timed("temperature"):
        found = calibrate(head, val.logits(head, ctx.net.device), val.labels)
    log.info(
        "temperature %.3f fitted on the selection split and folded into the last layer "
        "(cross-fitted selection cross-entropy %.4f -> %.4f)",
        found["temperature"], found["ce_without"], found["ce_with"],
    )  # fmt: skip
    return found


# ------------------------------------------------------------------------ health, pruning
def measure_health(ctx: StageContext, health: HealthConfig, k: int | None = None) -> HealthReport:
    """The health report as ``health`` configures it (purity over ``k`` neighbours when given)."""
    usage_split = ctx.datamodule.role_split(health.usage_split).name
    settings = HealthSettings(health.k if k is None else k, health.duplicate_cosine, usage_split)
    return prototype_health(ctx.net, ctx.features("train"), ctx.features(health.usage_split), settings)


def health_and_pruning(ctx: StageContext, health: HealthConfig, prune: PruneConfig, checkpoint: Path) -> HealthResult:
    """Measure the prototypes' health; prune when ``prune.enabled`` (saving ``checkpoint``); write
    health.json (and the map when ``health.plot``). Every process computes the same report and
    prunes the same prototypes; the writer writes the files."""
    log.info("measuring prototype health (usage, purity, duplicates) on the %s split", health.usage_split)
    with ctx.timed("health"):
        result = _health_and_pruning(ctx, health, prune)
    if ctx.is_writer:
        write_json(ctx.out_dir / "health.json", result.to_dict())
        if health.plot:
            plot_prototypes(
                ctx.net, ctx.features("train"), ctx.out_dir / "prototypes_pca.png", health.plot_max_examples
            )
    if prune.enabled:
        ctx.save_checkpoint(checkpoint)
        result.checkpoint = checkpoint
    return result


def _health_and_pruning(ctx: StageContext, health: HealthConfig, prune: PruneConfig) -> HealthResult:
    result = HealthResult(measure_health(ctx, health))
    if prune.enabled:
        report = result.report if prune.k == health.k else measure_health(ctx, health, k=prune.k)
        pruned = prune_prototypes(ctx.net, report, prune.min_purity)
        result = HealthResult(report, pruned, measure_health(ctx, health).summary)
    return result


# ---------------------------------------------------------------------------- the whole
@dataclass
class PostTraining:
    """The stages a run's config asks for."""

    project: ProjectConfig
    health: HealthConfig
    prune: PruneConfig
    last_layer: LastLayerPhase | None = None


def after_training(ctx: StageContext, stages: PostTraining) -> PostTrainingResult:
    """The stages on the model as it is (the selected checkpoint's weights). Writes projected.ckpt /
    pruned.ckpt in ``out_dir/checkpoints`` and prototypes.json, health.json, prototypes_pca.png in ``out_dir``."""
    result = PostTrainingResult(checkpoint=None)
    if not ctx.net.config.is_prototype:
        return result
    if stages.project.at_end:
        projected = ctx.out_dir / "checkpoints" / "projected.ckpt"
        result.projected = projection_stage(ctx, stages.project, stages.last_layer, projected)
        result.checkpoint = str(projected)
    if stages.health.at_end or stages.prune.enabled:
        pruned = ctx.out_dir / "checkpoints" / "pruned.ckpt"
        result.health = health_and_pruning(ctx, stages.health, stages.prune, pruned)
        if result.health.checkpoint is not None:
            result.checkpoint = str(result.health.checkpoint)
    return result
