"""Checkpoint files: written atomically, checked before reading, read without running code.

Checkpoints are loaded with ``torch.load(weights_only=True)``: only tensors and plain Python
values are unpickled, so an untrusted file cannot run code. The tokenizer travels inside every
checkpoint as its saved files, so a model loads without the hub.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from protolm.errors import CheckpointError


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint to a temporary file and renames it into place.

    A run killed while saving leaves the previous checkpoint intact: a rename is atomic on
    POSIX file systems, a half-written torch.save is not.
    """

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            super().save_checkpoint(checkpoint, tmp, storage_options)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()


def check_checkpoint_file(path: Path) -> None:
    """A clear error for a missing, truncated or foreign file before torch.load sees it."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"checkpoint {path} is not a PyTorch checkpoint (truncated or foreign file)")
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError) as err:
        raise CheckpointError(f"checkpoint {path} is unreadable ({err})") from None
    if bad is not None:
        raise CheckpointError(f"checkpoint {path} is corrupt (member {bad} fails its checksum)")


def read_checkpoint(path: str | Path) -> dict:
    """A protolm checkpoint's contents, on the CPU; a clear error for anything else."""
    path = Path(path).expanduser()
    check_checkpoint_file(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise CheckpointError(f"checkpoint {path} cannot be read safely ({str(err).splitlines()[0][:200]})") from None
    if not isinstance(checkpoint, dict) or "protolm" not in checkpoint or "state_dict" not in checkpoint:
        raise CheckpointError(f"checkpoint {path} was not written by protolm (no 'protolm' record)")
    return checkpoint


def tokenizer_files(tokenizer) -> dict[str, bytes]:
    """The tokenizer's saved files, stored in every checkpoint so it loads without the hub."""
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        return {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}


def tokenizer_from_files(files: dict[str, bytes]):
    """The tokenizer back from :func:`tokenizer_files`' output."""
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            (Path(tmp) / name).write_bytes(data)
        return AutoTokenizer.from_pretrained(tmp)
