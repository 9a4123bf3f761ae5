"""Lightning callbacks of protolm's own: projecting during training, and progress as log lines
where no bar can be drawn."""

from __future__ import annotations

import logging
import math
import time

import lightning as L
from lightning.pytorch.callbacks.progress import ProgressBar

from protolm.config import ProjectConfig
from protolm.prototypes.features import encode_split
from protolm.prototypes.projection import project
from protolm.utils.progress import PeriodicLog, clock, remaining_seconds

log = logging.getLogger(__name__)


class ProjectEveryNEpochs(L.Callback):
    """Project the prototypes at the end of every N-th training epoch (``project.every_n_epochs``)."""

    def __init__(self, project_cfg: ProjectConfig):
        self.project = project_cfg

    def on_train_epoch_end(self, trainer, pl_module):
        if (trainer.current_epoch + 1) % self.project.every_n_epochs == 0:
            datamodule, precision = trainer.datamodule, trainer.precision_plugin.forward_context
            features = encode_split(pl_module.model, datamodule, "train", precision)
            split = datamodule.role_split("train")
            project(pl_module.model, features, split, self.project.mode, self.project.top_k, trainer.current_epoch)


def examples_in(batch) -> int:
    """The number of examples in a batch (a dict of tensors, as protolm's loaders give)."""
    first = next(iter(batch.values())) if isinstance(batch, dict) else batch
    return len(first)


class ProgressLines(ProgressBar):
    """Training's progress off a terminal (a file, nohup, a cluster job, CI), where Lightning's bars
    draw nothing useful: a log line at most every ``every_s`` seconds with the step and the total
    steps, the epoch, examples per second, the time elapsed and left, and the latest loss; and lines
    of the same kind through long validation and test passes. A :class:`ProgressBar` itself, so
    Lightning adds no bar of its own, and only the first process logs (Lightning disables the others)."""

    def __init__(self, every_s: float):
        super().__init__()
        self.every_s = every_s
        self.enabled = True
        self.started = self.last_line = time.monotonic()
        self.first_step, self.total_steps, self.examples = 0, math.inf, 0
        self.loss = None  # the latest training loss, a tensor: read only when a line is written
        self.evaluation: PeriodicLog | None = None

    def disable(self) -> None:
        self.enabled = False

    def enable(self) -> None:
        self.enabled = True

    def on_train_start(self, trainer, pl_module) -> None:
        self.started = self.last_line = time.monotonic()
        self.first_step, self.examples = trainer.global_step, 0  # a resumed run's rate counts its own steps
        self.total_steps = trainer.estimated_stepping_batches

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.examples += examples_in(batch) * trainer.world_size
        if isinstance(outputs, dict) and "loss" in outputs:
            self.loss = outputs["loss"].detach() * trainer.accumulate_grad_batches  # Lightning divides it
        now = time.monotonic()
        if self.enabled and now - self.last_line >= self.every_s:
            self.last_line = now
            log.info(self.training_line(trainer, now - self.started))

    def training_line(self, trainer, elapsed: float) -> str:
        step, total = trainer.global_step, self.total_steps
        of_steps = f"/{total}" if math.isfinite(total) else ""
        max_epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
        of_epochs = f"/{max_epochs}" if max_epochs else ""
        left = remaining_seconds(step - self.first_step, total - self.first_step, elapsed)
        loss = "?" if self.loss is None else f"{float(self.loss):.4g}"
        return (
            f"training: step {step}{of_steps}, epoch {trainer.current_epoch + 1}{of_epochs}, "
            f"{self.examples / max(elapsed, 1e-9):.3g} examples/s, elapsed {clock(elapsed)}, "
            f"remaining {clock(left)}, loss {loss}"
        )

    def on_train_end(self, trainer, pl_module) -> None:
        if self.enabled:
            elapsed = time.monotonic() - self.started
            log.info("training: done, %d steps in %s", trainer.global_step - self.first_step, clock(elapsed))

    # ------------------------------------------------------- validation and test passes
    def start_pass(self, what: str, batches) -> None:
        total = sum(batches) if isinstance(batches, list) else batches
        every_s = self.every_s if self.enabled else math.inf
        self.evaluation = PeriodicLog(what, total if math.isfinite(total) else None, "batches", every_s)

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        sanity = trainer.sanity_checking
        self.start_pass(
            "sanity check" if sanity else "validation",
            trainer.num_sanity_val_batches if sanity else trainer.num_val_batches,
        )

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self.start_pass("test", trainer.num_test_batches)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.evaluation.advance()

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.evaluation.advance()

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self.evaluation.finish()

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self.evaluation.finish()
