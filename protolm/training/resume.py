"""Exact resumption: a run resumed from a checkpoint ends exactly where an uninterrupted one does.

Three things make that so:

* the random generators (dropout masks, the DataLoader's base seed) travel in every checkpoint:
  :func:`rng_state` when saving, :func:`restore_rng_state` when fitting resumes;
* the training order is seeded per epoch, so a checkpoint need only say how far into the epoch
  it was: :mod:`protolm.data.resumable` keeps and applies that, :class:`ResumeTrainingOrder`
  hands it over when Lightning would not;
* an interrupted run saves first: :class:`SaveOnInterrupt` writes ``last.ckpt`` on SIGTERM or
  Ctrl-C (after a SIGKILL the run resumes from its last periodic checkpoint).
"""

from __future__ import annotations

import contextlib
import logging
import random
import signal
import threading
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException

from protolm.data.resumable import TrainOrder

log = logging.getLogger(__name__)

stopped_by_ctrl_c = False  # set when a Ctrl-C stopped training after saving last.ckpt (the exit status says so)


# --------------------------------------------------------------------------- generators
def rng_state() -> dict:
    """Random generator states as tensors and plain values (weights_only-loadable)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype("int64")),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` saved (CUDA generators only onto as many devices as saved them)."""
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype("uint32"), n["pos"], n["has_gauss"], n["cached"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------ training order
# ----------------------------------------------------------------------------- callbacks
class ResumeTrainingOrder(Callback):
    """Hands a checkpoint's training-order state to the data module on resume.

    Lightning restores a stateful training loader only when it builds the loader after the
    checkpoint is read; computing the step count for the LR schedule builds it before, so the
    state is passed on here (the data module applies it once, whichever path arrives first).
    """

    def on_load_checkpoint(self, trainer, pl_module, checkpoint):
        states = checkpoint.get("loops", {}).get("fit_loop", {}).get("state_dict", {}).get("combined_loader")
        order = getattr(getattr(trainer, "datamodule", None), "train_order", None)
        if states and isinstance(order, TrainOrder) and trainer.state.fn == "fit":
            order.restore(states[0])


class SaveOnInterrupt(Callback):
    """On SIGTERM (a cluster about to preempt) or Ctrl-C, save ``last.ckpt`` at a safe point, then exit.

    Both stop where Lightning stops for SIGTERM: after a training step (after the epoch's
    validation when it is the epoch's last step), between validation batches, or at an epoch's
    end; Lightning's restart logic resumes exactly from each of these. A Ctrl-C is turned into
    that same request (Lightning's trainer has no public setter for it, so the flag its SIGTERM
    handler sets is set here); stopping on a Ctrl-C of our own at the end of an epoch's last step,
    before its validation, resumed inexactly. A second Ctrl-C stops at once and saves nothing (a
    state caught mid-step would not resume exactly: the last periodic checkpoint stays). Not on
    other exceptions: a diverged (NaN) or crashed state must not replace the last good checkpoint.
    """

    def __init__(self, last_path: str | Path):
        self.last_path = Path(last_path)
        self.stop_requested = False
        self._trainer = None
        self._previous_handler = None

    def on_train_start(self, trainer, pl_module):
        if threading.current_thread() is threading.main_thread():
            self._trainer = trainer
            self._previous_handler = signal.signal(signal.SIGINT, self._on_ctrl_c)

    def _on_ctrl_c(self, signum, frame):
        if self.stop_requested:
            log.warning("second Ctrl-C: stopping now; nothing saved since the last checkpoint")
            raise KeyboardInterrupt
        self.stop_requested = True
        self._trainer._signal_connector.received_sigterm = True
        log.warning("Ctrl-C: stopping after this training step and saving last.ckpt (again: stop now, save nothing)")

    def _restore_handler(self) -> None:
        if self._previous_handler is not None:
            signal.signal(signal.SIGINT, self._previous_handler)
            self._previous_handler = None

    def on_train_end(self, trainer, pl_module):
        self._restore_handler()

    def on_exception(self, trainer, pl_module, exception):
        self._restore_handler()
        if isinstance(exception, SIGTERMException) and trainer.state.fn == "fit":
            global stopped_by_ctrl_c
            trainer.save_checkpoint(self.last_path)
            stopped_by_ctrl_c = self.stop_requested
            cause = "Ctrl-C" if self.stop_requested else "SIGTERM"
            log.warning("interrupted (%s): saved %s; resume with ckpt_path=last", cause, self.last_path)


@contextlib.contextmanager
def ctrl_c_given_back():
    """Ctrl-C works again after the block: Lightning, stopping a run on a KeyboardInterrupt, sets
    SIGINT to be ignored for good, which would leave a notebook (or any process that goes on, and
    every process it starts) deaf to Ctrl-C."""
    main = threading.current_thread() is threading.main_thread()
    before = signal.getsignal(signal.SIGINT) if main else None
    try:
        yield
    finally:
        if before not in (None, signal.SIG_IGN) and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            signal.signal(signal.SIGINT, before)
