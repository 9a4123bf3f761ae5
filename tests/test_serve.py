"""The explanation server (serve.py), run as a user would and spoken to over real HTTP on loopback."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys

import pytest

from benchmarks.serving import free_port, wait_until_healthy
from tests.support import REPO

httpx = pytest.importorskip("httpx")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def server(tiny_run, tmp_path_factory):
    """serve.py on the tiny model, with small limits so the tests can cross them."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve")
    args = [f"model={tiny_run}", f"port={port}", "max_texts=8", "max_chars=500", "max_body_bytes=20000"]
    process = subprocess.Popen(
        [sys.executable, "-m", "protolm", "serve", *args, f"hydra.run.dir={log}", "log_level=warning"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(process, url, timeout_s=180)
    except RuntimeError as err:
        process.kill()
        pytest.fail(f"{err}: {process.stdout.read()[-3000:]}")
    yield url
    process.terminate()
    process.wait(timeout=30)


def post(url: str, path: str, body) -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, timeout=60)


def test_predict_explain_prototypes_and_health(server):
    health = httpx.get(f"{server}/health").json()
    assert health["status"] == "ok" and health["task"] == "sst2" and health["labels"] == ["negative", "positive"]
    predictions = post(server, "/predict", {"texts": ["a lovely film", "a dreadful mess"]}).json()["predictions"]
    assert len(predictions) == 2 and set(predictions[0]) == {"prediction", "probs", "truncated"}
    assert predictions[0]["prediction"] in ("negative", "positive")
    explained = post(server, "/explain", {"texts": ["a lovely film"], "top_k": 2, "nearest": 1}).json()
    (e,) = explained["explanations"]
    assert e["tokens"] == ["a", "lovely", "film"] and len(e["prototypes"]) == 2
    assert e["prototypes"][0]["nearest_examples"][0]["text"]
    assert e["prediction"] == predictions[0]["prediction"]
    prototypes = httpx.get(f"{server}/prototypes").json()
    assert len(prototypes["prototypes"]) == 8 and all(p["nearest"] for p in prototypes["prototypes"])


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({"texts": []}, 422, "texts: List should have at least 1 item"),
        ({"texts": "one string"}, 422, "texts: Input should be a valid list"),
        ({"texts": ["a"], "extra": 1}, 422, "extra: Extra inputs are not permitted"),
        ({"texts": ["a"] * 9}, 422, "9 texts, over the server's limit of 8"),
        ({"texts": ["a" * 501]}, 422, "texts.0: 501 characters, over the limit of 500"),
        ({"texts": ["a"], "text_pairs": ["b"]}, 400, "classifies single texts: drop text_pairs"),
        ({"texts": ["a"] * 5000}, 413, "over the server's limit of 20000 bytes"),
    ],
)
def test_bad_requests_get_a_json_error_and_the_server_stays_up(server, body, status, message):
    response = post(server, "/predict", body)
    assert response.status_code == status and message in response.json()["error"]
    assert httpx.get(f"{server}/health").status_code == 200


def test_empty_texts_are_refused_by_predict_and_explain_naming_the_text(server):
    for path in ("/predict", "/explain"):
        response = post(server, path, {"texts": ["a lovely film", " \n "]})
        assert response.status_code == 400
        assert response.json()["error"].startswith("texts[1] is empty or only whitespace: there is nothing to classify")


def test_malformed_and_oversized_bodies_never_take_the_server_down(server):
    headers = {"content-type": "application/json"}
    response = httpx.post(f"{server}/predict", content=b"{not json", headers=headers)
    assert response.status_code == 422 and "not valid JSON" in response.json()["error"]
    response = httpx.post(f"{server}/predict", content=b'{"texts": ["a \\ud800 b"]}', headers=headers)
    assert response.status_code == 422 and "texts.0: not valid Unicode text" in response.json()["error"]
    response = httpx.post(f"{server}/predict", content=b'{"texts": ["a"]}', headers={"content-type": "text/plain"})
    assert response.status_code == 415 and "Content-Type: application/json" in response.json()["error"]

    def chunks():  # no Content-Length: the limit is enforced while the body streams in
        for _ in range(30):
            yield b"x" * 1000

    response = httpx.post(f"{server}/predict", content=chunks(), headers=headers)
    assert response.status_code == 413
    with socket.create_connection(("127.0.0.1", int(server.rsplit(":", 1)[1]))) as raw:  # a broken request
        raw.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    assert post(server, "/predict", {"texts": ["still here"]}).status_code == 200


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH: install Debian's chromium (.ci/run does)")
def test_the_page_explains_a_typed_text_and_browses_the_prototypes(server):
    from playwright.sync_api import sync_playwright

    problems = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.goto(server)
        assert page.title() == "protolm"
        assert page.locator("details.class-group").count() == 2  # one group per class
        page.fill("textarea[name=text]", "a lovely , moving film")
        page.click("button[type=submit]")
        page.wait_for_selector("section.input")
        assert page.locator("section.input .card").count() == 3  # the top 3 prototypes
        assert page.locator("section.input .tok").count() == 5
        assert "prediction:" in page.locator(".pred").inner_text()
        page.locator("details.class-group summary").first.click()
        assert page.locator("details.class-group .card.proto").first.is_visible()
        assert page.locator(".card.proto").count() == 8
        browser.close()
    assert problems == []
