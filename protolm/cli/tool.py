"""What the checkpoint tools share: the checkpoint and its training config, the training run's data,
and an output directory that never loses earlier outputs."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from protolm.checkpoint import Loaded, load, shipped_checkpoint
from protolm.config import DataConfig, section
from protolm.data.datamodule import TaskDataModule
from protolm.data.task import TaskSpec
from protolm.errors import ConfigError


def open_checkpoint(cfg: DictConfig) -> Loaded:
    """The tool's checkpoint (``ckpt_path``: a .ckpt file, or a finished run's directory for the
    checkpoint it shipped) on its device (``device``, else cpu)."""
    path = Path(str(cfg.ckpt_path)).expanduser()
    if path.is_dir():
        path = shipped_checkpoint(path, "ckpt_path")
    return load(path, cfg.get("device", "cpu"))


def open_prototype_model(cfg: DictConfig, nothing_to_do: str, writes: tuple[str, ...]):
    """The checkpoint's prototype model, its training data and a fresh output directory for ``writes``;
    a linear-head checkpoint is refused with ``nothing_to_do`` (what the tool cannot do without prototypes)."""
    loaded = open_checkpoint(cfg)
    if not loaded.model.is_prototype:
        raise ConfigError(f"checkpoint {cfg.ckpt_path} has a linear head: {nothing_to_do}")
    return loaded.model, datamodule_for(loaded, cfg), output_dir(cfg, writes)


def datamodule_for(loaded: Loaded, cfg: DictConfig) -> TaskDataModule:
    """The training run's data module, with the tool's data.* overrides applied."""
    data = dict(loaded.config["data"])
    for key, value in (cfg.get("data") or {}).items():
        if value is not None:
            data[key] = value
    task = TaskSpec.from_config(loaded.config["task"])
    return TaskDataModule(task, loaded.tokenizer, section(data, DataConfig), seed=loaded.config.get("seed", 0))


def output_dir(cfg: DictConfig, writes: tuple[str, ...]) -> Path:
    """The tool's output directory; never one that already holds its outputs unless overwrite=true."""
    out = Path(cfg.output_dir)
    taken = [name for name in writes if (out / name).exists()]
    if taken and not cfg.get("overwrite", False):
        raise ConfigError(
            f"{out} already holds {', '.join(taken)}; choose another hydra.run.dir or pass overwrite=true"
        )
    out.mkdir(parents=True, exist_ok=True)
    return out
