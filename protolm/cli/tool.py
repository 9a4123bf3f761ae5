"""What the commands that use a trained model share: the model (``model=``), its training run's data,
the prototype stages' context, and an output directory that never loses earlier outputs."""

from __future__ import annotations

from pathlib import Path

from protolm.config.tools import ModelToolConfig
from protolm.modeling.saved import require_prototypes, write_checkpoint
from protolm.prototypes.stages import StageContext
from protolm.serving.classifier import Classifier, load
from protolm.utils.errors import ConfigError


def open_model(cfg: ModelToolConfig) -> Classifier:
    """The command's model (``model=``: a run directory, a checkpoint, an export or a hub id) on ``device``."""
    return load(cfg.model, cfg.device)


def open_prototype_model(cfg: ModelToolConfig, what: str) -> Classifier:
    """The command's model, refused in one line when it has the linear head (``what`` needs prototypes)."""
    clf = open_model(cfg)
    require_prototypes(clf.model, f"model={cfg.model}", what)
    return clf


def datamodule_for(clf: Classifier, cfg: ModelToolConfig):
    """The training run's data module, with the command's data.* values applied."""
    data = getattr(cfg, "data", None)
    return clf.datamodule({k: v for k, v in vars(data).items()} if data is not None else None)


def stage_context(clf: Classifier, datamodule, out: Path) -> StageContext:
    """The prototype stages on the command's model: checkpoints are written from the model as it is."""
    return StageContext(clf.model, datamodule, out, save_checkpoint=lambda path: write_checkpoint(clf.saved, path))


def output_dir(cfg, writes: tuple[str, ...]) -> Path:
    """The command's output directory; never one that already holds its outputs unless overwrite=true."""
    out = Path(cfg.output_dir)
    taken = [name for name in writes if (out / name).exists()]
    if taken and not cfg.overwrite:
        raise ConfigError(
            f"{out} already holds {', '.join(taken)}; choose another hydra.run.dir or pass overwrite=true"
        )
    out.mkdir(parents=True, exist_ok=True)
    return out
