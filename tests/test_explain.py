"""explain.py on a trained checkpoint: console, explanations.jsonl, and an HTML page a browser renders."""

import json
import shutil
import types
from pathlib import Path

import pytest
import torch

from protolm.explanations.describe import explain
from protolm.modeling.inference import forward
from protolm.modeling.saved import require_projection
from protolm.utils.errors import CheckpointError, DataError
from tests.support import PROTOLM, run_cli, run_here

FIELDS = {"text", "prediction", "probs", "tokens", "attention", "prototypes"}
PROTOTYPE_FIELDS = {"prototype_id", "class", "similarity", "contribution", "nearest_examples"}


def test_explanation_fields_and_consistency(tiny_loaded):
    model, tok = tiny_loaded.model, tiny_loaded.tokenizer
    [e] = explain(model, tok, ["an unforgettable, moving film"], top_k=3, nearest=2)
    assert FIELDS <= set(e)
    assert e["tokens"] == ["an", "unforgettable", ",", "moving", "film"]  # sub-words merged to words
    assert sum(e["attention"]) + e["special_tokens_attention"] == pytest.approx(1.0, abs=1e-5)
    assert sum(e["probs"].values()) == pytest.approx(1.0) and e["prediction"] == max(e["probs"], key=e["probs"].get)
    assert len(e["prototypes"]) == 3 and PROTOTYPE_FIELDS <= set(e["prototypes"][0])
    contributions = [p["contribution"] for p in e["prototypes"]]
    assert contributions == sorted(contributions, reverse=True)
    # contribution = similarity x weight from that prototype to the predicted class
    predicted = model.config.class_names().index(e["prediction"])
    for p in e["prototypes"]:
        weight = float(model.head.last_layer.weight[predicted, p["prototype_id"]].detach())
        assert p["contribution"] == pytest.approx(p["similarity"] * weight, rel=1e-5)
        assert len(p["nearest_examples"]) == 2 and {"text", "label"} <= set(p["nearest_examples"][0])
    # The explanation's numbers are the model's own.
    enc = tok(["an unforgettable, moving film"], return_tensors="pt")
    with torch.no_grad():
        probs = torch.softmax(forward(model, dict(enc))["logits"], -1)[0]
    assert e["probs"]["positive"] == pytest.approx(float(probs[1]), rel=1e-5)


def test_sub_words_merge_into_whole_words(tiny_loaded):
    [e] = explain(tiny_loaded.model, tiny_loaded.tokenizer, ["unbelievably overwrought"])
    assert e["tokens"] == ["unbelievably", "overwrought"]


def test_explain_cli_writes_jsonl_and_html(tiny_run, tmp_path):
    ckpt = tiny_run / "checkpoints" / "projected.ckpt"
    result = run_cli(
        *PROTOLM, "explain", f"model={ckpt}", 'text=a warm, funny (and "sharp") film', f"hydra.run.dir={tmp_path}"
    )
    assert result.returncode == 0, result.stderr
    assert "prediction:" in result.stdout and "nearest training examples" in result.stdout
    [line] = (tmp_path / "explanations.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert record["text"] == 'a warm, funny (and "sharp") film' and FIELDS <= set(record)
    page = (tmp_path / "explanations.html").read_text()
    assert "<!DOCTYPE html>" in page and "http://" not in page and "https://" not in page and "<script" not in page


def test_explain_cli_input_file_and_split(tiny_run, tmp_path, capsys, monkeypatch):
    def run_cli(*args):
        return run_here("protolm", *args[len(PROTOLM) :], capsys=capsys, monkeypatch=monkeypatch)

    ckpt = tiny_run / "checkpoints" / "projected.ckpt"
    inputs = tmp_path / "inputs.txt"
    inputs.write_text("great acting\n\nterrible plot\n")
    result = run_cli(*PROTOLM, "explain", f"model={ckpt}", f"input_file={inputs}", f"hydra.run.dir={tmp_path}/a")
    assert result.returncode == 0, result.stderr
    assert len((tmp_path / "a" / "explanations.jsonl").read_text().splitlines()) == 2
    result = run_cli(*PROTOLM, "explain", f"model={ckpt}", "split=test", "max_inputs=4", f"hydra.run.dir={tmp_path}/b")
    assert result.returncode == 0, result.stderr
    assert len((tmp_path / "b" / "explanations.jsonl").read_text().splitlines()) == 4


def test_explain_without_projection_says_how_to_project(tiny_run, tmp_path, capsys, monkeypatch):
    ckpt = f"model={tiny_run / 'checkpoints' / 'last.ckpt'}"
    result = run_here(
        "protolm", "explain", ckpt, "text=fine", f"hydra.run.dir={tmp_path}", capsys=capsys, monkeypatch=monkeypatch
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "has no prototype projection" in result.stderr and "protolm project model=" in result.stderr


def test_pair_task_needs_the_second_text(tiny_loaded):
    model = tiny_loaded.model
    model.config.text_pair = True
    try:
        with pytest.raises(DataError, match="text_pair"):
            explain(model, tiny_loaded.tokenizer, ["only one text"])
    finally:
        model.config.text_pair = False


def test_require_projection_refuses_linear_and_unprojected(tiny_loaded):
    linear = types.SimpleNamespace(config=types.SimpleNamespace(is_prototype=False), prototypes=None)
    with pytest.raises(CheckpointError, match="linear head"):
        require_projection(linear, "x.ckpt")
    unprojected = types.SimpleNamespace(config=types.SimpleNamespace(is_prototype=True), prototypes=None)
    with pytest.raises(CheckpointError, match="no prototype projection"):
        require_projection(unprojected, "x.ckpt")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH: install Debian's chromium (.ci/run does) to run the browser test"
)
def test_html_page_renders_in_a_real_headless_browser(tiny_run, tmp_path):
    from playwright.sync_api import sync_playwright

    ckpt = tiny_run / "checkpoints" / "projected.ckpt"
    result = run_cli(*PROTOLM, "explain", f"model={ckpt}", "split=test", "max_inputs=3", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    page_path = Path(tmp_path / "explanations.html")
    problems = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on(
            "request", lambda r: problems.append(f"network request {r.url}") if not r.url.startswith("file:") else None
        )
        page.goto(page_path.as_uri())
        assert page.title() == "protolm explanations"
        assert page.locator("section.input").count() == 3
        assert page.locator(".card").count() == 9  # top_k=3 prototype cards per input
        assert page.locator(".tok").count() > 10
        box = page.locator("section.input").first.bounding_box()
        assert box["width"] > 600 and box["height"] > 100  # laid out, not collapsed
        page.screenshot(path=str(tmp_path / "explanations.png"), full_page=True)
        browser.close()
    assert problems == []
    assert (tmp_path / "explanations.png").stat().st_size > 10_000
