"""Training a run from its composed config: the body of ``python run.py``.

read and check the config -> build tokenizer, data, model, trainer (protolm.training.assemble) -> fit ->
the post-training stages on the selected checkpoint (protolm.prototypes.stages) -> evaluate the shipped
model on the selection and the reported split -> results.json.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import lightning as L
from omegaconf import DictConfig, OmegaConf, open_dict

from protolm.config import LinearHeadConfig, Settings, read_settings, to_container
from protolm.modeling import backbone as backbones
from protolm.modeling.saved import tokenizer_files
from protolm.training.assemble import (
    build_callbacks,
    build_datamodule,
    build_model,
    build_trainer,
    selection_metric,
    start_encoder_from,
)
from protolm.training.loggers import build_loggers, log_config, log_final_metrics, log_prototype_table
from protolm.training.resume import ctrl_c_given_back
from protolm.training.runs import finish_checkpoints, holding, resolve_resume
from protolm.training.ship import Shipped, ship
from protolm.utils.progress import lines_every

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict:
    """Fit, select the best checkpoint on ``task.select_on``, test on ``task.report_on``, write results.json."""
    started = time.time()
    settings = read_settings(cfg)
    if settings.init.two_stage:
        return train_two_stages(cfg)
    run_dir, ckpt_path = resolve_resume(cfg)
    with open_dict(cfg):  # a resumed run keeps writing (checkpoints, logs, results) where it began
        cfg.paths.output_dir = str(run_dir)
    # one process per run directory: a second one is refused, not mixed in
    with holding(run_dir), lines_every(settings.callbacks.progress_every_s):
        return fit_and_report(cfg, settings, run_dir, ckpt_path, started)


def fit_and_report(cfg: DictConfig, settings: Settings, run_dir: Path, ckpt_path: str | None, started: float) -> dict:
    """The run itself, in the run directory this process holds."""
    L.seed_everything(settings.seed, workers=True, verbose=False)
    datamodule, model = build_data_and_model(settings, cfg)
    # Read the data before the trainer and its loggers write anything: missing or bad data is
    # refused with the run directory still empty, so the refusal leaves nothing behind.
    datamodule.setup("fit")
    callbacks, checkpoint = build_callbacks(settings, run_dir / "checkpoints")
    trainer = build_trainer(settings, callbacks, build_loggers(cfg), run_dir)
    log_config(trainer, model.artifacts["config"])
    parameters = log_parameters(model)
    with ctrl_c_given_back():
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    train_seconds = time.time() - started
    shipped = ship(settings, trainer, model, datamodule, selected_checkpoint(checkpoint, run_dir), run_dir)
    if shipped.post.projected is not None:  # the prototypes as projected (before any pruning renumbers them)
        log_prototype_table(trainer, shipped.post.projected.projection)
    if trainer.is_global_zero and shipped.post.checkpoint:
        keep = settings.callbacks.checkpoint.keep_intermediate
        shipped.post.checkpoint = str(finish_checkpoints(run_dir / "checkpoints", Path(shipped.post.checkpoint), keep))
    timings = {"train": round(train_seconds, 1), **shipped.timings, "total": round(time.time() - started, 1)}
    results = results_record(settings, model, datamodule, checkpoint, shipped, run_dir, trainer)
    results |= {"parameters": parameters, "train_seconds": round(train_seconds, 1), "timings": timings}
    if trainer.is_global_zero:
        (run_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        log_final_metrics(trainer, results["metrics"])
    return results


def log_parameters(model) -> dict:
    """The model's parameter counts as trained (later phases freeze more), logged."""
    parameters = backbones.parameter_counts(model)
    log.info(
        "parameters: %s, of which %s train (%.3g %%)",
        f"{parameters['total']:,}",
        f"{parameters['trainable']:,}",
        100 * parameters["trainable_fraction"],
    )
    return parameters


def selected_checkpoint(checkpoint, run_dir: Path) -> str | None:
    """The best checkpoint on the selection split, else the last state."""
    last = run_dir / "checkpoints" / "last.ckpt"
    selected = checkpoint.best_model_path or None
    if selected and not Path(selected).is_file():  # an extended run's earlier best, removed when it finished
        log.warning(
            "the best checkpoint so far (%s) was removed when the run finished (keep_intermediate=false), "
            "and no epoch trained now beat it: shipping the last state",
            selected,
        )
        selected = None
    return selected or (str(last) if last.exists() else None)


def results_record(settings: Settings, model, datamodule, checkpoint, shipped: Shipped, run_dir: Path, trainer) -> dict:
    """results.json: what ran, on which data, and the figures of the model shipped."""
    best = checkpoint.best_model_path
    return {
        "task": settings.task.name,
        "backbone": settings.backbone.name,
        "backbone_source": backbones.resolve_source(settings.backbone),
        "head": settings.head.name,
        "num_prototypes": settings.head.num_prototypes if settings.is_prototype else None,
        "seed": settings.seed,
        "metrics": {k: float(v) for k, v in sorted({**shipped.metrics, **shipped.post.metrics}.items())},
        "selection": selection_record(settings, checkpoint),
        "splits": datamodule.describe(),
        "shipped_checkpoint": shipped.post.checkpoint,  # the model the metrics describe
        # best on the selection split, before projection or pruning (null once removed: keep_intermediate)
        "selected_checkpoint": best if best and Path(best).is_file() else None,
        "checkpoints": {p.name: p.stat().st_size for p in sorted((run_dir / "checkpoints").glob("*.ckpt"))},
        **shipped.post.record(),
        "run_dir": str(run_dir),
        "epochs_completed": trainer.current_epoch,
        "global_step": trainer.global_step,
        "config": model.artifacts["config"],
    }


def build_data_and_model(settings: Settings, cfg: DictConfig):
    """The data module and the model, which carries what rebuilds it offline (config, tokenizer files)."""
    tokenizer = backbones.load_tokenizer(settings.backbone, settings.data.hub_timeout_s)
    model = build_model(settings)
    if settings.init.from_checkpoint:  # before fit: a resumed run then restores its own weights over it
        start_encoder_from(model, settings.init.from_checkpoint)
    model.artifacts = {"config": to_container(cfg), "tokenizer_files": tokenizer_files(tokenizer)}
    return build_datamodule(settings, tokenizer), model


def train_two_stages(cfg: DictConfig) -> dict:
    """The two-stage recipe: fine-tune with the linear head (``<run>/first_stage``, reused when it
    finished already), then train the configured head from that encoder; both stages' figures go in
    the run's results.json (the first under ``first_stage``)."""
    run_dir = Path(cfg.paths.output_dir)
    first_dir = run_dir / "first_stage"
    first_results = first_dir / "results.json"
    with holding(run_dir):
        if first_results.exists():
            first = json.loads(first_results.read_text())
        else:
            first = train(stage_config(cfg, head=OmegaConf.structured(LinearHeadConfig), output_dir=first_dir))
        second = stage_config(cfg, from_checkpoint=str(first_dir), output_dir=run_dir)
        results = train(second)
        keep = ("head", "metrics", "shipped_checkpoint", "run_dir", "train_seconds", "global_step")
        results["first_stage"] = {key: first[key] for key in keep}
        (run_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def stage_config(cfg: DictConfig, output_dir: Path, head=None, from_checkpoint: str | None = None) -> DictConfig:
    """One stage of the two-stage recipe: ``cfg`` with its own head, encoder start and directory."""
    stage = cfg.copy()
    with open_dict(stage):
        if head is not None:
            stage.head = head
            stage.ckpt_path = None  # a resume continues the second stage; the first is reused whole
        stage.init.two_stage, stage.init.from_checkpoint = False, from_checkpoint
        stage.paths.output_dir = str(output_dir)
    return stage


def selection_record(settings: Settings, checkpoint) -> dict:
    score = checkpoint.best_model_score
    return {
        "metric": selection_metric(settings.task)[0],
        "split": settings.task.select_on,
        "best_score": None if score is None else float(score),
    }
