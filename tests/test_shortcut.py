"""The planted shortcut (``data.shortcut_*``, ``experiment=shortcut``): which examples get the token,
in which splits, and that the benchmark plants what the experiment config says."""

from __future__ import annotations

import pytest

from protolm.config import DataConfig
from protolm.data.datamodule import TaskDataModule
from tests.support import toy_task

TOKEN = "zxq"
ROWS = [f"sentence number {i} is {'good' if i % 2 else 'bad'}\t{i % 2}\n" for i in range(80)]


@pytest.fixture
def task(tmp_path):
    folder = tmp_path / "t"
    folder.mkdir()
    (folder / "train.tsv").write_text("sentence\tlabel\n" + "".join(ROWS))
    (folder / "dev.tsv").write_text("sentence\tlabel\n" + "".join(ROWS[:20]))
    return toy_task("tsv", ["sentence"], "label", labels=["0", "1"],
                    carve=[{"split": "heldout", "from": "train", "size": 20}])  # fmt: skip


def planted_splits(tmp_path, task, tokenizer, **shortcut) -> dict:
    settings = {"data_dir": str(tmp_path), "cache_dir": str(tmp_path / "cache"), "max_length": 16}
    dm = TaskDataModule(task, tokenizer, DataConfig(**settings, **shortcut))
    return {role: dm.role_split(role) for role in ("train", "val", "test")}


def carriers(split, label: int) -> tuple[int, int]:
    """(how many examples of class ``label`` carry the token, how many examples the class has)."""
    members = [i for i in range(len(split)) if split.labels[i] == label]
    return sum(TOKEN in split.texts[i].split() for i in members), len(members)


@pytest.mark.no_data
def test_the_token_goes_into_the_share_of_one_class_of_train_and_selection_only(tmp_path, task, minilm_tokenizer):
    splits = planted_splits(tmp_path, task, minilm_tokenizer,
                            shortcut_token=TOKEN, shortcut_class=1, shortcut_share=0.5)  # fmt: skip
    for role in ("train", "val"):
        carrying, members = carriers(splits[role], 1)
        assert carrying == round(0.5 * members) and members > 0, role
        assert carriers(splits[role], 0)[0] == 0, role  # the other class stays clean
        assert "planted in" in splits[role].origin
    test = splits["test"]
    assert not any(TOKEN in t for t in test.texts)  # the reported split stays clean
    # The same settings plant the same examples (a sweep's runs see the same data): a new module,
    # without the cache, draws the same carriers.
    (tmp_path / "cache").rename(tmp_path / "old-cache")
    again = planted_splits(tmp_path, task, minilm_tokenizer,
                           shortcut_token=TOKEN, shortcut_class=1, shortcut_share=0.5)  # fmt: skip
    assert list(again["train"].texts) == list(splits["train"].texts)


@pytest.mark.no_data
def test_without_a_token_nothing_is_planted_and_the_cache_keeps_the_two_apart(tmp_path, task, minilm_tokenizer):
    planted = planted_splits(tmp_path, task, minilm_tokenizer, shortcut_token=TOKEN, shortcut_share=1.0)
    assert carriers(planted["train"], 1)[0] == carriers(planted["train"], 1)[1]
    clean = planted_splits(tmp_path, task, minilm_tokenizer)  # same cache folder
    assert not any(TOKEN in t for t in clean["train"].texts)


@pytest.mark.no_data
def test_the_benchmark_plants_what_the_experiment_config_says(make_config):
    from benchmarks import shortcut

    cfg = make_config("experiment=shortcut")
    demo = make_config("experiment=demo")
    assert (cfg.data.shortcut_token, cfg.data.shortcut_class, cfg.data.shortcut_share) == (
        shortcut.TOKEN, shortcut.CLASS, shortcut.SHARE,
    )  # fmt: skip
    # Everything else is the demo's: the clean and the shortcut model differ only by the token.
    for section in ("task", "backbone", "head", "loss", "trainer", "project"):
        assert cfg[section] == demo[section], section
    assert {k: v for k, v in cfg.data.items() if not k.startswith("shortcut")} == {
        k: v for k, v in demo.data.items() if not k.startswith("shortcut")
    }
