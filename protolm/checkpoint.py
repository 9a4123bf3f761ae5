"""Rebuild a trained model from a protolm checkpoint alone: no hub, no training config to repeat.

What protolm stores under ``checkpoint["protolm"]``: the resolved training config, the task
(name, labels), the encoder's Hugging Face config, the tokenizer's files, the prototype classes
and the projection record (nearest training examples of every prototype). Reading and writing
the files themselves (atomic, weights-only) is :mod:`protolm.checkpoint_io`'s.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from protolm.checkpoint_io import AtomicCheckpointIO, read_checkpoint, tokenizer_from_files
from protolm.errors import CheckpointError


@dataclass
class Loaded:
    model: object  # protolm.model.ProtoLM, in eval mode
    tokenizer: object
    config: dict  # the training run's resolved config
    path: Path


def _build_model(meta: dict, config: dict, path=None):
    """An untrained model of the checkpoint's architecture (``meta``: its protolm record; ``config``: its run's)."""
    from protolm.assemble import build_model
    from protolm.backbone import encoder_from_config
    from protolm.config import read_settings

    settings = read_settings(config, check_trainer=False)
    if meta.get("encoder_weights_from"):  # LoRA on pretrained weights: the file holds the adapters only
        from protolm.backbone import load_encoder
        from protolm.errors import ConfigError

        try:
            encoder = load_encoder(settings.backbone, settings.data.hub_timeout_s)
        except ConfigError as err:
            raise CheckpointError(
                f"checkpoint {path} holds LoRA adapters and the head; the frozen encoder weights they adapt "
                f"are read from {meta['encoder_weights_from']}, which failed: {err}"
            ) from None
    else:
        encoder = encoder_from_config(meta["backbone_config"])
    return build_model(settings, encoder=encoder, prototype_class=meta.get("prototype_class"))


def _check_format(path, meta: dict) -> None:
    from protolm.model import CHECKPOINT_FORMAT

    found = meta.get("format")
    if found != CHECKPOINT_FORMAT:
        import protolm

        written_by = meta.get("protolm_version", "a version before 0.1.0")
        raise CheckpointError(
            f"checkpoint {path} was written by protolm {written_by} (checkpoint format {found}); this is "
            f"protolm {protolm.__version__}, which reads format {CHECKPOINT_FORMAT} (its config keys changed): "
            "load it with the protolm version that wrote it, or train again"
        )


def load(path: str | Path, device: str | torch.device = "cpu") -> Loaded:
    """The model (eval mode, on ``device``), its tokenizer and its training config."""
    checkpoint = read_checkpoint(path)
    meta = checkpoint["protolm"]
    _check_format(path, meta)
    config = meta["config"]
    model = _build_model(meta, config, path)
    model.load_weights(checkpoint["state_dict"], path)
    model.on_load_checkpoint(checkpoint)
    model.artifacts = {"config": config, "tokenizer_files": meta["tokenizer_files"]}
    model.eval().to(device)
    return Loaded(model, tokenizer_from_files(meta["tokenizer_files"]), config, Path(path))


def shipped_checkpoint(run_dir: Path, key: str) -> Path:
    """The checkpoint a finished run shipped (its results.json says which), found in the run
    directory even when the directory was moved or copied since."""
    results = run_dir / "results.json"
    if not results.exists():
        raise CheckpointError(
            f"{key}={run_dir}: a run directory must hold a finished run's results.json; "
            "or give one of its checkpoints/*.ckpt"
        )
    shipped = json.loads(results.read_text()).get("shipped_checkpoint")
    if not shipped:
        raise CheckpointError(f"{key}={run_dir}: its results.json names no shipped checkpoint")
    path = Path(shipped)
    moved = run_dir / "checkpoints" / path.name
    return path if path.is_file() or not moved.is_file() else moved


def start_encoder_from(model, source: str | Path) -> Path:
    """Load the fine-tuned encoder of an earlier run (its directory: the checkpoint it shipped; or a
    .ckpt) into ``model``'s encoder; the head keeps its fresh initialisation. Returns the file read."""
    path = Path(source).expanduser()
    if path.is_dir():
        path = shipped_checkpoint(path, "init.from_checkpoint")
    state = read_checkpoint(path)["state_dict"]
    encoder = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
    try:
        missing, unexpected = model.encoder.load_state_dict(encoder, strict=False)
    except RuntimeError as err:  # tensors of other shapes: another architecture
        missing, unexpected = [str(err).splitlines()[-1].strip()[:160]], []
    if missing or unexpected or not encoder:
        raise CheckpointError(
            f"init.from_checkpoint={source}: {path}'s encoder does not fit this backbone "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]}): give a run of the same backbone"
        )
    return path


def save_model_checkpoint(model, path: str | Path) -> Path:
    """Write a weights-only protolm checkpoint of ``model`` (atomically), loadable by :func:`load`
    and by Lightning's ``ckpt_path`` for evaluation."""
    import lightning

    checkpoint = {
        "state_dict": model.state_dict(),
        "pytorch-lightning_version": lightning.__version__,
        "epoch": 0,
        "global_step": 0,
    }
    model.on_save_checkpoint(checkpoint)
    AtomicCheckpointIO().save_checkpoint(checkpoint, path)
    return Path(path)
