"""Bad input, generated: the data and explain paths either work or fail with one clear error."""

import json
import string

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from protolm.config import DataConfig
from protolm.config.task import TaskSpec
from protolm.data.datamodule import TaskDataModule
from protolm.explanations.describe import explain
from protolm.utils.errors import ConfigError, DataError
from tests.support import run_here, toy_task

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# Free text as users and datasets produce it: empty, whitespace, punctuation, any script, long.
TEXT = st.one_of(
    st.just(""),
    st.text(alphabet=" \t\n\r\u00a0", max_size=5),
    st.text(max_size=60),
    st.text(alphabet=string.ascii_letters + " ,.'!?", min_size=200, max_size=1500),
)


def jsonl_task(tmp_path, records, pair=False, **changes) -> dict:
    folder = tmp_path / "t"
    folder.mkdir(exist_ok=True)
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (folder / "dev.jsonl").write_text(json.dumps({"a": "fine", "b": "ok", "y": "pos"}) + "\n")
    return toy_task("jsonl", ["a", "b"] if pair else ["a"], "y", **changes)


def load_train(cfg, tmp_path, tokenizer, max_length=32):
    data = DataConfig(data_dir=str(tmp_path), max_length=max_length)
    return TaskDataModule(cfg, tokenizer, data).load_splits(["train", "heldout"])


@SETTINGS
@given(texts=st.lists(TEXT, min_size=2, max_size=8))
def test_any_text_loads_and_long_text_is_truncated_and_counted(texts, tmp_path_factory, minilm_tokenizer):
    tmp_path = tmp_path_factory.mktemp("d")
    cfg = jsonl_task(tmp_path, [{"a": t, "y": "pos" if i % 2 else "neg"} for i, t in enumerate(texts)])
    dm = TaskDataModule(cfg, minilm_tokenizer, DataConfig(data_dir=str(tmp_path), max_length=32))
    split = dm.role_split("train")
    assert all(2 <= n <= 32 for n in split.lengths)
    full = [len(minilm_tokenizer(t)["input_ids"]) for t in split.texts]
    assert split.truncated == sum(n > 32 for n in full)  # truncation is reported, exactly


@SETTINGS
@given(lines=st.lists(st.sampled_from(["fine", "a bit long sentence", "ok"]), min_size=2, max_size=6), data=st.data())
def test_non_utf8_bytes_name_the_file_and_line(lines, data, tmp_path_factory, minilm_tokenizer):
    tmp_path = tmp_path_factory.mktemp("d")
    cfg = jsonl_task(tmp_path, [{"a": text, "y": "pos"} for text in lines])
    path = tmp_path / "t" / "train.jsonl"
    rows = path.read_bytes().splitlines(keepends=True)
    bad = data.draw(st.integers(0, len(rows) - 1))
    rows[bad] = rows[bad].replace(b'"a": "', b'"a": "\xff\xfe')
    path.write_bytes(b"".join(rows))
    with pytest.raises(DataError, match=rf"train.jsonl: line {bad + 1}: .*not valid utf-8"):
        load_train(cfg, tmp_path, minilm_tokenizer)


LABEL = st.one_of(
    st.sampled_from(["neg", "pos", 0, 1, "0", "1"]),
    st.integers(-3, 5),
    st.floats(allow_nan=True),
    st.booleans(),
    st.none(),
    st.text(max_size=4),
    st.lists(st.integers(), max_size=2),
)


@SETTINGS
@given(labels=st.lists(LABEL, min_size=2, max_size=6))
@example(labels=["neg", "¹"])  # a digit to str.isdigit, not to int(): once a ValueError's traceback
def test_mixed_label_types_map_or_fail_naming_the_row(labels, tmp_path_factory, minilm_tokenizer):
    tmp_path = tmp_path_factory.mktemp("d")
    cfg = jsonl_task(tmp_path, [{"a": "text", "y": y} for y in labels])
    valid = {"neg": 0, "pos": 1, "0": 0, "1": 1}
    expected = [valid.get(str(y).strip()) for y in labels]
    if None in expected:
        row = expected.index(None) + 1
        with pytest.raises(DataError, match=rf"train.jsonl: row {row}: label .* is not in the label set of task toy"):
            load_train(cfg, tmp_path, minilm_tokenizer)
    else:
        splits = load_train(cfg, tmp_path, minilm_tokenizer)
        got = {r: y for s in splits.values() for r, y in zip(s.rows, s.labels)}
        assert got == {i + 1: y for i, y in enumerate(expected)}


@SETTINGS
@given(missing=st.sampled_from(["a", "b", "y"]), at=st.integers(0, 3))
def test_missing_columns_name_the_row_and_the_fields_present(missing, at, tmp_path_factory, minilm_tokenizer):
    tmp_path = tmp_path_factory.mktemp("d")
    records = [{"a": "x", "b": "z", "y": "pos"} for _ in range(4)]
    del records[at][missing]
    cfg = jsonl_task(tmp_path, records, pair=True)
    with pytest.raises(DataError, match=rf"row {at + 1}: no (text|label) field '{missing}'"):
        load_train(cfg, tmp_path, minilm_tokenizer)


REQUIRED = ["name", "text_fields", "label_field", "local"]


@SETTINGS
@given(
    key=st.sampled_from(REQUIRED + ["labels", "select_on", "report_on", "carve"]),
    typo=st.sampled_from(["drop", "misspell"]),
)
def test_task_yaml_with_missing_or_misspelled_keys_lists_the_valid_keys(key, typo, tmp_path_factory):
    cfg = jsonl_task(tmp_path_factory.mktemp("d"), [{"a": "x", "y": "pos"}])
    value = cfg.pop(key)
    if typo == "misspell":
        cfg[key[:-1] + key[-1].upper() + "x"] = value
    with pytest.raises(ConfigError) as err:
        TaskSpec.from_config(cfg)
    message = str(err.value)
    assert "\n" not in message
    if typo == "misspell":
        assert "unknown key" in message and "valid keys:" in message and "text_fields" in message
    elif key in REQUIRED:
        assert f"missing required key(s) {key}" in message
    # (dropping one of the others fails on its consequence, e.g. a selection split that no longer exists)


@SETTINGS
@given(text=TEXT)
def test_explain_any_text(text, tiny_loaded):
    [e] = explain(tiny_loaded.model, tiny_loaded.tokenizer, [text], max_length=48)
    assert sum(e["attention"]) + e["special_tokens_attention"] == pytest.approx(1.0, abs=1e-4)
    assert all(word and word in text for word in e["tokens"])  # words are pieces of the input
    n_tokens = len(tiny_loaded.tokenizer(text)["input_ids"])
    assert e["truncated"] == (n_tokens > 48)
    assert sum(e["probs"].values()) == pytest.approx(1.0, abs=1e-5)


def test_pair_task_given_one_text_in_a_file(tmp_path, minilm_tokenizer):
    cfg = jsonl_task(tmp_path, [{"a": "x", "b": "z", "y": "pos"}, {"a": "only one", "y": "neg"}], pair=True)
    with pytest.raises(DataError, match=r"row 2: no text field 'b'"):
        load_train(cfg, tmp_path, minilm_tokenizer)


def test_asking_for_more_examples_than_a_split_has_and_splits_with_empty_texts_are_said(tmp_path, capsys, monkeypatch):
    """data.max_train_samples / max_eval_samples above a split's size: all of it is used, and one
    warning line per split names the key, the count asked for and the count there is."""
    (tmp_path / "data" / "t").mkdir(parents=True)
    rows = [f"{word} film\t{i % 2}" for i, word in enumerate("good bad fine dull great poor nice flat".split() * 2)]
    (tmp_path / "data" / "t" / "train.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    (tmp_path / "data" / "t" / "dev.tsv").write_text("sentence\tlabel\n" + "\n".join(rows[:3] + [" \t1"]) + "\n")
    (tmp_path / "conf" / "task").mkdir(parents=True)
    task = toy_task("tsv", ["sentence"], "label", labels=["0", "1"], name="small")
    (tmp_path / "conf" / "task" / "small.yaml").write_text(json.dumps(task))
    args = [
        "backbone=tiny", "logger=none", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
        "head.num_prototypes=4", "data.max_train_samples=1000", "data.max_eval_samples=50",
        f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "task=small", f"data.data_dir={tmp_path / 'data'}",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]  # fmt: skip
    result = run_here("run.py", *args, capsys=capsys, monkeypatch=monkeypatch)
    assert result.returncode == 0, result.stdout + result.stderr
    log = (tmp_path / "run" / "run.log").read_text()
    assert "data.max_train_samples=1000, but small/train has only 15 examples: all 15 are used" in log
    assert "data.max_eval_samples=50, but small/validation has only 4 examples: all 4 are used" in log
    assert "data.max_train_samples=1000, but" in result.stdout + result.stderr  # on the terminal too
    # The model's split with a text that is only a space: explain leaves it out and says so.
    args = [f"model={tmp_path / 'run'}", "split=test", f"hydra.run.dir={tmp_path / 'explained'}"]
    result = run_here("protolm", "explain", *args, capsys=capsys, monkeypatch=monkeypatch)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "split=test: skipped 1 example(s) with no text" in (tmp_path / "explained" / "explain.log").read_text()
    assert len((tmp_path / "explained" / "explanations.jsonl").read_text().splitlines()) == 3
