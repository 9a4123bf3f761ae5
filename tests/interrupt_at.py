"""``run.py`` that sends itself a Ctrl-C (SIGINT) at the end of training step ``PROTOLM_TEST_SIGINT_AT_STEP``.

The fault tests use it to interrupt at an exact point (the last step of an epoch, before its
validation; the last step of training) rather than after a delay that lands anywhere.
"""

import os
import runpy
import signal
import sys
from pathlib import Path

from protolm.training.resume import SaveOnInterrupt

STEP = int(os.environ["PROTOLM_TEST_SIGINT_AT_STEP"])


def interrupt_at_step(self, trainer, pl_module, outputs, batch, batch_idx):
    if trainer.global_step == STEP:
        os.kill(os.getpid(), signal.SIGINT)


SaveOnInterrupt.on_train_batch_end = interrupt_at_step
run_py = Path(__file__).resolve().parents[1] / "run.py"
sys.argv[0] = str(run_py)
runpy.run_path(str(run_py), run_name="__main__")
