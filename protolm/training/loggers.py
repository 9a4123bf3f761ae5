"""Experiment loggers from the ``logger`` config group (CSV, TensorBoard, W&B), and what protolm logs to them."""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from protolm.utils.errors import ConfigError

log = logging.getLogger(__name__)


def build_loggers(cfg: DictConfig) -> list:
    """One logger per entry of ``cfg.logger`` that names a ``_target_`` class."""
    loggers = []
    for logger_cfg in (cfg.get("logger") or {}).values():
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
    target = kwargs.pop("_target_")
    if "init_timeout_s" not in kwargs:
        raise ConfigError("logger.wandb.init_timeout_s is missing: the longest wait for W&B to start, in seconds")
    timeout = kwargs.pop("init_timeout_s")
    id_file = Path(cfg.paths.output_dir) / "wandb_run_id"
    run_id = id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:12]
    settings = wandb.Settings(init_timeout=timeout, silent=True)
    try:
        logger = instantiate({"_target_": target}, **kwargs, id=run_id, resume="allow", settings=settings)
        _ = logger.experiment  # start the run now, inside this try, rather than at the first log call
    except Exception as err:  # noqa: BLE001 - any W&B failure: keep training, log locally
        reason = str(err).splitlines()[0][:200] if str(err) else ""
        log.warning(
            "W&B could not start (%s: %s); logging to CSV in %s/csv instead",
            type(err).__name__,
            reason,
            cfg.paths.output_dir,
        )
        return CSVLogger(save_dir=cfg.paths.output_dir, name="csv")
    id_file.write_text(run_id + "\n")
    return logger


def log_prototype_table(trainer, projection) -> None:
    """The projected prototypes as a W&B table (id, class, nearest training example, similarity)."""
    from lightning.pytorch.loggers import WandbLogger

    if not trainer.is_global_zero:
        return
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_table("prototypes", columns=list(projection.TABLE_COLUMNS), data=projection.table_rows())


def log_config(trainer, config: dict) -> None:
    for logger in trainer.loggers:
        logger.log_hyperparams(config)


def log_final_metrics(trainer, metrics: dict) -> None:
    """The run's final figures under ``final/``, in the W&B summary too; then flush and close."""
    for logger in trainer.loggers:
        logger.log_metrics({f"final/{k}": v for k, v in metrics.items()})
        if hasattr(logger.experiment, "summary"):  # W&B: the final figures in the run summary
            logger.experiment.summary.update({f"final/{k}": v for k, v in metrics.items()})
        logger.save()
        if hasattr(logger.experiment, "finish"):  # flush and close the W&B run now, not at exit
            logger.experiment.finish()
