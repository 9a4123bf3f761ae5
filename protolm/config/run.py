"""The run config: the schema of ``conf/config.yaml`` (what ``python run.py`` accepts) and
:func:`read_settings`, which checks a composed config section by section and across sections.

Range and choice checks run in each section's ``__post_init__``, i.e. whenever a section becomes an
object (:func:`protolm.config.reading.section`); the checks that need several sections or the task
(prototypes per class, K, streaming) live here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf, open_dict

from protolm.config.fields import group, option
from protolm.config.model import (
    BackboneConfig,
    InitConfig,
    LinearHeadConfig,
    LossConfig,
    PrototypeHeadConfig,
)
from protolm.config.prototypes import HealthConfig, ProjectConfig, PruneConfig
from protolm.config.reading import head_section, refuse_missing, section
from protolm.config.task import TaskSpec
from protolm.config.trainer import check_trainer_args
from protolm.config.training import CallbacksConfig, DataConfig, OptimConfig
from protolm.utils.errors import ConfigError, check_keys


@dataclass
class RunConfig:
    """The schema of ``conf/config.yaml``: what ``python run.py`` accepts."""

    seed: int = option(42, "seeds everything")
    ckpt_path: str | None = option(
        None, "resume: a .ckpt, a run directory, or last (the newest run started with the same overrides)"
    )
    overwrite: bool = option(False, "allow writing into a run directory that already holds results/checkpoints")
    traceback: bool = option(False, "print full tracebacks on errors (also PROTOLM_DEBUG=1)")
    optimized_metric: str | None = option(
        None, "the results.json metric returned to a sweeper (null: the selection one)"
    )
    plan: bool = option(False, "print the estimated accelerator memory of this run and exit")
    task: Any = option(MISSING, "a task YAML (conf/task/): checked by protolm.config.task.TaskSpec")
    backbone: BackboneConfig = option(MISSING, "a backbone YAML (conf/backbone/)")
    head: Any = option(MISSING, "prototype | linear (conf/head/)")
    loss: LossConfig = group(LossConfig, "the objective's weights and K")
    init: InitConfig = group(InitConfig, "where the encoder starts")
    optim: OptimConfig = group(OptimConfig, "AdamW and the schedule")
    project: ProjectConfig = group(ProjectConfig, "projection onto training examples")
    health: HealthConfig = group(HealthConfig, "prototype health after training")
    prune: PruneConfig = group(PruneConfig, "pruning impure prototypes")
    data: DataConfig = group(DataConfig, "data files, batching, cache")
    trainer: dict[str, Any] = option({}, "lightning.pytorch.Trainer arguments (checked by name and type)")
    logger: Any = option(None, "csv | tensorboard | wandb | none (conf/logger/)")
    callbacks: CallbacksConfig = group(CallbacksConfig, "checkpoints, early stopping, progress")
    paths: Any = option(MISSING, "where runs are written (conf/paths/)")


@dataclass
class Settings:
    """A run's configuration as checked objects (what the code reads; the DictConfig is what is saved)."""

    task: TaskSpec
    backbone: BackboneConfig
    head: PrototypeHeadConfig | LinearHeadConfig
    loss: LossConfig
    init: InitConfig
    optim: OptimConfig
    data: DataConfig
    project: ProjectConfig
    health: HealthConfig
    prune: PruneConfig
    callbacks: CallbacksConfig
    trainer: dict
    seed: int

    @property
    def is_prototype(self) -> bool:
        return isinstance(self.head, PrototypeHeadConfig)


SECTIONS = {
    "backbone": BackboneConfig,
    "loss": LossConfig,
    "init": InitConfig,
    "optim": OptimConfig,
    "data": DataConfig,
    "project": ProjectConfig,
    "health": HealthConfig,
    "prune": PruneConfig,
    "callbacks": CallbacksConfig,
}


def read_settings(cfg: DictConfig | dict, check_trainer: bool = True) -> Settings:
    """Check every section of a run config; fills ``head.num_prototypes`` (in ``cfg`` too) from the task."""
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(cfg)
    check_keys("config", [k for k in cfg if k != "hydra"], {f.name for f in dataclasses.fields(RunConfig)})
    refuse_missing(cfg)
    task = TaskSpec.from_config(OmegaConf.to_container(cfg.task, resolve=True))
    head = head_section(cfg.head)
    parts = {name: section(cfg[name], schema, name) for name, schema in SECTIONS.items()}
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    settings = Settings(task=task, head=head, trainer=trainer, seed=cfg.seed, **parts)
    if settings.is_prototype:
        head.num_prototypes = prototype_count(head, task.name, task.num_classes)
        with open_dict(cfg):
            cfg.head.num_prototypes = head.num_prototypes
        settings.loss.k_for(head.num_prototypes // task.num_classes)
    check_combinations(settings)
    check_streaming(settings)
    if check_trainer:
        check_trainer_args(trainer)
    return settings


def check_combinations(settings: Settings) -> None:
    """Values that are each valid but cannot go together."""
    loss, task = settings.loss, settings.task
    if loss.task + (loss.cohesion + loss.separation if settings.is_prototype else 0) <= 0:
        raise ConfigError("loss.task, loss.cohesion and loss.separation are all 0: nothing to train")
    if task.metric == "f1" and task.num_classes != 2:
        raise ConfigError(f"task.metric=f1 needs two classes; task {task.name} has {task.num_classes} (use f1_macro)")
    if settings.init.two_stage and (settings.init.from_checkpoint or not settings.is_prototype):
        raise ConfigError(
            "init.two_stage=true fine-tunes with the linear head, then trains head=prototype on that encoder: "
            "use it with head=prototype and without init.from_checkpoint"
        )
    if settings.backbone.peft == "lora" and (settings.optim.freeze_backbone or settings.optim.freeze_layers):
        raise ConfigError(
            "backbone.peft=lora already freezes every encoder weight but the adapters: drop "
            "optim.freeze_backbone / optim.freeze_layers (or backbone.peft=lora to freeze without adapters)"
        )
    if settings.backbone.peft == "lora" and settings.optim.backbone_lr != settings.backbone.lr:
        raise ConfigError(
            f"optim.backbone_lr={settings.optim.backbone_lr} would be ignored: under backbone.peft=lora the "
            f"adapters train at backbone.lora.lr ({settings.backbone.lora.lr}); set that instead"
        )


def check_streaming(s: Settings) -> None:
    """``data.streaming=true`` reads the training split in order, once per epoch: what needs the
    whole split at hand is refused here, each with its fix, rather than done differently."""
    if not s.data.streaming:
        return
    conflicts = []
    if s.data.length_grouping:
        conflicts.append("grouping batches by length over the whole split (set data.length_grouping=false)")
    if s.data.max_train_samples is not None:
        conflicts.append("a seeded subset of the split (set data.max_train_samples=null; cut the file instead)")
    carved = [c.split for c in s.task.carve if "train" in (c.split, c.from_split)]
    if carved:
        conflicts.append(
            f"carving {', '.join(carved)} out of train (give task {s.task.name} a validation file and "
            "task.select_on=validation)"
        )
    if not isinstance(s.trainer.get("max_steps"), int) or s.trainer.get("max_steps", -1) <= 0:
        conflicts.append("knowing the number of steps without reading the stream (set trainer.max_steps)")
    if s.data.num_workers:
        conflicts.append("loader workers (set data.num_workers=0)")
    used = stages_needing_the_split(s)
    if used:
        conflicts.append(
            f"random access to the training split, which {', '.join(used)} need (turn them off: "
            "head.prototype_init=random project.at_end=false health.at_end=false; or keep "
            "data.streaming=false, whose memory-mapped Arrow files already hold corpora larger than memory)"
        )
    if conflicts:
        raise ConfigError(
            "data.streaming=true reads the training split as a stream, which rules out " + "; ".join(conflicts)
        )


def stages_needing_the_split(s: Settings) -> list[str]:
    """The prototype stages that are on and read the training split at random."""
    if not s.is_prototype:
        return []
    stages = {
        "head.prototype_init=train_embeddings": s.head.prototype_init == "train_embeddings",
        "project.at_end=true": s.project.at_end,
        "project.every_n_epochs": bool(s.project.every_n_epochs),
        "health.at_end=true": s.health.at_end,
        "prune.enabled=true": s.prune.enabled,
    }
    return [name for name, on in stages.items() if on]


def prototype_count(head: PrototypeHeadConfig, task_name: str, num_classes: int) -> int:
    """P for this task: head.num_prototypes, else prototypes_per_class x C; a multiple of C."""
    count = head.num_prototypes if head.num_prototypes is not None else head.prototypes_per_class * num_classes
    if count < num_classes or count % num_classes:
        lower = max(num_classes, count // num_classes * num_classes)
        raise ConfigError(
            f"head.num_prototypes={count} must be a multiple of task {task_name}'s "
            f"{num_classes} class{'es' if num_classes > 1 else ''} (e.g. {lower} or {lower + num_classes})"
        )
    return count
