"""Carving without leaks: whole groups on one side (``group_by``), and a selection slice whose texts
no kept training text overlaps (``outermost`` + ``drop_contained``), on toy files and the real tasks."""

from __future__ import annotations

import json
import random
from functools import cache

import pytest

from protolm.config import DataConfig, default_data_dir
from protolm.config.task import TaskSpec
from protolm.data import build
from protolm.data.split import Split
from protolm.utils.errors import ConfigError, DataError
from tests.test_data import EXPECTED, composed_task


def toy_task(tmp_path, records: list[dict], carve: dict, pair: bool = False) -> TaskSpec:
    """A jsonl task whose train file holds ``records``, with one carve taking ``heldout`` out of train."""
    folder = tmp_path / "t"
    folder.mkdir(exist_ok=True)
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (folder / "dev.jsonl").write_text(json.dumps({"a": "fine", "b": "ok", "y": "pos"}) + "\n")
    return TaskSpec.from_config(
        {
            "name": "toy",
            "text_fields": ["a", "b"] if pair else ["a"],
            "label_field": "y",
            "labels": ["neg", "pos"],
            "local": {"format": "jsonl", "train": "t/train.jsonl", "validation": "t/dev.jsonl"},
            "carve": [{"split": "heldout", "from": "train", **carve}],
            "select_on": "heldout",
            "report_on": "validation",
        }
    )


def toy_splits(tmp_path, records, carve, split_seed=0) -> tuple[Split, Split]:
    """(the carved slice, what remains of train)."""
    spec = toy_task(tmp_path, records, carve)
    splits = build.load_splits(
        spec, ["train", "heldout"], DataConfig(data_dir=str(tmp_path), split_seed=split_seed), {}
    )
    return splits["heldout"], splits["train"]


def grouped_records(sizes: list[int]) -> list[dict]:
    """Records in groups of the given sizes (field ``g``), interleaved so a group is never a run of rows."""
    records = [
        {"a": f"text {g}.{k}", "g": f"group {g}", "y": "pos" if k % 2 else "neg"}
        for g, n in enumerate(sizes)
        for k in range(n)
    ]
    random.Random(7).shuffle(records)
    return records


# ------------------------------------------------------------------------------ group_by
@pytest.mark.parametrize("split_seed", [0, 1, 2])
@pytest.mark.parametrize("amount", [{"size": 20}, {"fraction": 0.3}])
def test_group_carve_puts_whole_groups_on_one_side_and_reaches_the_size(tmp_path, split_seed, amount):
    sizes = [1, 2, 3, 4, 5] * 8  # 120 rows in 40 groups
    records = grouped_records(sizes)
    carved, kept = toy_splits(tmp_path, records, {**amount, "group_by": "g"}, split_seed)
    group_of = {r["a"]: r["g"] for r in records}
    carved_groups, kept_groups = {group_of[t] for t in carved.texts}, {group_of[t] for t in kept.texts}
    assert carved_groups.isdisjoint(kept_groups) and len(carved) + len(kept) == len(records)
    # Rounding rule: whole groups are added until the slice holds at least the requested rows.
    wanted = amount.get("size") or round(amount["fraction"] * len(records))
    assert wanted <= len(carved) < wanted + max(sizes)
    assert carved.rows == sorted(carved.rows) and kept.rows == sorted(kept.rows)  # source order
    again, _ = toy_splits(tmp_path, records, {**amount, "group_by": "g"}, split_seed)
    assert again.rows == carved.rows  # seeded


def test_split_seed_changes_the_groups_carved(tmp_path):
    records = grouped_records([2] * 30)
    slices = {tuple(toy_splits(tmp_path, records, {"size": 10, "group_by": "g"}, seed)[0].rows) for seed in range(3)}
    assert len(slices) == 3


def test_group_by_links_a_value_across_fields(tmp_path):
    # Row 0's second text is row 1's first text: one sentence on both sides unless they are one group.
    linked = [("s1", "s2"), ("s2", "s3")]
    records = [{"a": f"{a} {b}", "q": a, "s": b, "y": "pos"} for a, b in linked]
    records += [{"a": f"alone {i}", "q": f"qa{i}", "s": f"sa{i}", "y": "neg"} for i in range(12)]
    for seed in range(6):
        carved, kept = toy_splits(tmp_path, records, {"size": 2, "group_by": ["q", "s"]}, seed)
        both = {f"{a} {b}" for a, b in linked}
        assert both <= set(carved.texts) or both <= set(kept.texts)


def test_group_by_several_fields_keeps_rows_linked_through_any_of_them_together(tmp_path):
    # Rows 0-1 share a question, rows 1-2 a sentence: all three are one group, though 0 and 2 share nothing.
    chain = [("q1", "s1"), ("q1", "s2"), ("q2", "s2")]
    records = [{"a": f"{q} {s}", "q": q, "s": s, "y": "pos"} for q, s in chain]
    records += [{"a": f"alone {i}", "q": f"qa{i}", "s": f"sa{i}", "y": "neg"} for i in range(12)]
    for seed in range(6):
        carved, kept = toy_splits(tmp_path, records, {"size": 3, "group_by": ["q", "s"]}, seed)
        chained = {f"{q} {s}" for q, s in chain}
        assert chained <= set(carved.texts) or chained <= set(kept.texts)


def test_group_by_a_field_the_records_lack_names_it_and_the_fields_present(tmp_path):
    records = grouped_records([2] * 5)
    with pytest.raises(DataError, match=r"group_by field 'premise' .*fields present: a, g, y"):
        toy_splits(tmp_path, records, {"size": 2, "group_by": "premise"})


def test_group_carve_that_would_take_every_row_is_refused(tmp_path):
    records = grouped_records([6, 6])
    with pytest.raises(DataError, match="cannot carve"):
        toy_splits(tmp_path, records, {"size": 7, "group_by": "g"})


@pytest.mark.parametrize("bad", [{"group_by": ""}, {"group_by": []}, {"group_by": 3}, {"groupby": "g"}])
def test_malformed_group_by_is_a_config_error(tmp_path, bad):
    with pytest.raises(ConfigError, match=r"carve\[0\]"):
        toy_task(tmp_path, grouped_records([2]), {"size": 1, **bad})


def test_carving_by_rows_is_unchanged(tmp_path):
    """Without group_by (or the containment options) a carve takes exactly the rows it always took."""
    records = [{"a": f"text {i}", "y": "pos" if i % 3 else "neg"} for i in range(50)]
    carved, kept = toy_splits(tmp_path, records, {"size": 8})
    assert carved.rows == [2, 13, 15, 16, 19, 25, 27, 39]  # pinned before group_by existed
    assert kept.rows == [r for r in range(1, 51) if r not in carved.rows]
    carved, _ = toy_splits(tmp_path, records, {"fraction": 0.1}, split_seed=3)
    assert carved.rows == [11, 18, 22, 37, 44]


# ---------------------------------------------------------------- outermost, drop_contained
def phrase_records(texts: list[str]) -> list[dict]:
    return [{"a": t, "y": "pos" if i % 2 else "neg"} for i, t in enumerate(texts)]


def test_drop_contained_drops_what_a_carved_text_contains_at_token_boundaries(tmp_path):
    texts = ["a very good film", "very good", "good", "goodness", "a very", "film noir", "very  good ", "bad"]
    records = phrase_records(texts)
    for seed in range(20):  # find a seed that carves "a very good film" alone
        carved, kept = toy_splits(tmp_path, records, {"size": 1, "drop_contained": True}, seed)
        if carved.texts == ["a very good film"]:
            break
    else:
        pytest.fail("no seed carved the sentence")
    # Contained at token boundaries (whitespace runs count as one): dropped. Within a word, or overlapping: kept.
    assert kept.texts == ["goodness", "film noir", "bad"]
    assert "4 contained" in kept.origin


def test_outermost_carves_only_texts_no_other_text_contains(tmp_path):
    sentences = [f"sentence number {i} is fine" for i in range(10)]
    parts = [f"number {i}" for i in range(10)] + [f"{i} is fine" for i in range(10)] + ["fine", "is"]
    records = phrase_records(sentences + parts)
    for seed in range(5):
        carved, kept = toy_splits(tmp_path, records, {"size": 4, "outermost": True, "drop_contained": True}, seed)
        assert len(carved) == 4 and set(carved.texts) <= set(sentences)
        for i in range(10):
            parts_kept = {f"number {i}", f"{i} is fine"} & set(kept.texts)
            assert len(parts_kept) == (0 if sentences[i] in carved.texts else 2)
        assert "fine" not in kept.texts and "is" not in kept.texts  # inside every sentence carved


def test_outermost_with_a_fraction_counts_the_candidates(tmp_path):
    records = phrase_records([f"long sentence {i}" for i in range(10)] + [f"sentence {i}" for i in range(10)])
    carved, _ = toy_splits(tmp_path, records, {"fraction": 0.2, "outermost": True})
    assert len(carved) == 2 and all(t.startswith("long") for t in carved.texts)


@pytest.mark.parametrize("option", ["drop_contained", "outermost"])
def test_containment_options_are_for_single_text_tasks(tmp_path, option):
    with pytest.raises(ConfigError, match=rf"carve\[0\].{option}.*one text field"):
        toy_task(tmp_path, [{"a": "x", "b": "y", "y": "pos"}], {"size": 1, option: True}, pair=True)


# ------------------------------------------------------------------------- the real tasks
@cache
def task_splits(name: str) -> dict[str, Split]:
    spec = TaskSpec.from_config(composed_task(name))
    return build.load_splits(spec, spec.split_names(), DataConfig(data_dir=default_data_dir()), {})


def shared(split: Split, others: list[Split], field: str) -> int:
    """How many of ``split``'s examples share the value of ``field`` (texts or pairs) with any of ``others``."""
    seen = {v for other in others for v in getattr(other, field)}
    return sum(v in seen for v in getattr(split, field))


@pytest.mark.parametrize(("name", "fields"), [("mnli-devsplit", ["texts"]), ("qnli-devsplit", ["texts", "pairs"])])
def test_devsplit_halves_share_no_premise_question_or_sentence(name, fields):
    """mnli: premise; qnli: question and sentence (as connected components). Reported, selection and
    training rows never share one."""
    splits = task_splits(name)
    train, heldout, reported = splits["train"], splits["heldout"], splits["validation"]
    for field in fields:
        assert shared(reported, [train, heldout], field) == 0, field
        assert shared(heldout, [train], field) == 0, field
    assert len(reported) + len(train) + len(heldout) == EXPECTED[name.split("-")[0]]["test"][1]  # the whole dev file


@pytest.mark.parametrize("name", ["rte", "mrpc", "wnli"])
def test_pair_task_selection_slice_shares_no_sentence_with_train(name):
    """Carved by rows, 53 of WNLI's 64 selection pairs shared their first sentence with a training
    pair (RTE: 19 and 50 of 249 by first and second sentence; MRPC: 0 and 33 of 367). Grouped by
    both fields, none does; and no sentence of a selection pair is in a training pair in either
    field (grouped within each field only, 24 of MRPC's 367 selection rows and 1 of RTE's 249 were)."""
    splits = task_splits(name)
    for field in ("texts", "pairs"):
        assert shared(splits["heldout"], [splits["train"]], field) == 0, field
    train = set(splits["train"].texts) | set(splits["train"].pairs)
    crossing = [i for i, (a, b) in enumerate(zip(splits["heldout"].texts, splits["heldout"].pairs)) if {a, b} & train]
    assert crossing == []


def normalized(text: str) -> str:
    return " ".join(text.split())


def test_sst2_no_kept_training_text_occurs_inside_a_selection_text():
    splits = task_splits("sst2")
    inside = set()  # every token n-gram of every selection text
    for text in splits["heldout"].texts:
        tokens = text.split()
        inside |= {" ".join(tokens[i:j]) for i in range(len(tokens)) for j in range(i + 1, len(tokens) + 1)}
    assert not [t for t in splits["train"].texts if normalized(t) in inside]


def test_sst2_no_selection_text_occurs_inside_a_kept_training_text():
    splits = task_splits("sst2")
    # One string of the training texts, each padded with spaces and kept apart by newlines: a
    # selection text found in it as " text " lies within one training text, at token boundaries.
    blob = "\n".join(f" {normalized(t)} " for t in splits["train"].texts)
    assert not [t for t in splits["heldout"].texts if f" {normalized(t)} " in blob]


@pytest.mark.no_data
def test_a_task_without_a_validation_split_selects_on_a_slice_carved_from_train(tmp_path, caplog):
    records = [{"a": f"text {i}", "y": "pos" if i % 2 else "neg"} for i in range(50)]
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "t" / "test.jsonl").write_text(json.dumps({"a": "fine", "y": "pos"}) + "\n")
    task = {"name": "toy", "text_fields": ["a"], "label_field": "y", "labels": ["neg", "pos"]}
    task["local"] = {"format": "jsonl", "train": "t/train.jsonl", "test": "t/test.jsonl"}
    with caplog.at_level("INFO"):
        spec = TaskSpec.from_config(task)
    assert "has no validation split: checkpoints are selected on a seeded 10 % slice carved from train" in caplog.text
    splits = build.load_splits(spec, ["train", "validation"], DataConfig(data_dir=str(tmp_path)), {})
    selection, train = set(splits["validation"].texts), set(splits["train"].texts)
    assert len(selection) == 5 and len(train) == 45 and not selection & train
    # A task that names its selection split keeps the error when the split does not exist.
    with pytest.raises(ConfigError, match="task.select_on='validation' is not one of the task's splits"):
        TaskSpec.from_config(task | {"select_on": "validation"})
