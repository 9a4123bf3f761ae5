"""The tokenized-data cache: reused when nothing changed, rebuilt when anything that decides the
tokens changed, built once when several processes ask at the same time, never left half-written."""

from __future__ import annotations

import copy
import hashlib
import json
import multiprocessing
import os

import pytest

from protolm.config import DataConfig
from protolm.data import encoding
from protolm.data.datamodule import TaskDataModule
from tests.support import toy_task

ROWS = [f"sentence number {i} is {'good' if i % 2 else 'bad'}\t{i % 2}\n" for i in range(40)]
TSV = "sentence\tlabel\n" + "".join(ROWS)


@pytest.fixture
def task(tmp_path):
    folder = tmp_path / "t"
    folder.mkdir()
    (folder / "train.tsv").write_text(TSV)
    (folder / "dev.tsv").write_text("sentence\tlabel\nfine\t1\n")
    return toy_task("tsv", ["sentence"], "label", labels=["0", "1"])


def module(tmp_path, task, tokenizer, **data) -> TaskDataModule:
    settings = {"data_dir": str(tmp_path), "cache_dir": str(tmp_path / "cache"), "max_length": 16} | data
    return TaskDataModule(task, tokenizer, DataConfig(**settings))


def entries(tmp_path, kind: str) -> list[str]:
    folder = tmp_path / "cache" / kind
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.exists() else []


def examples(split) -> list:
    return [(split.texts[i], split.labels[i], split.rows[i], split.encoding(i)) for i in range(len(split))]


def refuse_to_encode(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("encoded again although the cache holds the result")

    monkeypatch.setattr(encoding, "encode", refuse)


def test_a_second_run_reads_the_cache_and_gets_the_same_examples(tmp_path, task, minilm_tokenizer, monkeypatch):
    first = module(tmp_path, task, minilm_tokenizer).role_split("train")
    assert len(entries(tmp_path, "role")) == 1 and len(entries(tmp_path, "split")) == 1
    refuse_to_encode(monkeypatch)
    again = module(tmp_path, task, minilm_tokenizer).role_split("train")
    assert examples(again) == examples(first) and again.origin == first.origin
    assert len(entries(tmp_path, "role")) == 1


@pytest.mark.parametrize(
    "change",
    ["file", "max_length", "split_seed", "limit", "label_map", "carve"],
)
def test_anything_that_decides_the_tokens_makes_a_new_entry(change, tmp_path, task, minilm_tokenizer):
    before = module(tmp_path, task, minilm_tokenizer).role_split("train")
    data = {}
    if change == "file":
        path = tmp_path / "t" / "train.tsv"
        path.write_text(path.read_text().replace("number 7 is good", "number 7 is great"))
    elif change == "max_length":
        data["max_length"] = 5
    elif change == "split_seed":
        data["split_seed"] = 1
    elif change == "limit":
        data["max_train_samples"] = 10
    elif change == "label_map":
        task = task | {"label_map": {"0": 1, "1": 0}}
    else:
        task = task | {"carve": [{"split": "heldout", "from": "train", "size": 2}]}
    after = module(tmp_path, task, minilm_tokenizer, **data).role_split("train")
    assert len(entries(tmp_path, "role")) == 2
    assert examples(after) != examples(before)
    if change == "file":
        assert "sentence number 7 is great" in list(after.texts)


def test_a_changed_tokenizer_of_the_same_name_makes_a_new_entry(tmp_path, task, minilm_tokenizer):
    """The key holds the tokenizer's definition, not its name: one token added changes it."""
    before = module(tmp_path, task, minilm_tokenizer).role_split("train")
    changed = copy.deepcopy(minilm_tokenizer)
    changed.add_tokens(["sentence number"])
    assert changed.name_or_path == minilm_tokenizer.name_or_path
    after = module(tmp_path, task, changed).role_split("train")
    assert len(entries(tmp_path, "role")) == 2
    assert after.encoding(0) != before.encoding(0)


def test_cache_off_writes_nothing_to_the_cache_dir(tmp_path, task, minilm_tokenizer):
    dm = module(tmp_path, task, minilm_tokenizer, cache=False)
    split = dm.role_split("train")
    assert len(split) > 0 and not (tmp_path / "cache").exists()
    private = dm.cache.root
    assert private.is_dir()
    del dm, split
    import gc

    gc.collect()
    assert not private.exists()  # the temporary folder goes with its data module


def test_a_failed_build_leaves_no_entry_and_the_next_run_builds_it(tmp_path, task, minilm_tokenizer, monkeypatch):
    encode = encoding.encode

    def crash(*args, **kwargs):
        encode(*args, **kwargs)  # the Arrow file is written, then the build fails before its record
        raise RuntimeError("killed while encoding")

    monkeypatch.setattr(encoding, "encode", crash)
    with pytest.raises(RuntimeError, match="killed while encoding"):
        module(tmp_path, task, minilm_tokenizer).role_split("train")
    assert entries(tmp_path, "role") == []
    monkeypatch.setattr(encoding, "encode", encode)
    assert len(module(tmp_path, task, minilm_tokenizer).role_split("train")) == 39


def test_the_training_fingerprint_is_the_digest_resumed_checkpoints_hold(tmp_path, task, minilm_tokenizer):
    """Checkpoints written before splits were Arrow tables hold this digest of the examples' lists."""
    split = module(tmp_path, task, minilm_tokenizer).role_split("train")
    digest = hashlib.sha256()
    for values in (list(split.texts), [], split.labels):
        digest.update(json.dumps(values, ensure_ascii=False).encode())
    assert split.fingerprint == digest.hexdigest()


def _build_in_a_process(tmp_path, task, tokenizer, log):
    """One of several processes asking for the same entry at once; appends its pid to ``log`` if it encodes."""
    encode = encoding.encode

    def logged(*args, **kwargs):
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        return encode(*args, **kwargs)

    encoding.encode = logged
    split = module(tmp_path, task, tokenizer).role_split("train")
    with open(log.with_suffix(".done"), "a") as f:
        f.write(json.dumps([list(split.texts), split.fingerprint]) + "\n")


def test_processes_asking_at_once_build_the_entry_once(tmp_path, task, minilm_tokenizer):
    """As DDP ranks and sweep jobs do: one builds, the others wait for it and read it."""
    log = tmp_path / "encoders.log"
    context = multiprocessing.get_context("fork")
    args = (tmp_path, task, minilm_tokenizer, log)
    workers = [context.Process(target=_build_in_a_process, args=args) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    assert len(log.read_text().split()) == 1
    results = log.with_suffix(".done").read_text().splitlines()
    assert len(results) == 3 and len(set(results)) == 1
    assert len(entries(tmp_path, "role")) == 1
    assert not [p for p in (tmp_path / "cache" / "role").iterdir() if ".building-" in p.name]
