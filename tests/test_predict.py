"""Batch prediction (predict.py): every input row gets one output row, in order, streamed in chunks."""

from __future__ import annotations

import csv
import json

import pytest

from protolm.serving.batch import predict_file
from protolm.serving.classifier import load as load_classifier
from protolm.utils.errors import DataError
from tests.support import PROTOLM, assert_clean_failure, data_dir, run_cli, run_here


@pytest.fixture(scope="module")
def clf(tiny_run):
    return load_classifier(tiny_run)


def dev_texts(n: int) -> list[str]:
    return [line.split("\t")[0] for line in (data_dir() / "sst2" / "dev.tsv").read_text().splitlines()[1 : n + 1]]


def test_predict_cli_writes_one_row_per_input_row_in_order(tiny_run, clf, tmp_path):
    texts = dev_texts(40)
    source = tmp_path / "in.txt"
    source.write_text("\n".join(texts) + "\n")
    out = tmp_path / "out.csv"
    result = run_cli(*PROTOLM, "predict", f"model={tiny_run}", f"input_file={source}", f"output={out}", "batch_size=8",
        "chunk_size=16", f"hydra.run.dir={tmp_path / 'log'}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"wrote 40 rows to {out}" in result.stderr
    rows = list(csv.DictReader(out.open()))
    assert [int(r["row"]) for r in rows] == list(range(40)) and [r["text"] for r in rows] == texts
    expected = clf.predict(texts)
    assert [r["prediction"] for r in rows] == [e["prediction"] for e in expected]
    assert all(abs(float(r["prob_positive"]) - e["probs"]["positive"]) < 1e-6 for r, e in zip(rows, expected))
    assert not list(tmp_path.glob("*.partial"))


def test_jsonl_in_and_out_with_explanations_across_chunks(clf, tmp_path):
    texts = dev_texts(23)
    source = tmp_path / "in.jsonl"
    source.write_text(
        "".join(json.dumps({"id": i, "sentence": t}) + "\n" + ("\n" if i == 5 else "") for i, t in enumerate(texts))
    )
    out = tmp_path / "out.jsonl"
    rows = predict_file(
        clf, source, out, batch_size=4, chunk_size=7, explain={"top_k": 2, "nearest": 1}, text_field="sentence",
        progress=False,
    )  # fmt: skip
    found = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == len(found) == 23  # the blank line is not a row
    assert [f["text"] for f in found] == texts and [f["row"] for f in found] == list(range(23))
    assert all(len(f["prototypes"]) == 2 and len(f["prototypes"][0]["nearest_examples"]) == 1 for f in found)
    assert [f["prediction"] for f in found] == [e["prediction"] for e in clf.predict(texts)]


def test_a_missing_column_names_the_columns_there_are(tiny_run, tmp_path, capsys, monkeypatch):
    source = tmp_path / "in.csv"
    source.write_text("id,sentence\n1,fine\n")
    result = run_here(
        "protolm", "predict", f"model={tiny_run}", f"input_file={source}", f"output={tmp_path / 'out.jsonl'}",
        f"hydra.run.dir={tmp_path / 'log'}", capsys=capsys, monkeypatch=monkeypatch,
    )  # fmt: skip
    assert_clean_failure(result, "row 1: no field 'text' (it has 'id', 'sentence'); set text_field=")
    assert not (tmp_path / "out.jsonl").exists() and not list(tmp_path.glob("*.partial"))


def test_bad_file_names_and_taken_outputs_fail_before_the_model_loads(tmp_path, capsys, monkeypatch):
    taken = tmp_path / "taken.csv"
    taken.write_text("mine\n")
    (tmp_path / "in.txt").write_text("a\n")
    given = f"input_file={tmp_path / 'in.txt'}"
    for args, message in (
        (["input_file=in.parquet", "output=o.csv"], "input_file=in.parquet: the file name must end in one of .txt"),
        ([given, "output=o.tsv"], "output=o.tsv: the file name must end in one of .csv, .jsonl"),
        ([given, f"output={taken}"], "already exists; choose another output= or pass overwrite=true"),
        ([given, f"output={tmp_path / 'no' / 'o.csv'}"], "the folder"),
    ):
        log = f"hydra.run.dir={tmp_path / 'log'}"
        result = run_here("protolm", "predict", "model=/nowhere", *args, log, capsys=capsys, monkeypatch=monkeypatch)
        assert_clean_failure(result, message)
    assert taken.read_text() == "mine\n"


def test_an_interrupted_prediction_leaves_no_output(clf, tmp_path, monkeypatch):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(dev_texts(20)) + "\n")
    calls = []

    def failing_predict(texts, pairs=None, batch_size=32):
        calls.append(len(texts))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return [{"prediction": "positive", "probs": {}} for _ in texts]

    monkeypatch.setattr(clf, "predict", failing_predict)
    with pytest.raises(KeyboardInterrupt):
        predict_file(clf, source, tmp_path / "out.jsonl", chunk_size=8, progress=False)
    assert list(tmp_path.iterdir()) == [source]


def test_byte_order_marks_blank_lines_and_broken_text(clf, tmp_path):
    source = tmp_path / "excel.csv"
    source.write_bytes("\ufefftext,id\nfine film,1\n".encode())  # Excel writes a byte-order mark
    assert predict_file(clf, source, tmp_path / "a.jsonl", progress=False) == 1
    source = tmp_path / "in.txt"
    source.write_text("\ufefffirst\n\n  \nsecond\n\n")
    predict_file(clf, source, tmp_path / "b.jsonl", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert [(r["row"], r["text"]) for r in rows] == [(0, "first"), (1, "second")]
    source = tmp_path / "broken.jsonl"
    source.write_text('{"text": "a \\ud800 b"}\n')  # valid JSON, not valid text
    with pytest.raises(DataError, match="line 1: not valid Unicode text"):
        predict_file(clf, source, tmp_path / "c.jsonl", progress=False)


def test_a_pair_model_needs_tab_separated_pairs(clf, tmp_path, monkeypatch):
    source = tmp_path / "in.txt"
    source.write_text("premise\thypothesis\n\nno tab here\n")
    monkeypatch.setattr(type(clf), "text_pair", property(lambda self: True))
    with pytest.raises(DataError, match="line 3: a pair model needs 'text<TAB>text_pair'"):
        predict_file(clf, source, tmp_path / "out.jsonl", progress=False)
