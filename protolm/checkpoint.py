"""Rebuild a trained model from a protolm checkpoint alone: no hub, no training config to repeat.

Checkpoints are loaded with ``torch.load(weights_only=True)``: only tensors and plain Python
values are unpickled, so an untrusted file cannot run code. What protolm stores under
``checkpoint["protolm"]``: the resolved training config, the task (name, labels), the
encoder's Hugging Face config, the tokenizer's files, the prototype classes and the projection
record (nearest training examples of every prototype).
"""

from __future__ import annotations

import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from protolm.errors import CheckpointError
from protolm.runs import check_checkpoint_file


@dataclass
class Loaded:
    model: object  # protolm.model.ProtoLM, in eval mode
    tokenizer: object
    config: dict  # the training run's resolved config
    path: Path


def read_checkpoint(path: str | Path) -> dict:
    path = Path(path).expanduser()
    check_checkpoint_file(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise CheckpointError(f"checkpoint {path} cannot be read safely ({str(err).splitlines()[0][:200]})") from None
    if not isinstance(checkpoint, dict) or "protolm" not in checkpoint or "state_dict" not in checkpoint:
        raise CheckpointError(f"checkpoint {path} was not written by protolm (no 'protolm' record)")
    return checkpoint


def tokenizer_from_files(files: dict[str, bytes]):
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            (Path(tmp) / name).write_bytes(data)
        return AutoTokenizer.from_pretrained(tmp)


def load(path: str | Path, device: str | torch.device = "cpu") -> Loaded:
    """The model (eval mode, on ``device``), its tokenizer and its training config."""
    from protolm.backbone import encoder_from_config
    from protolm.model import ProtoLM

    checkpoint = read_checkpoint(path)
    meta = checkpoint["protolm"]
    config = meta["config"]
    model = ProtoLM(
        backbone=config["backbone"],
        head=config["head"],
        loss=config["loss"],
        optim=config["optim"],
        task=meta["task"],
        seed=config.get("seed", 0),
        encoder=encoder_from_config(meta["backbone_config"]),
        prototype_class=meta.get("prototype_class"),
    )
    missing, unexpected = model.load_state_dict(checkpoint["state_dict"], strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {path} does not match its own config (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    model.on_load_checkpoint(checkpoint)
    model.artifacts = {"config": config, "tokenizer_files": meta["tokenizer_files"]}
    model.eval().to(device)
    return Loaded(model, tokenizer_from_files(meta["tokenizer_files"]), config, Path(path))


def save_model_checkpoint(model, path: str | Path) -> Path:
    """Write a weights-only protolm checkpoint of ``model`` (atomically), loadable by :func:`load`
    and by Lightning's ``ckpt_path`` for evaluation."""
    import lightning

    from protolm.callbacks import AtomicCheckpointIO

    checkpoint = {
        "state_dict": model.state_dict(),
        "pytorch-lightning_version": lightning.__version__,
        "epoch": 0,
        "global_step": 0,
    }
    model.on_save_checkpoint(checkpoint)
    AtomicCheckpointIO().save_checkpoint(checkpoint, path)
    return Path(path)
