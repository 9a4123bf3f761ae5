"""The explanation server (serve.py), run as a user would and spoken to over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

from benchmarks.serving import free_port, wait_until_healthy
from tests.support import PROTOLM, REPO, TINY, assert_clean_failure, compose_config, run_cli

httpx = pytest.importorskip("httpx")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@contextlib.contextmanager
def serving(model, log, *args: str):
    """``protolm serve model=<model> <args>`` on a free port, answering /health: its URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "protolm", "serve", f"model={model}", f"port={port}", *args, f"hydra.run.dir={log}"],
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
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def server(tiny_run, tmp_path_factory):
    """serve.py on the tiny model, with small limits so the tests can cross them, and a batch window
    long enough that concurrent requests surely share batches."""
    limits = ["max_texts=8", "max_chars=500", "max_body_bytes=20000", "batch_window_ms=50", "log_level=warning"]
    with serving(tiny_run, tmp_path_factory.mktemp("serve"), *limits) as url:
        yield url


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
        error = response.json()["error"]
        assert error.startswith("texts[1] is empty or only whitespace: there is nothing to classify"), error


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


def browser_page(p):
    """A chromium page (1200 x 800) and the list its script errors and console errors go to."""
    browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    problems = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    return browser, page, problems


needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH: install Debian's chromium (.ci/run does)"
)


@needs_chromium
def test_the_page_explains_a_typed_text_and_browses_the_prototypes(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser, page, problems = browser_page(p)
        page.goto(server)
        assert page.title() == "protolm"
        assert page.locator("details.class-group").count() == 2  # one group per class
        page.fill("textarea[name=text]", "a lovely , moving film")
        page.click("button[type=submit]")
        page.wait_for_selector("section.input")
        assert page.locator("section.input .card").count() == 3  # the top 3 prototypes
        assert page.locator("section.input .tok").count() == 5
        assert "prediction:" in page.locator(".pred").inner_text()
        legend = page.locator("section.input .legend")
        assert legend.is_visible() and "deleting it" in legend.inner_text() and legend.locator(".scale").is_visible()
        page.locator("details.class-group summary").first.click()
        assert page.locator("details.class-group .card.proto").first.is_visible()
        assert page.locator(".card.proto").count() == 8
        browser.close()
    assert problems == []


@contextlib.contextmanager
def app_served(clf, **options):
    """The server's application around ``clf`` (``options``: create_app's), run by uvicorn in a
    thread of this process."""
    import uvicorn

    from protolm.serving.server import create_app

    port = free_port()
    app = create_app(clf, **options)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def listed(card) -> list[str]:
    """The texts of a card's examples, without their labels and notes."""
    return card.locator(".ex .txt").all_inner_texts()


@needs_chromium
def test_the_page_folds_the_phrases_of_an_example_into_it(tiny_run):
    """A prototype whose nearest examples are one sentence three times over (as itself, a prefix
    of it, a phrase inside it) lists the sentence once, saying what it took in."""
    from playwright.sync_api import sync_playwright

    import protolm

    clf = protolm.load(tiny_run)
    record = clf.model.prototypes["prototypes"][0]
    sentence = "a gorgeous , witty , seductive movie ."
    texts = [sentence, "a gorgeous , witty", "witty , seductive movie", sentence, "a dull mess", "witty"]
    template = {**record["nearest"][0], "label": 1, "label_name": "positive", "text_pair": None}
    record["nearest"] = [{**template, "text": text, "similarity": 0.9 - i / 100} for i, text in enumerate(texts)]
    with app_served(clf) as url, sync_playwright() as p:
        browser, page, problems = browser_page(p)
        page.goto(url)
        page.locator("details.class-group summary").first.click()
        card = page.locator(".card.proto").first
        assert listed(card) == [sentence, "a dull mess"]
        assert card.locator(".ex .folded").all_inner_texts() == ["+4 phrases of it"]
        for other in page.locator(".card").all():  # no card lists a text twice, nor a phrase of another
            shown = listed(other)
            assert all(a == b or f" {a} " not in f" {b} " for a in shown for b in shown), shown
        browser.close()
    assert problems == []


@needs_chromium
def test_the_page_shows_a_linear_models_prediction(tmp_path):
    from playwright.sync_api import sync_playwright

    import protolm
    from protolm.training.train import train

    train(compose_config(tmp_path / "linear", [*TINY, "head=linear", "trainer.max_epochs=1"]))
    clf = protolm.load(tmp_path / "linear")
    expected = clf.predict(["a lovely , moving film"])[0]
    with app_served(clf) as url, sync_playwright() as p:
        browser, page, problems = browser_page(p)
        page.goto(url)
        assert page.locator("details.class-group").count() == 0  # no prototypes to browse
        page.fill("textarea[name=text]", "a lovely , moving film")
        page.click("button[type=submit]")
        section = page.locator("section.prediction")
        section.wait_for()
        assert f"prediction: {expected['prediction']}" in section.locator(".pred").inner_text()
        assert section.locator(".text").inner_text() == "a lovely , moving film"
        bars = section.locator(".bar").all_inner_texts()
        assert [b.split()[0] for b in bars] == ["negative", "positive"]
        assert [float(b.split()[-1]) for b in bars] == pytest.approx(list(expected["probs"].values()), abs=1e-3)
        assert "linear head" in section.inner_text() and "{" not in section.inner_text()
        browser.close()
    assert problems == []


def concurrently(url: str, requests: list[tuple[str, dict]]) -> list[httpx.Response]:
    """Every (path, body) sent at once, the answers in the same order."""

    async def send():
        async with httpx.AsyncClient(timeout=120) as client:
            return await asyncio.gather(*(client.post(f"{url}{path}", json=body) for path, body in requests))

    return asyncio.run(send())


def assert_same_prediction(served: dict, alone: dict) -> None:
    """The server's answer is the Python API's, but for the float noise of padding in a batch."""
    assert served["prediction"] == alone["prediction"]
    assert served["probs"] == pytest.approx(alone["probs"], abs=1e-5)


def test_concurrent_requests_share_batches_and_each_gets_its_own_answer(server, tiny_run):
    """Requests of different texts (and lengths, and counts) sent at once are batched, and each
    answer is what the Python API gives for that request's texts alone."""
    import protolm

    texts = [
        f"{'a truly ' * (i % 5)}{word} film" for i, word in enumerate(["lovely", "dreadful", "tedious", "moving"] * 5)
    ]
    requests = [("/predict", {"texts": [text]}) for text in texts[:12]]
    requests += [("/predict", {"texts": texts[12:15]}), ("/explain", {"texts": texts[15:17], "top_k": 2})]
    requests += [("/explain", {"texts": [text], "top_k": 2, "nearest": 1}) for text in texts[17:]]
    before = httpx.get(f"{server}/health").json()["served"]
    answers = concurrently(server, requests)
    served = {key: value - before[key] for key, value in httpx.get(f"{server}/health").json()["served"].items()}
    assert [a.status_code for a in answers] == [200] * len(requests)
    assert served["requests"] == len(requests) and served["batches"] < len(requests)  # they did share
    clf = protolm.load(tiny_run)
    for (path, body), answer in zip(requests, answers, strict=True):
        if path == "/predict":
            found, alone = answer.json()["predictions"], [clf.predict([t])[0] for t in body["texts"]]
        else:
            options = {"top_k": body["top_k"], "nearest": body.get("nearest", 3)}
            found, alone = answer.json()["explanations"], [clf.explain([t], **options)[0] for t in body["texts"]]
        assert len(found) == len(alone) == len(body["texts"])
        for got, expected in zip(found, alone, strict=True):
            assert_same_prediction(got, expected)
            assert got.get("text") == expected.get("text") and got.get("tokens") == expected.get("tokens")
            shown = [(p["prototype_id"], p["nearest_examples"]) for p in got.get("prototypes", [])]
            assert shown == [(p["prototype_id"], p["nearest_examples"]) for p in expected.get("prototypes", [])]


def test_a_full_queue_refuses_with_503_and_answers_the_requests_it_took(tiny_run, tmp_path):
    """max_waiting=2 and a long window: two requests wait in the batch, the others are refused at once."""
    with serving(tiny_run, tmp_path, "max_waiting=2", "batch_window_ms=1000", "log_level=warning") as url:
        answers = concurrently(url, [("/predict", {"texts": [f"film number {i}"]}) for i in range(8)])
        statuses = sorted(a.status_code for a in answers)
        assert statuses.count(200) >= 2 and 503 in statuses and set(statuses) <= {200, 503}
        refused = next(a for a in answers if a.status_code == 503)
        assert refused.json() == {"error": "the server is busy (2 requests waiting); retry shortly"}
        assert httpx.post(f"{url}/predict", json={"texts": ["afterwards"]}, timeout=60).status_code == 200


def test_a_second_server_on_the_same_port_fails_at_once_naming_the_port(server, tiny_run, tmp_path):
    """The port is checked before the model loads: a model that does not exist is not even read."""
    port = server.rsplit(":", 1)[1]
    for model in (tiny_run, tmp_path / "no-such-model"):
        started = time.monotonic()
        result = run_cli(*PROTOLM, "serve", f"model={model}", f"port={port}", f"hydra.run.dir={tmp_path / 'log'}")
        assert_clean_failure(result, f"port={port} on 127.0.0.1 is already in use", "choose another with port=")
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        print(f"refused in {time.monotonic() - started:.2f} s (the process's start-up included)")
    assert httpx.get(f"{server}/health").status_code == 200  # the first server is untouched


@pytest.mark.parametrize(
    "override, message",
    [
        ("batch_window_ms=-1", "batch_window_ms=-1 must be a number in [0, 1000]"),
        ("max_batch_texts=0", "max_batch_texts=0 must be a whole number in [1, 1024]"),
    ],
)
def test_batching_settings_out_of_range_are_refused(tmp_path, override, message):
    result = run_cli(*PROTOLM, "serve", "model=anything", override, f"hydra.run.dir={tmp_path}")
    assert_clean_failure(result, message)
