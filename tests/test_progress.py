"""Progress where no bar can be drawn: training, its stages and the commands log a line every
``progress_every_s`` seconds when their output goes to a pipe or a file (nohup, a cluster job, CI).

The intervals here are tiny so that every step or batch logs; the tests read the lines' fields,
never how long anything took.
"""

from __future__ import annotations

import logging
import re

import pytest

from protolm.config import read_settings
from protolm.serving.batch import predict_file
from protolm.serving.classifier import load
from protolm.training.assemble import progress_display
from protolm.utils import progress
from protolm.utils.progress import lines_every, track
from tests.support import PROTOLM, TINY, data_dir, run_cli

CLOCK = r"\d+:\d\d:\d\d"
TRAINING_LINE = re.compile(
    rf"training: step (\d+)/(\d+), epoch (\d+)/2, [\d.e+]+ examples/s, elapsed {CLOCK}, "
    rf"remaining ({CLOCK}|\?), loss [-\d.e+]+$"
)


def pass_line(description: str, unit: str) -> re.Pattern:
    """A line of a pass over data: done/total, rate, elapsed, remaining."""
    return re.compile(
        rf"{description}: (\d+)/(\d+) {unit}, [\d.e+]+ {unit}/s, elapsed {CLOCK}, remaining ({CLOCK}|\?)$"
    )


def messages(output: str, logger: str) -> list[str]:
    """The messages ``logger`` wrote, from Hydra's log format ``[time][logger][LEVEL] - message``."""
    prefix = f"[{logger}][INFO] - "
    return [line.split(prefix, 1)[1] for line in output.splitlines() if prefix in line]


def test_training_to_a_pipe_logs_steps_stages_and_passes(tmp_path):
    run = tmp_path / "run"
    overrides = [o for o in TINY if o != "trainer.enable_progress_bar=false"]  # the default: progress on
    result = run_cli("run.py", *overrides, "trainer.max_epochs=2", "head.num_prototypes=6",
        "callbacks.progress_every_s=0.001", f"hydra.run.dir={run}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    steps = [TRAINING_LINE.search(m) for m in messages(result.stdout, "protolm.training.callbacks")]
    found = [(int(s[1]), int(s[2]), int(s[3])) for s in steps if s]
    # 48 examples in batches of 16: 3 steps an epoch, 6 in all; each step logs at this interval
    assert found and {total for _, total, _ in found} == {6}, result.stdout
    assert [step for step, _, _ in found] == sorted(step for step, _, _ in found) and found[-1][:1] == (6,)
    assert {epoch for _, _, epoch in found} == {1, 2}
    assert "training: done, 6 steps in" in result.stdout
    passes = messages(result.stdout, "protolm.utils.progress")
    assert any(pass_line("validation", "batches").match(m) for m in passes), passes
    assert any(pass_line("encoding the train split", "batches").match(m) for m in passes), passes
    stages = messages(result.stdout, "protolm.prototypes.stages")
    for stage in ("encode_train", "projection", "last_layer", "health"):
        assert f"stage {stage} started" in stages
        assert any(re.fullmatch(rf"stage {stage} finished in [\d.]+ s", m) for m in stages), stages
    assert "\r" not in result.stdout + result.stderr  # no bar redrawn into the log
    assert "training: step 6/6" in (run / "run.log").read_text()  # the run's own log has them too


def test_a_pass_over_data_logs_lines_off_a_terminal_and_a_short_one_stays_quiet(caplog, capsys):
    caplog.set_level(logging.INFO, logger="protolm.utils.progress")
    with lines_every(1e-9):
        assert list(track(range(5), "counting", unit="items")) == list(range(5))
    lines = [r.getMessage() for r in caplog.records]
    done = [int(m[1]) for m in map(pass_line("counting", "items").match, lines) if m]
    assert done == [1, 2, 3, 4, 5] and all("/5 items" in line for line in lines[:5])
    assert re.fullmatch(rf"counting: done, 5 items in {CLOCK}", lines[-1])
    caplog.clear()
    assert list(track(iter(range(3)), "a stream")) == [0, 1, 2]  # no length: no total, and the default interval
    assert caplog.records == []


def test_on_a_terminal_the_bar_shows_instead_of_lines(caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="protolm.utils.progress")
    monkeypatch.setattr(progress, "on_terminal", lambda: True)
    with lines_every(1e-9):
        assert list(track(range(5), "counting")) == list(range(5))
    assert caplog.records == []


@pytest.mark.parametrize(
    "terminal,bar,shown",
    [(True, "rich", "RichProgressBar"), (True, "tqdm", "TQDMProgressBar"), (True, "none", "ProgressLines"),
     (False, "rich", "ProgressLines"), (False, "tqdm", "ProgressLines")],
)  # fmt: skip
def test_training_shows_the_bar_on_a_terminal_and_lines_elsewhere(terminal, bar, shown, make_config, monkeypatch):
    monkeypatch.setattr(progress, "on_terminal", lambda: terminal)
    settings = read_settings(make_config(*TINY, f"callbacks.progress_bar={bar}", "callbacks.progress_every_s=7"))
    display = progress_display(settings)
    assert type(display).__name__ == shown
    if shown == "ProgressLines":
        assert display.every_s == 7


def test_predict_to_a_pipe_logs_rows_done_unless_asked_not_to(tiny_run, tmp_path, caplog):
    source = tmp_path / "in.txt"
    lines = (data_dir() / "sst2" / "dev.tsv").read_text().splitlines()[1:41]
    source.write_text("".join(line.split("\t")[0] + "\n" for line in lines))
    common = [f"model={tiny_run}", f"input_file={source}", "batch_size=8", "chunk_size=16"]
    result = run_cli(*PROTOLM, "predict", *common, f"output={tmp_path / 'out.csv'}", "progress_every_s=0.001",
        f"hydra.run.dir={tmp_path / 'log'}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [pass_line("predict", "rows").match(m) for m in messages(result.stdout, "protolm.utils.progress")]
    assert [(int(m[1]), int(m[2])) for m in rows if m] == [(16, 40), (32, 40), (40, 40)], result.stdout
    assert "predict: done, 40 rows in" in result.stdout
    caplog.set_level(logging.INFO, logger="protolm.utils.progress")
    with lines_every(1e-9):  # progress=false: neither a bar nor lines
        assert predict_file(load(tiny_run), source, tmp_path / "quiet.csv", batch_size=8, progress=False) == 40
    assert caplog.records == []
