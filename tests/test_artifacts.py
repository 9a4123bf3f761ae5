"""Artefacts are safe: atomic checkpoints, no code run from a checkpoint, nothing overwritten or lost."""

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from protolm.serving.classifier import load
from protolm.utils.errors import CheckpointError
from tests.support import PROTOLM, REPO, TINY, assert_clean_failure, run_here


class Evil:
    """Unpickling this runs a shell command: what an untrusted checkpoint could do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_malicious_checkpoint_is_refused_without_running_its_code(tmp_path, capsys, monkeypatch):
    marker, path = tmp_path / "pwned", tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "protolm": Evil(marker)}, path)
    with pytest.raises(CheckpointError, match=f"checkpoint {path} cannot be read safely"):
        load(path)
    for tool in (
        ["run.py", *TINY, f"ckpt_path={path}", f"hydra.run.dir={tmp_path}/run"],
        ["protolm", "explain", f"ckpt_path={path}", "text=hello", f"hydra.run.dir={tmp_path}/explain"],
    ):
        assert_clean_failure(run_here(*tool, capsys=capsys, monkeypatch=monkeypatch), str(path))
    assert not marker.exists()


def test_truncated_and_foreign_checkpoints_get_errors_naming_the_file(tiny_run, tmp_path, capsys, monkeypatch):
    good = (tiny_run / "checkpoints" / "projected.ckpt").read_bytes()
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good[: len(good) // 2])
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint")
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    for path, message in (
        (truncated, "truncated or foreign"),
        (text, "truncated or foreign"),
        (foreign, "not written by protolm"),
        (tmp_path / "missing.ckpt", "no such file or directory"),
    ):
        with pytest.raises(CheckpointError, match=message) as err:
            load(path)
        assert str(path) in str(err.value)
    here = {"capsys": capsys, "monkeypatch": monkeypatch}
    assert_clean_failure(
        run_here("protolm", "evaluate", f"model={truncated}", f"hydra.run.dir={tmp_path}/e", **here), str(truncated)
    )
    assert_clean_failure(
        run_here("run.py", *TINY, f"ckpt_path={truncated}", f"hydra.run.dir={tmp_path}/r", **here), str(truncated)
    )


SAVER = """
import itertools, sys, torch
from protolm.training.checkpoint_io import AtomicCheckpointIO
io = AtomicCheckpointIO()
for i in itertools.count():
    io.save_checkpoint({"step": i, "blob": torch.full((6_000_000,), float(i))}, sys.argv[1])
    print(i, flush=True)
"""


def test_a_kill_while_saving_leaves_the_previous_checkpoint_readable(tmp_path):
    path = tmp_path / "last.ckpt"
    for delay in (0.07, 0.33):
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(path)], cwd=REPO, stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip().isdigit()  # one complete save exists
        time.sleep(delay)  # ... then die at an arbitrary point, most likely mid-write (24 MB a save)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        state = torch.load(path, weights_only=True)
        assert state["blob"].numel() == 6_000_000 and bool((state["blob"] == state["step"]).all())
    leftovers = [p for p in tmp_path.iterdir() if p.name != "last.ckpt"]
    assert all(p.name.startswith(".last.ckpt.tmp-") for p in leftovers)  # only a dead writer's temp file


def digest(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_failing_commands_destroy_nothing_already_written(tiny_run, tmp_path, capsys, monkeypatch):
    def run_cli(*args):
        command = ("protolm",) + args[len(PROTOLM) :] if args[: len(PROTOLM)] == PROTOLM else args
        return run_here(*command, capsys=capsys, monkeypatch=monkeypatch)

    before = digest(tiny_run)
    ckpt = tiny_run / "checkpoints" / "projected.ckpt"
    assert_clean_failure(
        run_cli("run.py", *TINY, f"hydra.run.dir={tiny_run}"), "holds a finished run", "overwrite=true"
    )
    assert_clean_failure(
        run_cli("run.py", *TINY, "data.data_dir=/nonexistent", f"hydra.run.dir={tiny_run}", "overwrite=true"),
        "/nonexistent/sst2/train.tsv",
    )
    out = tmp_path / "explained"
    assert run_cli(*PROTOLM, "explain", f"model={ckpt}", "text=fine", f"hydra.run.dir={out}").returncode == 0
    first = digest(out)
    assert_clean_failure(
        run_cli(*PROTOLM, "explain", f"model={ckpt}", "text=other", f"hydra.run.dir={out}"), "already holds"
    )
    # Failed commands add their own record (.hydra/<time>/, error.txt, run.log lines) beside;
    # nothing that was there changes.
    assert {k: v for k, v in digest(out).items() if k in first} == first
    assert {k: v for k, v in digest(tiny_run).items() if k in before} == before
