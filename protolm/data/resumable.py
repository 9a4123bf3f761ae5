"""A training order that resumes mid-epoch: a checkpoint says how far into its seeded epoch a run
was, and the next training iterator skips what was already trained on (exact resumption; the
random-generator side of it is :mod:`protolm.training.resume`)."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

NO_PROGRESS = {"epoch": 0, "completed": 0}


class TrainOrder:
    """How far a data module's training order has gone, and where a resumed run picks it up.

    Saved: (epoch, batches processed in it), read from the trainer's progress so that
    prefetched batches do not count. Restored: held until the next training iterator starts,
    which then runs that epoch's seeded, hence identical, order without the batches already
    done. An epoch-end state needs nothing: Lightning starts the next epoch itself.
    """

    def __init__(self, datamodule):
        self.datamodule = datamodule
        self.pending: dict | None = None

    def progress(self) -> dict:
        """(epoch, batches processed in it): what a checkpoint saved now has trained on."""
        trainer = getattr(self.datamodule, "trainer", None)
        if trainer is None:
            return dict(NO_PROGRESS)
        # "processed": a checkpoint written at the end of a batch (every N steps, SIGTERM) comes
        # after that batch's optimizer step but before Lightning counts it "completed".
        return {
            "epoch": trainer.current_epoch,
            "completed": trainer.fit_loop.epoch_loop.batch_progress.current.processed,
        }

    def restore(self, state: dict) -> None:
        """Resume mid-epoch at ``state`` (a :meth:`progress` from a checkpoint); an epoch-end state is ignored."""
        loaded = "train" in self.datamodule.roles  # else counting the batches would load the split now
        batches = len(self.datamodule.train_dataloader()) if loaded else None  # (a stream has no length)
        if state.get("completed", 0) > 0 and (batches is None or state["completed"] < batches):
            self.pending = dict(state)

    def take(self) -> dict | None:
        """The pending resume point, once: only the first iterator after a restore skips batches."""
        state, self.pending = self.pending, None
        return state


class ResumableDataLoader(DataLoader):
    """The training DataLoader: it resumes mid-epoch exactly where a checkpoint left off.

    Its ``state_dict`` (saved by Lightning with the loops) is its :class:`TrainOrder`'s progress;
    Lightning's ``load_state_dict`` (or :class:`ResumeTrainingOrder`) restores it, and the next
    iterator skips the batches already trained on.
    """

    def __init__(self, *args, train_order: TrainOrder | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.train_order = train_order

    def state_dict(self) -> dict:
        return self.train_order.progress() if self.train_order else dict(NO_PROGRESS)

    def load_state_dict(self, state: dict) -> None:
        if self.train_order is not None:
            self.train_order.restore(state)

    def __iter__(self):
        state = self.train_order.take() if self.train_order is not None else None
        if state is None:
            return super().__iter__()
        if hasattr(self.dataset, "resume_at"):  # a stream: it reads its epoch again, skipping what was done
            self.dataset.resume_at(state)
        else:
            self.sampler.set_epoch(state["epoch"])
            self.sampler.skip_next(state["completed"])
        # Creating an iterator draws a seed from the global generator; the uninterrupted run drew
        # it at the start of this epoch, before the generator state the checkpoint restored.
        rng = torch.get_rng_state()
        iterator = super().__iter__()
        torch.set_rng_state(rng)
        return iterator
