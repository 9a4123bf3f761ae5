"""Training a run from its composed config: the body of ``python run.py``."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from protolm import backbone as backbones
from protolm import config as config_checks
from protolm.callbacks import AtomicCheckpointIO, ProjectEveryNEpochs, ResumeTrainingOrder, SaveOnInterrupt
from protolm.data.datamodule import TaskDataModule
from protolm.data.task import TaskSpec
from protolm.errors import check_choice
from protolm.model import ProtoLM
from protolm.runs import resolve_resume, tokenizer_files

log = logging.getLogger(__name__)


def build_datamodule(cfg: DictConfig, task: TaskSpec, tokenizer) -> TaskDataModule:
    return TaskDataModule(task, tokenizer, seed=cfg.seed, **OmegaConf.to_container(cfg.data, resolve=True))


def task_info(task: TaskSpec) -> dict:
    return {
        "name": task.name,
        "num_classes": task.num_classes,
        "regression": task.is_regression,
        "labels": task.labels,
        "pair": task.is_pair,
    }


def build_model(cfg: DictConfig, task: TaskSpec) -> ProtoLM:
    config_checks.fill_num_prototypes(cfg, task)
    sections = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("backbone", "head", "loss", "optim")}
    return ProtoLM(**sections, task=task_info(task), seed=cfg.seed)


def monitor(task: TaskSpec) -> tuple[str, str]:
    return f"val/{task.metric}", "min" if task.metric == "mse" else "max"


def build_callbacks(cfg: DictConfig, task: TaskSpec, ckpt_dir: Path) -> tuple[list, L.Callback]:
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, RichProgressBar, TQDMProgressBar

    cb = cfg.callbacks
    metric, mode = monitor(task)
    checkpoint = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="best-epoch{epoch:02d}-step{step}",
        monitor=metric,
        mode=mode,
        save_top_k=cb.checkpoint.save_top_k,
        auto_insert_metric_name=False,
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
    if cfg.head.name == "prototype" and cfg.project.every_n_epochs:
        callbacks.append(ProjectEveryNEpochs(cfg.project.every_n_epochs, cfg.project.mode, cfg.project.top_k))
    if cb.early_stopping.enabled:
        callbacks.append(EarlyStopping(monitor=metric, mode=mode, patience=cb.early_stopping.patience))
    if cfg.trainer.enable_progress_bar:
        check_choice("callbacks.progress_bar", cb.progress_bar, ("rich", "tqdm", "none"))
        if cb.progress_bar == "rich":
            callbacks.append(RichProgressBar(leave=True))
        elif cb.progress_bar == "tqdm":
            callbacks.append(TQDMProgressBar())
    return callbacks, checkpoint


def build_loggers(cfg: DictConfig) -> list:
    loggers = []
    for name, logger_cfg in (cfg.get("logger") or {}).items():
        if not logger_cfg or "_target_" not in logger_cfg:
            continue
        if logger_cfg["_target_"].endswith("WandbLogger"):
            loggers.append(wandb_logger(cfg, logger_cfg))
        else:
            loggers.append(instantiate(logger_cfg))
    return loggers


def wandb_logger(cfg: DictConfig, logger_cfg: DictConfig):
    """A W&B logger that resumes the run's W&B run and never blocks training.

    The W&B run id is kept in the run directory, so ``ckpt_path=last`` continues the same W&B
    run. If W&B cannot start (no network, no login, bad settings) within ``init_timeout_s``,
    training goes on with a CSV logger and a warning.
    """
    import uuid

    import wandb
    from lightning.pytorch.loggers import CSVLogger

    kwargs = OmegaConf.to_container(logger_cfg, resolve=True)
    kwargs.pop("_target_")
    timeout = kwargs.pop("init_timeout_s", 60)
    id_file = Path(cfg.paths.output_dir) / "wandb_run_id"
    run_id = id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:12]
    try:
        logger = instantiate(
            {"_target_": logger_cfg["_target_"]},
            **kwargs,
            id=run_id,
            resume="allow",
            settings=wandb.Settings(init_timeout=timeout, silent=True),
        )
        logger.experiment  # start the run now, inside this try, rather than at the first log call
    except Exception as err:  # noqa: BLE001 - any W&B failure: keep training, log locally
        log.warning(
            "W&B could not start (%s: %s); logging to CSV in %s/csv instead",
            type(err).__name__,
            str(err).splitlines()[0][:200] if str(err) else "",
            cfg.paths.output_dir,
        )
        return CSVLogger(save_dir=cfg.paths.output_dir, name="csv")
    id_file.write_text(run_id + "\n")
    return logger


def log_prototype_table(trainer, model) -> None:
    """The projected prototypes as a W&B table (id, class, nearest training example, similarity)."""
    from lightning.pytorch.loggers import WandbLogger

    if not model.projection or not trainer.is_global_zero:
        return
    rows = [
        [
            p["prototype_id"],
            p.get("class_name") or p["class"],
            p["nearest"][0]["text"] if p["nearest"] else "",
            p["nearest"][0]["similarity"] if p["nearest"] else None,
        ]
        for p in model.projection["prototypes"]
    ]
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_table(
                "prototypes", columns=["prototype_id", "class", "nearest training example", "similarity"], data=rows
            )


def trainer_kwargs(cfg: DictConfig, **changes) -> dict:
    """The ``trainer`` section as Lightning Trainer arguments."""
    kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    kwargs.pop("_target_", None)
    # protolm's sampler shards data across processes itself (so length grouping survives DDP).
    kwargs.setdefault("use_distributed_sampler", False)
    return {**kwargs, **changes}


def build_trainer(cfg: DictConfig, callbacks: list, loggers: list) -> L.Trainer:
    return L.Trainer(
        **trainer_kwargs(cfg),
        callbacks=callbacks,
        logger=loggers or False,
        plugins=[AtomicCheckpointIO()],
        default_root_dir=cfg.paths.output_dir,
    )


def load_weights(model, path) -> None:
    import torch

    model.load_state_dict(torch.load(path, map_location=model.device, weights_only=True)["state_dict"])


def train(cfg: DictConfig) -> dict:
    """Fit, select the best checkpoint on ``task.select_on``, test on ``task.report_on``, write results.json."""
    started = time.time()
    task = TaskSpec.from_config(OmegaConf.to_container(cfg.task, resolve=True))
    config_checks.validate(cfg, task)
    run_dir, ckpt_path = resolve_resume(cfg)
    with open_dict(cfg):  # a resumed run keeps writing (checkpoints, logs, results) where it began
        cfg.paths.output_dir = str(run_dir)
    ckpt_dir = run_dir / "checkpoints"
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    tokenizer = backbones.load_tokenizer(OmegaConf.to_container(cfg.backbone, resolve=True))
    datamodule = build_datamodule(cfg, task, tokenizer)
    model = build_model(cfg, task)
    model.artifacts = {"config": config_checks.to_container(cfg), "tokenizer_files": tokenizer_files(tokenizer)}
    callbacks, checkpoint = build_callbacks(cfg, task, ckpt_dir)
    loggers = build_loggers(cfg)
    trainer = build_trainer(cfg, callbacks, loggers)
    for logger in trainer.loggers:
        logger.log_hyperparams(model.artifacts["config"])

    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    trained = time.time()
    last_path = ckpt_dir / "last.ckpt"
    best = checkpoint.best_model_path or (str(last_path) if last_path.exists() else None)
    extra_metrics, projection = {}, None
    health = None
    if model.is_prototype and cfg.project.at_end:
        best, extra_metrics = project_selected(cfg, trainer, model, datamodule, best, ckpt_dir)
        projection = {k: v for k, v in model.projection.items() if k != "prototypes"}
        log_prototype_table(trainer, model)
    if model.is_prototype and (cfg.health.at_end or cfg.prune.enabled):
        best, health = check_health(cfg, trainer, model, datamodule, best, ckpt_dir)
    # Re-evaluate the selected checkpoint on both splits: the figures come from one set of weights.
    val = trainer.validate(model, datamodule=datamodule, ckpt_path=best, weights_only=True, verbose=False)[0]
    test = trainer.test(model, datamodule=datamodule, ckpt_path=best, weights_only=True, verbose=False)[0]
    results = {
        "task": task.name,
        "backbone": cfg.backbone.name,
        "backbone_source": backbones.resolve_source(OmegaConf.to_container(cfg.backbone, resolve=True)),
        "head": cfg.head.name,
        "num_prototypes": cfg.head.get("num_prototypes") if cfg.head.name == "prototype" else None,
        "seed": cfg.seed,
        "metrics": {k: float(v) for k, v in sorted({**val, **test, **extra_metrics}.items())},
        "selection": {
            "metric": monitor(task)[0],
            "split": task.select_on,
            "best_score": _float(checkpoint.best_model_score),
        },
        "splits": datamodule.describe(),
        "best_checkpoint": str(best) if best else None,  # what the metrics were computed with
        "selected_checkpoint": checkpoint.best_model_path or None,  # best on val, before projection/pruning
        "projection": projection,
        "health": health,
        "run_dir": str(run_dir),
        "epochs_completed": trainer.current_epoch,
        "global_step": trainer.global_step,
        "train_seconds": round(trained - started, 1),
        "config": model.artifacts["config"],
    }
    if trainer.is_global_zero:
        (run_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        for logger in trainer.loggers:
            logger.log_metrics({f"final/{k}": v for k, v in results["metrics"].items()})
            if hasattr(logger.experiment, "summary"):  # W&B: the final figures in the run summary
                logger.experiment.summary.update({f"final/{k}": v for k, v in results["metrics"].items()})
            logger.save()
            if hasattr(logger.experiment, "finish"):  # flush and close the W&B run now, not at exit
                logger.experiment.finish()
    return results


def project_selected(cfg, trainer, model, datamodule, best, ckpt_dir: Path) -> tuple[str, dict]:
    """Project the selected model's prototypes (and optionally retrain its last layer); save projected.ckpt."""
    from protolm.projection import project

    if best:
        load_weights(model, best)
    extra = {}
    if cfg.project.report_unprojected:
        tested = trainer.test(model, datamodule=datamodule, verbose=False)[0]
        extra = {f"unprojected/{k}": v for k, v in tested.items()}
    project(model, datamodule, cfg.project.mode, cfg.project.top_k)
    if cfg.project.mode == "replace" and cfg.project.last_layer_epochs:
        train_last_layer(cfg, model, datamodule)
    path = ckpt_dir / "projected.ckpt"
    trainer.save_checkpoint(path, weights_only=True)
    if trainer.is_global_zero:
        (Path(cfg.paths.output_dir) / "prototypes.json").write_text(json.dumps(model.projection, indent=1) + "\n")
    return str(path), extra


def check_health(cfg, trainer, model, datamodule, best, ckpt_dir: Path) -> tuple[str, dict]:
    """health.json and prototypes_pca.png in the run directory; prune (pruned.ckpt) when asked."""
    from protolm.commands import health_report

    if model.projection is None and best:  # not projected: report on the selected weights
        load_weights(model, best)
    # Every process computes the same report (the neighbour search gathers across processes)
    # and prunes the same prototypes; rank 0 writes the files.
    report = health_report(model, datamodule, cfg, Path(cfg.paths.output_dir), write=trainer.is_global_zero)
    if cfg.prune.enabled:
        best = str(ckpt_dir / "pruned.ckpt")
        trainer.save_checkpoint(best, weights_only=True)
    return best, {
        "summary": report["summary"],
        "pruned": report.get("pruned"),
        "after_pruning": report.get("after_pruning"),
    }


def train_last_layer(cfg, model, datamodule) -> None:
    """ProtoPNet's last-layer phase after a push: only the P -> C weights learn, for project.last_layer_epochs."""
    kwargs = trainer_kwargs(
        cfg,
        max_epochs=cfg.project.last_layer_epochs,
        max_steps=-1,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    trainable = {name: p.requires_grad for name, p in model.named_parameters()}
    model.last_layer_only = True
    try:
        L.Trainer(**kwargs, logger=False, default_root_dir=cfg.paths.output_dir).fit(model, datamodule=datamodule)
    finally:
        model.last_layer_only = False
        for name, p in model.named_parameters():
            p.requires_grad_(trainable[name])


def _float(value):
    return None if value is None else float(value)
