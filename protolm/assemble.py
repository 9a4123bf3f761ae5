"""Build a run's parts from its checked settings: encoder + head + objective -> model; data module;
Lightning trainer and its callbacks. Nothing here trains; ``protolm.train`` runs what is built."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import lightning as L

from protolm import backbone as backbones
from protolm.checkpoint_io import AtomicCheckpointIO
from protolm.config import OptimConfig, PrototypeHeadConfig, Settings
from protolm.data.datamodule import TaskDataModule
from protolm.data.task import TaskSpec
from protolm.head import LinearHead, PrototypeHead
from protolm.losses import PrototypeObjective, TaskObjective
from protolm.model import ProtoLM, TaskInfo


def build_head(settings: Settings, hidden_size: int, prototype_class=None):
    """The configured head; ``prototype_class`` rebuilds a head whose blocks are not P/C each (pruned)."""
    head, num_classes = settings.head, settings.task.num_classes
    if not isinstance(head, PrototypeHeadConfig):
        return LinearHead(hidden_size, num_classes, pooling=settings.backbone.pooling, dropout=head.dropout)
    built = PrototypeHead(
        hidden_size,
        head.num_prototypes,
        num_classes,
        similarity=head.similarity,
        eps=head.eps,
        attention_dim=head.attention_dim,
        incorrect_class_weight=head.incorrect_class_weight,
        init_std=head.init_std,
        prototype_class=prototype_class,
        last_layer_bias=head.last_layer_bias,
        attention_init=head.attention_init,
    )
    if head.prototype_init == "random":  # N(0, init_std^2) as drawn: nothing to initialise at fit start
        built.prototypes_initialized.fill_(True)
    return built


def build_objective(settings: Settings, head):
    """Cross-entropy (MSE) for the linear head; plus cohesion and separation for the prototype head."""
    loss, regression = settings.loss, settings.task.is_regression
    if not settings.is_prototype:
        return TaskObjective(regression, loss.task)
    weights = {"task": loss.task, "cohesion": loss.cohesion, "separation": loss.separation}
    k = loss.k_for(settings.head.num_prototypes // settings.task.num_classes)
    return PrototypeObjective(head, regression, weights, k, reference_signs=loss.reference_signs)


def build_model(settings: Settings, encoder=None, prototype_class=None) -> ProtoLM:
    """The model of a run; ``encoder`` pre-built when restoring from a checkpoint without the hub."""
    if encoder is None:
        encoder = backbones.load_encoder(settings.backbone, settings.data.hub_timeout_s)
    if settings.backbone.peft == "lora":  # its own weights frozen; the adapters train
        encoder = backbones.with_lora(encoder, settings.backbone)
    elif settings.optim.freeze_backbone:
        encoder.requires_grad_(False)
    elif settings.optim.freeze_layers:
        backbones.freeze_lower_layers(encoder, settings.optim.freeze_layers)
    head = build_head(settings, encoder.config.hidden_size, prototype_class)
    model = ProtoLM(
        encoder,
        head,
        build_objective(settings, head),
        effective_optim(settings),
        TaskInfo.from_spec(settings.task),
        seed=settings.seed,
        compile_encoder=settings.backbone.compile,
    )
    if settings.backbone.peft == "lora" and not settings.backbone.random_init:
        model.leave_pretrained_weights_out(settings.backbone.pretrained)
    return model


def effective_optim(settings: Settings) -> OptimConfig:
    """The optimisation settings the model trains with: under the prototype head the encoder's
    learning rate is ``optim.backbone_lr`` x ``head.encoder_lr_scale``; LoRA adapters train at
    ``backbone.lora.lr``."""
    if settings.backbone.peft == "lora":
        return dataclasses.replace(settings.optim, backbone_lr=settings.backbone.lora.lr)
    if not settings.is_prototype or settings.head.encoder_lr_scale == 1.0:
        return settings.optim
    return dataclasses.replace(settings.optim, backbone_lr=settings.optim.backbone_lr * settings.head.encoder_lr_scale)


def build_datamodule(settings: Settings, tokenizer) -> TaskDataModule:
    return TaskDataModule(settings.task, tokenizer, settings.data, seed=settings.seed)


def selection_metric(task: TaskSpec) -> tuple[str, str]:
    """The validation metric that selects checkpoints, and whether higher is better."""
    return f"val/{task.metric}", "min" if task.metric == "mse" else "max"


def build_callbacks(settings: Settings, ckpt_dir: Path) -> tuple[list, L.Callback]:
    """The run's callbacks, and the ModelCheckpoint that selects the best checkpoint."""
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, RichProgressBar, TQDMProgressBar

    from protolm.pipeline import ProjectEveryNEpochs
    from protolm.resume import ResumeTrainingOrder, SaveOnInterrupt

    cb = settings.callbacks
    metric, mode = selection_metric(settings.task)
    checkpoint = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="best-epoch{epoch:02d}-step{step}",
        monitor=metric,
        mode=mode,
        save_top_k=cb.checkpoint.save_top_k,
        auto_insert_metric_name=False,
        save_weights_only=True,  # a model to ship or project; resuming needs only last.ckpt's full state
    )
    callbacks = [checkpoint, ResumeTrainingOrder()]
    # last.ckpt at every epoch end (and every N steps when asked) by callbacks of its own: since
    # Lightning 2.6, save_last only writes when the best checkpoint was written too.
    last = dict(dirpath=ckpt_dir, filename="last", monitor=None, save_top_k=1, enable_version_counter=False)
    if cb.checkpoint.save_last:
        callbacks.append(ModelCheckpoint(**last, every_n_epochs=1))
    if cb.checkpoint.every_n_train_steps:
        callbacks.append(ModelCheckpoint(**last, every_n_train_steps=cb.checkpoint.every_n_train_steps))
    if cb.checkpoint.save_on_sigterm:
        callbacks.append(SaveOnInterrupt(ckpt_dir / "last.ckpt"))
    if settings.is_prototype and settings.project.every_n_epochs:
        callbacks.append(ProjectEveryNEpochs(settings.project))
    if cb.early_stopping.enabled:
        callbacks.append(EarlyStopping(monitor=metric, mode=mode, patience=cb.early_stopping.patience))
    bars = {"rich": lambda: RichProgressBar(leave=True), "tqdm": TQDMProgressBar, "none": None}
    if settings.trainer.get("enable_progress_bar", True) and bars[cb.progress_bar] is not None:
        callbacks.append(bars[cb.progress_bar]())
    return callbacks, checkpoint


def trainer_kwargs(settings: Settings, **changes) -> dict:
    """The ``trainer`` section as Lightning Trainer arguments."""
    # protolm's sampler shards data across processes itself (so length grouping survives DDP).
    return {"use_distributed_sampler": False, **settings.trainer, **changes}


def build_trainer(settings: Settings, callbacks: list, loggers: list, output_dir: Path) -> L.Trainer:
    return L.Trainer(
        **trainer_kwargs(settings),
        callbacks=callbacks,
        logger=loggers or False,
        plugins=[AtomicCheckpointIO()],
        default_root_dir=str(output_dir),
    )
