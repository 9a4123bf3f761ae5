"""Build a run's parts from its checked settings: encoder + head -> the model (a
``ProtoLMForSequenceClassification``), with its objective -> the training module; data module;
Lightning trainer and its callbacks. Nothing here trains; ``protolm.training.train`` runs what is built."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import lightning as L

from protolm.config import OptimConfig, PrototypeHeadConfig, Settings, TaskSpec
from protolm.data.datamodule import TaskDataModule
from protolm.modeling import backbone as backbones
from protolm.modeling.configuration_protolm import ProtoLMConfig
from protolm.modeling.losses import PrototypeObjective, TaskObjective
from protolm.modeling.modeling_protolm import ProtoLMForSequenceClassification, build_head
from protolm.training.checkpoint_io import AtomicCheckpointIO
from protolm.training.module import ProtoLM


def head_architecture(settings: Settings) -> dict:
    """The configured head as the keyword arguments of its class (protolm.modeling.head)."""
    head = settings.head
    if not isinstance(head, PrototypeHeadConfig):
        return {"pooling": settings.backbone.pooling, "dropout": head.dropout}
    return {
        "num_prototypes": head.num_prototypes,
        "similarity": head.similarity,
        "eps": head.eps,
        "attention_dim": head.attention_dim,
        "incorrect_class_weight": head.incorrect_class_weight,
        "init_std": head.init_std,
        "last_layer_bias": head.last_layer_bias,
        "attention_init": head.attention_init,
    }


def configured_head(settings: Settings, hidden_size: int):
    """The configured head with fresh weights (random prototypes count as initialised: nothing to do at fit start)."""
    head_type = "prototype" if settings.is_prototype else "linear"
    head = build_head(head_type, hidden_size, settings.task.num_classes, head_architecture(settings))
    if settings.is_prototype and settings.head.prototype_init == "random":
        head.prototypes_initialized.fill_(True)
    return head


def model_config(settings: Settings, encoder, head) -> ProtoLMConfig:
    """The model's architecture as its transformers config (what every checkpoint and export stores)."""
    task = settings.task
    encoder_config = encoder.config.to_dict()
    encoder_config["_name_or_path"] = settings.backbone.pretrained  # the hub id, not a local path
    if task.is_regression:
        labels = {"num_labels": 1, "problem_type": "regression"}
    else:
        labels = {
            "id2label": dict(enumerate(task.labels)),
            "label2id": {name: c for c, name in enumerate(task.labels)},
            "problem_type": "single_label_classification",
        }
    return ProtoLMConfig(
        encoder=encoder_config,
        head_type="prototype" if settings.is_prototype else "linear",
        head=head.architecture(),
        task=task.name,
        text_pair=task.is_pair,
        max_seq_length=settings.data.max_length,
        **labels,
    )


def build_objective(settings: Settings, head):
    """Cross-entropy (MSE) for the linear head; plus cohesion and separation for the prototype head."""
    loss, regression = settings.loss, settings.task.is_regression
    if not settings.is_prototype:
        return TaskObjective(regression, loss.task)
    weights = {"task": loss.task, "cohesion": loss.cohesion, "separation": loss.separation}
    k = loss.k_for(settings.head.num_prototypes // settings.task.num_classes)
    return PrototypeObjective(head, regression, weights, k, reference_signs=loss.reference_signs)


def build_model(settings: Settings, encoder=None) -> ProtoLM:
    """The training module of a run; ``encoder`` pre-built (e.g. on the meta device), else loaded."""
    if encoder is None:
        encoder = backbones.load_encoder(settings.backbone, settings.data.hub_timeout_s)
    if settings.backbone.peft == "lora":  # its own weights frozen; the adapters train
        encoder = backbones.with_lora(encoder, settings.backbone)
    elif settings.optim.freeze_backbone:
        encoder.requires_grad_(False)
    elif settings.optim.freeze_layers:
        backbones.freeze_lower_layers(encoder, settings.optim.freeze_layers)
    head = configured_head(settings, encoder.config.hidden_size)
    net = ProtoLMForSequenceClassification(model_config(settings, encoder, head), encoder=encoder, head=head)
    model = ProtoLM(
        net,
        build_objective(settings, head),
        effective_optim(settings),
        seed=settings.seed,
        compile_encoder=settings.backbone.compile,
    )
    if settings.backbone.peft == "lora":
        weights_from = None if settings.backbone.random_init else settings.backbone.pretrained
        model.adapted_encoder(dataclasses.asdict(settings.backbone), weights_from)
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
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    from protolm.training.callbacks import ProjectEveryNEpochs
    from protolm.training.resume import ResumeTrainingOrder, SaveOnInterrupt

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
    if settings.trainer.get("enable_progress_bar", True):
        callbacks.append(progress_display(settings))
    return callbacks, checkpoint


def progress_display(settings: Settings) -> L.Callback:
    """How training shows its progress: on a terminal the bar ``callbacks.progress_bar`` names;
    elsewhere (a file, nohup, a cluster job), or with ``progress_bar=none``, a log line every
    ``callbacks.progress_every_s`` (one progress callback either way: Lightning adds no bar of its own)."""
    from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar

    from protolm.training.callbacks import ProgressLines
    from protolm.utils.progress import on_terminal

    cb = settings.callbacks
    if cb.progress_bar == "none" or not on_terminal():
        return ProgressLines(cb.progress_every_s)
    return RichProgressBar(leave=True) if cb.progress_bar == "rich" else TQDMProgressBar()


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


def start_encoder_from(model: ProtoLM, source: str | Path) -> Path:
    """Load the fine-tuned encoder of an earlier run (its directory: the checkpoint it shipped; a
    .ckpt; or an exported model) into ``model``'s encoder; the head keeps its fresh initialisation.
    Returns what was read."""
    from protolm.modeling.saved import load_saved, locate, read_checkpoint
    from protolm.utils.errors import CheckpointError

    located = locate(source, "init.from_checkpoint")
    if located.kind == "checkpoint":
        state = {k.removeprefix("model."): v for k, v in read_checkpoint(located.path)["state_dict"].items()}
    else:
        state = load_saved(source, key="init.from_checkpoint").net.state_dict()
    encoder = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
    try:
        missing, unexpected = model.encoder.load_state_dict(encoder, strict=False)
    except RuntimeError as err:  # tensors of other shapes: another architecture
        missing, unexpected = [str(err).splitlines()[-1].strip()[:160]], []
    if missing or unexpected or not encoder:
        raise CheckpointError(
            f"init.from_checkpoint={source}: {located.path}'s encoder does not fit this backbone "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]}): give a run of the same backbone"
        )
    return Path(str(located.path))
