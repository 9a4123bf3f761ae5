"""Callbacks and plugins that keep a run's work safe: atomic checkpoints, save on SIGTERM."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from lightning.pytorch import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)


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


class SaveOnInterrupt(Callback):
    """On SIGTERM (a cluster about to preempt) or Ctrl-C, save ``last.ckpt`` before exiting.

    Not on other exceptions: a diverged (NaN) or crashed state must not replace the last good
    checkpoint.
    """

    def __init__(self, last_path: str | Path):
        self.last_path = Path(last_path)

    def on_exception(self, trainer, pl_module, exception):
        if not isinstance(exception, (SIGTERMException, KeyboardInterrupt)):
            return
        if trainer.state.fn != "fit":
            return
        trainer.save_checkpoint(self.last_path)
        log.warning(
            "interrupted (%s): saved %s; resume with ckpt_path=%s",
            type(exception).__name__,
            self.last_path,
            self.last_path,
        )


class ResumeTrainingOrder(Callback):
    """Hands a checkpoint's data-order state to the data module on resume.

    Lightning restores a stateful training loader only when it builds the loader after the
    checkpoint is read; computing the step count for the LR schedule builds it before, so the
    state is passed on here (the data module applies it once, whichever path arrives first).
    """

    def on_load_checkpoint(self, trainer, pl_module, checkpoint):
        states = checkpoint.get("loops", {}).get("fit_loop", {}).get("state_dict", {}).get("combined_loader")
        datamodule = getattr(trainer, "datamodule", None)
        if (
            states
            and datamodule is not None
            and hasattr(datamodule, "resume_train_order")
            and trainer.state.fn == "fit"
        ):
            datamodule.resume_train_order(states[0])


class ProjectEveryNEpochs(Callback):
    """Project the prototypes at the end of every N-th training epoch (``project.every_n_epochs``)."""

    def __init__(self, every_n_epochs: int, mode: str, top_k: int):
        self.every_n_epochs, self.mode, self.top_k = every_n_epochs, mode, top_k

    def on_train_epoch_end(self, trainer, pl_module):
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            from protolm.projection import project

            project(pl_module, trainer.datamodule, self.mode, self.top_k)
