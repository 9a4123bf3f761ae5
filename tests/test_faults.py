"""Runs survive kills: a resumed run ends exactly where an uninterrupted one does."""

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.support import REPO, TINY

# Deterministic CPU training, long enough to be killed mid-way (4 epochs x 10 steps), saving
# last.ckpt every 3 steps as well as at every epoch end.
STEPS = 40
RUN = TINY + [
    "trainer.max_epochs=4",
    "data.max_train_samples=160",
    "head.num_prototypes=6",
    "trainer.deterministic=true",
    "callbacks.checkpoint.every_n_train_steps=3",
    "health.plot=false",
    "seed=3",
]


def start(run_dir: Path, *extra: str, script: str = "run.py", env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, script, *RUN, *extra, f"hydra.run.dir={run_dir}"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "timed out waiting for a checkpoint"
        time.sleep(0.05)


def outcome(run_dir: Path) -> tuple[dict, torch.Tensor]:
    results = json.loads((run_dir / "results.json").read_text())
    prototypes = torch.load(results["shipped_checkpoint"], weights_only=True)["state_dict"]["model.head.prototypes"]
    return results, prototypes


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run = tmp_path_factory.mktemp("whole") / "run"
    proc = start(run)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    return outcome(run)


def assert_same(resumed, whole):
    (a, pa), (b, pb) = resumed, whole
    assert a["global_step"] == b["global_step"] == STEPS
    assert a["metrics"] == b["metrics"]
    assert torch.equal(pa, pb)


# The default suite kills with SIGKILL (no chance to save: resume from the last periodic checkpoint);
# the slow one adds Ctrl-C (SIGINT) and SIGTERM, which save at the next step boundary.
@pytest.mark.parametrize(
    "sig",
    [
        signal.SIGKILL,
        pytest.param(signal.SIGTERM, marks=pytest.mark.slow),
        pytest.param(signal.SIGINT, marks=pytest.mark.slow),
    ],
    ids=["SIGKILL", "SIGTERM", "SIGINT"],
)
def test_killed_run_resumes_to_the_uninterrupted_result(sig, tmp_path, uninterrupted):
    run = tmp_path / "run"
    proc = start(run)
    # Kill at some point after the first mid-epoch checkpoint (step 3), well before the end.
    wait_for(run / "checkpoints" / "last.ckpt", proc)
    time.sleep(0.3 if sig == signal.SIGKILL else 0.5)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert not (run / "results.json").exists()
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert 0 < state["global_step"] < STEPS
    if sig == signal.SIGTERM:
        assert proc.returncode == 143 and "stopped by SIGTERM" in err and "Traceback" not in err
    if sig == signal.SIGINT:  # Ctrl-C: stops at the next step boundary, saves, says how to resume
        assert proc.returncode == 130 and "stopped by Ctrl-C" in err and "Traceback" not in err
    resumed = start(run, "ckpt_path=last")
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    assert_same(outcome(run), uninterrupted)


# Ctrl-C at the two points a delay rarely hits: the last step of an epoch (before its validation:
# stopping there resumed inexactly before Ctrl-C took Lightning's SIGTERM path) and of training.
@pytest.mark.slow
@pytest.mark.parametrize("step", [10, STEPS])
def test_ctrl_c_at_an_epoch_end_resumes_to_the_uninterrupted_result(step, tmp_path, uninterrupted):
    run = tmp_path / "run"
    proc = start(run, script="tests/interrupt_at.py", env={"PROTOLM_TEST_SIGINT_AT_STEP": str(step)})
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 130 and "stopped by Ctrl-C" in err and "Traceback" not in err, err
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == step
    resumed = start(run, "ckpt_path=last")
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    assert_same(outcome(run), uninterrupted)


@pytest.mark.slow  # the resume tests already compare two processes' trainings step for step
def test_same_seed_same_results(tmp_path, uninterrupted):
    run = tmp_path / "again"
    proc = start(run)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert_same(outcome(run), uninterrupted)


def killed_run(run: Path) -> bytes:
    """A run killed after its first periodic checkpoint: the bytes of its last.ckpt."""
    proc = start(run)
    wait_for(run / "checkpoints" / "last.ckpt", proc)
    time.sleep(0.3)
    proc.kill()
    proc.communicate(timeout=60)
    assert not (run / "results.json").exists()
    return (run / "checkpoints" / "last.ckpt").read_bytes()


@pytest.mark.slow  # three training processes: in the slow suite, to keep the default one under 10 minutes
def test_resume_refuses_training_data_that_changed_and_a_full_disk_keeps_the_last_checkpoint(tmp_path):
    run = tmp_path / "run"
    saved = killed_run(run)
    # The data changed between the run and its resume (here: which training examples are used).
    changed = start(run, "ckpt_path=last", "data.max_train_samples=150")
    _, err = changed.communicate(timeout=300)
    assert changed.returncode == 1 and "Traceback" not in err, err
    assert "the training examples differ from those the checkpoint was trained on" in err
    assert (run / "checkpoints" / "last.ckpt").read_bytes() == saved
    # The disk fills while the resumed run writes its next checkpoint: a file-size limit below a
    # checkpoint's size makes every write fail as a full disk would.
    size = len(saved)

    def small_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, resource.RLIM_INFINITY))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails (EFBIG) instead of killing the process

    full = subprocess.Popen(
        [sys.executable, "run.py", *RUN, "ckpt_path=last", f"hydra.run.dir={run}"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=small_disk,
    )
    _, err = full.communicate(timeout=300)
    assert full.returncode == 1 and "Traceback" not in err, err
    assert "error: the disk is full" in err and "resume with ckpt_path=last" in err
    assert (run / "checkpoints" / "last.ckpt").read_bytes() == saved  # the previous checkpoint survives


def test_a_run_stopped_by_ctrl_c_in_process_gives_ctrl_c_back(make_config, monkeypatch):
    """Lightning answers a KeyboardInterrupt by ignoring SIGINT for good and exiting; in a notebook
    (or any process that goes on, and the processes it starts) Ctrl-C would then do nothing."""
    from protolm.training.module import ProtoLM
    from protolm.training.train import train

    def interrupted(self):
        # Ctrl-C while the trainer sets up: before the run's own Ctrl-C handler is installed (once
        # training runs, that handler's restore on the way out gives Ctrl-C back as well)
        raise KeyboardInterrupt

    monkeypatch.setattr(ProtoLM, "configure_optimizers", interrupted)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(SystemExit):
        train(make_config(*TINY, "head.num_prototypes=4", "health.at_end=false"))
    assert signal.getsignal(signal.SIGINT) is before
