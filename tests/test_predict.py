"""Batch prediction (predict.py): every input row gets one output row, in order, streamed in chunks."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from protolm.serving.batch import predict_file
from protolm.serving.classifier import load as load_classifier
from protolm.utils.errors import DataError
from tests.support import PROTOLM, REPO, assert_clean_failure, data_dir, run_cli, run_here


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
    assert rows == len(found) == 24 and [f["row"] for f in found] == list(range(24))  # row = the input's line
    blank = found.pop(6)  # the blank line after record 5 is a row, with no prediction
    assert blank == {"row": 6, "text": "", "text_pair": None, "prediction": None, "probs": None,
                     "truncated": False, "empty": True}  # fmt: skip
    assert [f["text"] for f in found] == texts and not any(f["empty"] for f in found)
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
    (tmp_path / "link.csv").symlink_to(taken)  # the input under another name
    (tmp_path / "in.txt").write_text("a\n")
    given = f"input_file={tmp_path / 'in.txt'}"
    for args, message in (
        (["input_file=in.parquet", "output=o.csv"], "input_file=in.parquet: the file name must end in one of .txt"),
        ([given, "output=o.tsv"], "output=o.tsv: the file name must end in one of .csv, .jsonl"),
        ([given, f"output={taken}"], "already exists; choose another output= or pass overwrite=true"),
        ([given, f"output={tmp_path / 'no' / 'o.csv'}"], "the folder"),
        ([f"input_file={taken}", f"output={taken}", "overwrite=true"], "is the input file itself"),
        ([f"input_file={taken}", f"output={tmp_path / 'link.csv'}", "overwrite=true"], "is the input file itself"),
    ):
        log = f"hydra.run.dir={tmp_path / 'log'}"
        result = run_here("protolm", "predict", "model=/nowhere", *args, log, capsys=capsys, monkeypatch=monkeypatch)
        assert_clean_failure(result, message)
    assert taken.read_text() == "mine\n"


def test_an_interrupted_prediction_keeps_its_finished_chunks_and_goes_on_only_over_the_same_input(
    clf, tmp_path, monkeypatch
):
    texts = dev_texts(20)
    source = tmp_path / "in.txt"
    source.write_text("\n".join(texts) + "\n")
    out = tmp_path / "out.jsonl"
    real_predict, calls = clf.predict, []

    def failing_predict(texts, pairs=None, batch_size=32):
        calls.append(len(texts))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_predict(texts, pairs, batch_size)

    monkeypatch.setattr(clf, "predict", failing_predict)
    with pytest.raises(KeyboardInterrupt, match="the first 8 rows are kept in .*out.jsonl.partial: run the same"):
        predict_file(clf, source, out, chunk_size=8, progress=False)
    assert not out.exists() and len((tmp_path / "out.jsonl.partial").read_text().splitlines()) == 8
    source.write_text("\n".join(["an edited first line", *texts[1:]]) + "\n")  # the rows answered changed
    with pytest.raises(DataError, match="no longer begins with the rows they answer: restore it, or pass overwrite"):
        predict_file(clf, source, out, chunk_size=8, progress=False)
    assert len((tmp_path / "out.jsonl.partial").read_text().splitlines()) == 8  # refused: nothing lost
    assert predict_file(clf, source, out, chunk_size=8, progress=False, overwrite=True) == 20
    assert [json.loads(line)["text"] for line in out.read_text().splitlines()][:2] == ["an edited first line", texts[1]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.jsonl"]


def test_byte_order_marks_blank_lines_and_broken_text(clf, tmp_path):
    source = tmp_path / "excel.csv"
    source.write_bytes("\ufefftext,id\nfine film,1\n".encode())  # Excel writes a byte-order mark
    assert predict_file(clf, source, tmp_path / "a.jsonl", progress=False) == 1
    source = tmp_path / "in.txt"
    source.write_text("\ufefffirst\n\n  \nsecond\n\n")
    predict_file(clf, source, tmp_path / "b.jsonl", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert [(r["row"], r["text"], r["empty"]) for r in rows] == [
        (0, "first", False), (1, "", True), (2, "", True), (3, "second", False), (4, "", True)
    ]  # fmt: skip
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


def test_blank_rows_keep_their_place_in_every_input_format(tiny_run, tmp_path, capsys, monkeypatch):
    """A blank line (or record, or text) is a row of its own, written with empty=true and no prediction,
    so that `row` stays the input's line; the command says how many there were."""
    inputs = {
        "in.txt": "a fine film\n\n   \ndull\n",
        "in.csv": 'id,text\n1,a fine film\n\n3,"   "\n4,dull\n',
        "in.jsonl": '{"text": "a fine film"}\n\n{"text": "   "}\n{"text": "dull"}\n',
    }
    for name, content in inputs.items():
        (tmp_path / name).write_text(content)
        out = tmp_path / f"{name}.out.csv"
        result = run_here(
            "protolm", "predict", f"model={tiny_run}", f"input_file={tmp_path / name}", f"output={out}",
            f"hydra.run.dir={tmp_path / 'log' / name}", capsys=capsys, monkeypatch=monkeypatch,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        log = (tmp_path / "log" / name / "predict.log").read_text()
        assert "2 row(s) have no text (empty or only whitespace; the first is row 1)" in log
        rows = list(csv.DictReader(out.open()))
        assert [(r["row"], r["empty"]) for r in rows] == [("0", "False"), ("1", "True"), ("2", "True"), ("3", "False")]
        assert [r["prediction"] for r in rows][1:3] == ["", ""] and rows[3]["text"] == "dull"
        assert rows[1]["prob_positive"] == "" and rows[0]["prediction"] in ("negative", "positive")


def test_a_huge_line_is_written_as_the_model_read_it_and_flagged(tiny_run, clf, tmp_path, capsys, monkeypatch):
    huge = "a gripping , beautifully acted film " * 30_000  # a megabyte on one line
    (tmp_path / "in.txt").write_text(f"short and sweet\n{huge}\n")
    for out in (tmp_path / "out.csv", tmp_path / "out.jsonl"):
        result = run_here(
            "protolm", "predict", f"model={tiny_run}", f"input_file={tmp_path / 'in.txt'}", f"output={out}",
            f"hydra.run.dir={tmp_path / 'log' / out.suffix}", capsys=capsys, monkeypatch=monkeypatch,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert out.stat().st_size < 2_000  # not the megabyte again
        rows = list(csv.DictReader(out.open())) if out.suffix == ".csv" else [json.loads(x) for x in out.open()]
        assert [str(r["truncated"]) for r in rows] == ["False", "True"]
        read = rows[1]["text"]
        assert huge.startswith(read) and huge[len(read)] == " "  # the words the model read, whole
        # exactly what the model reads: its tokens are the line's, cut to max_length
        assert clf.tokenizer(read)["input_ids"] == clf.tokenizer(huge[:5000], truncation=True,
                                                                  max_length=clf.max_length)["input_ids"]  # fmt: skip
        log = (tmp_path / "log" / out.suffix / "predict.log").read_text()
        assert f"1 row(s) are longer than the model reads ({clf.max_length} tokens)" in log


def test_ctrl_c_keeps_the_rows_written_and_the_same_command_goes_on_from_them(tiny_run, clf, tmp_path):
    """A real Ctrl-C (SIGINT to the process) while chunk 4 is being classified: one line, exit 130,
    the three finished chunks kept; the same command run again writes the rest and only the rest."""
    texts = dev_texts(150)
    source, out = tmp_path / "in.txt", tmp_path / "out.csv"
    source.write_text("\n".join(texts[:70] + [""] + texts[70:]) + "\n")
    args = [f"model={tiny_run}", f"input_file={source}", f"output={out}", "chunk_size=16", "batch_size=8"]
    record = tmp_path / "out.csv.partial.json"
    # A user's shell delivers Ctrl-C to a process that takes it; this test process may not (Lightning
    # ignores SIGINT in a process where it stopped a run on one, and children inherit that).
    process = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "pause_predict_at.py"), *args, f"hydra.run.dir={tmp_path / 'a'}"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PROTOLM_TEST_PAUSE_AT_CHUNK": "4"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not (record.exists() and json.loads(record.read_text())["rows"] == 48):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: stopped by Ctrl-C; the first 48 rows are kept in {out}.partial: "
        "run the same command again to go on from row 48"
    ]
    kept = (tmp_path / "out.csv.partial").read_bytes()
    assert len(list(csv.DictReader(kept.decode().splitlines()))) == 48 and not out.exists()
    again = run_cli(*PROTOLM, "predict", *args, f"hydra.run.dir={tmp_path / 'b'}")
    assert again.returncode == 0, again.stderr[-3000:]
    said = again.stdout + again.stderr
    assert f"{out}: going on from row 48" in said and f"wrote 151 rows to {out}" in said
    assert out.read_bytes().startswith(kept)  # the rows of the first run, as they were written
    rows = list(csv.DictReader(out.open()))
    assert [int(r["row"]) for r in rows] == list(range(151)) and rows[70]["empty"] == "True"
    del rows[70]
    assert all(r["text"] == t if r["truncated"] == "False" else t.startswith(r["text"]) for r, t in zip(rows, texts))
    expected = clf.predict(texts)
    assert all(abs(float(r["prob_positive"]) - e["probs"]["positive"]) < 1e-5 for r, e in zip(rows, expected))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "in.txt", "out.csv"]


def test_a_kept_partial_output_is_not_mixed_with_rows_of_other_settings(tiny_run, clf, tmp_path, capsys, monkeypatch):
    source, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_text("\n".join(dev_texts(12)) + "\n")
    real_predict, calls = clf.predict, []

    def predict_then_stop(texts, pairs=None, batch_size=32):
        calls.append(len(texts))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_predict(texts, pairs, batch_size)

    with monkeypatch.context() as patched:
        patched.setattr(clf, "predict", predict_then_stop)
        with pytest.raises(KeyboardInterrupt):
            predict_file(clf, source, out, chunk_size=4, progress=False)
    args = [f"model={tiny_run}", f"input_file={source}", f"output={out}", "explain=true", "chunk_size=4"]
    result = run_here("protolm", "predict", *args, f"hydra.run.dir={tmp_path / 'log'}", capsys=capsys,
                      monkeypatch=monkeypatch)  # fmt: skip
    assert_clean_failure(result, f"{out}.partial holds 4 rows of an earlier predict with other settings (explain)")
    assert len((tmp_path / "out.jsonl.partial").read_text().splitlines()) == 4
    result = run_here("protolm", "predict", *args, "overwrite=true", f"hydra.run.dir={tmp_path / 'log2'}",
                      capsys=capsys, monkeypatch=monkeypatch)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert all("prototypes" in json.loads(line) for line in out.read_text().splitlines())
    assert not (tmp_path / "out.jsonl.partial").exists() and not (tmp_path / "out.jsonl.partial.json").exists()
