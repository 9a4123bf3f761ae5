"""data.streaming=true: the training split read as a stream, every example once per epoch in a
seeded order, resumed exactly; what a stream cannot do is refused by name before anything runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from protolm.config import DataConfig, read_settings
from protolm.data.datamodule import TaskDataModule
from protolm.utils.errors import ConfigError
from tests.support import REPO, TINY, toy_task

STREAM = ["data.streaming=true", "data.length_grouping=false"]


def stream_of(tmp_path, tokenizer, rows: int = 50, seed: int = 0, epoch: int = 0, **data):
    folder = tmp_path / "t"
    folder.mkdir(exist_ok=True)
    lines = "".join(f"sentence {i} is {'good' if i % 2 else 'bad'}\t{i % 2}\n" for i in range(rows))
    (folder / "train.tsv").write_text("sentence\tlabel\n" + lines)
    (folder / "dev.tsv").write_text("sentence\tlabel\nfine\t1\n")
    (folder / "test.tsv").write_text("sentence\tlabel\nbad\t0\n")
    local = {"format": "tsv", "train": "t/train.tsv", "validation": "t/dev.tsv", "test": "t/test.tsv"}
    task = toy_task("tsv", ["sentence"], "label", labels=["0", "1"], local=local, carve=[], select_on="validation")
    task["report_on"] = "test"
    settings = DataConfig(data_dir=str(tmp_path), streaming=True, length_grouping=False, shuffle_buffer=8, **data)
    dm = TaskDataModule(task, tokenizer, settings, seed=seed)
    dm._epoch = lambda: epoch
    return dm.streamed_train()


def test_every_example_once_per_epoch_in_a_seeded_order(tmp_path, minilm_tokenizer):
    first = [e["index"] for e in stream_of(tmp_path, minilm_tokenizer)]
    assert sorted(first) == list(range(50)) and first != list(range(50))  # all, once, shuffled
    assert [e["index"] for e in stream_of(tmp_path, minilm_tokenizer)] == first  # same seed and epoch
    assert [e["index"] for e in stream_of(tmp_path, minilm_tokenizer, epoch=1)] != first  # reshuffled
    assert [e["index"] for e in stream_of(tmp_path, minilm_tokenizer, seed=1)] != first
    example = next(iter(stream_of(tmp_path, minilm_tokenizer)))
    expected = minilm_tokenizer(f"sentence {example['index']} is {'good' if example['index'] % 2 else 'bad'}")
    assert example["input_ids"] == expected["input_ids"] and example["labels"] == example["index"] % 2


def test_a_resumed_stream_continues_where_the_checkpoint_left_off(tmp_path, minilm_tokenizer):
    whole = [e["index"] for e in stream_of(tmp_path, minilm_tokenizer, batch_size=4)]
    resumed = stream_of(tmp_path, minilm_tokenizer, batch_size=4)
    resumed.resume_at({"epoch": 0, "completed": 3})
    assert [e["index"] for e in resumed] == whole[12:]
    assert [e["index"] for e in resumed] == whole  # only the first iteration after a resume skips


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (["data.streaming=true"], "data.length_grouping=false"),
        (STREAM + ["task=sst2", "trainer.max_steps=5", "head=linear"], "carving heldout out of train"),
        (STREAM + ["task=sst5", "head=linear"], "trainer.max_steps"),
        (STREAM + ["task=sst5", "head=linear", "trainer.max_steps=5", "data.max_train_samples=9"], "max_train_samples"),
        (STREAM + ["task=sst5", "trainer.max_steps=5"], "project.at_end=true, health.at_end=true"),
    ],
)
def test_what_a_stream_cannot_do_is_refused_by_name(overrides, named, make_config):
    with pytest.raises(ConfigError, match="data.streaming=true reads the training split as a stream") as err:
        read_settings(make_config(*overrides), check_trainer=False)
    assert named in str(err.value)


def test_a_tool_asking_for_the_streamed_split_is_told_what_to_do(tmp_path, minilm_tokenizer):
    stream = stream_of(tmp_path, minilm_tokenizer)
    dm = TaskDataModule(stream.spec, minilm_tokenizer, stream.data)
    with pytest.raises(ConfigError, match="data.streaming=false"):
        dm.role_split("train")


STREAMED_RUN = (
    [o for o in TINY if not o.startswith("data.max_train_samples")]
    + STREAM
    + [
        "task=sst5",
        "head=linear",
        "trainer.max_steps=14",
        "trainer.val_check_interval=7",
        "trainer.deterministic=true",
        "callbacks.checkpoint.every_n_train_steps=3",
        "seed=3",
    ]
)


def streamed_run(run_dir, *extra, interrupt_at: int | None = None):
    script = "tests/interrupt_at.py" if interrupt_at else "run.py"
    env = {"PROTOLM_TEST_SIGINT_AT_STEP": str(interrupt_at)} if interrupt_at else {}
    return subprocess.run(
        [sys.executable, script, *STREAMED_RUN, *extra, f"hydra.run.dir={run_dir}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )


@pytest.mark.slow
def test_a_streamed_run_interrupted_mid_epoch_resumes_to_the_uninterrupted_result(tmp_path):
    whole = streamed_run(tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr
    interrupted = streamed_run(tmp_path / "cut", interrupt_at=7)
    assert interrupted.returncode == 130, interrupted.stderr
    resumed = streamed_run(tmp_path / "cut", "ckpt_path=last")
    assert resumed.returncode == 0, resumed.stderr
    a, b = (json.loads((tmp_path / run / "results.json").read_text()) for run in ("whole", "cut"))
    assert a["global_step"] == b["global_step"] == 14 and a["metrics"] == b["metrics"]
    assert b["splits"]["train"]["origin"].endswith("(streamed)")
