"""A local explanation server (FastAPI): JSON endpoints for programs and a page for people.

``POST /predict`` and ``POST /explain`` take ``{"texts": [...], "text_pairs": [...]}`` and answer
``{"predictions": [...]}`` / ``{"explanations": [...]}`` with the fields of ``Classifier.predict``
and ``Classifier.explain``; ``GET /prototypes`` lists every prototype with its nearest training
examples; ``GET /health`` answers 200 once the model is loaded (it is loaded before the server
answers), with what the batcher has done (``served``). ``GET /`` is a page (server-rendered, no
scripts): a form for a text, the explanation of its prediction, and every prototype per class.

Every refusal is a 4xx JSON ``{"error": "..."}``: oversized bodies (413), too many or too long
texts and malformed requests (422), inputs the model cannot take (400). Concurrent requests share
the model's forward passes: a :class:`protolm.serving.batcher.Batcher` gathers them into batches
(a CPU model predicts about twice as many texts per second in a batch as one at a time), and
more than ``max_waiting`` requests queued or running at once are refused (503).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from protolm.explanations.rationales import DEFAULT_RATIONALE, RATIONALES, check_rationale
from protolm.serving.batch import is_unicode
from protolm.serving.batcher import Batcher, Busy
from protolm.utils.errors import ProtoLMError

log = logging.getLogger(__name__)


@dataclass
class Limits:
    max_texts: int = 64  # texts per request
    max_chars: int = 10_000  # characters per text
    max_body_bytes: int = 1_000_000  # request body
    max_waiting: int = 32  # model requests queued or running at once; more get 503 at once
    batch_window_ms: float = 5.0  # how long the model waits for one more request to batch with those it has
    max_batch_texts: int = 32  # texts in one model call at most


class TextsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    texts: list[str] = Field(min_length=1)
    text_pairs: list[str] | None = None


class ExplainRequest(TextsRequest):
    top_k: int = Field(3, ge=1, le=100)
    nearest: int = Field(3, ge=0, le=50)
    rationale: str = Field(DEFAULT_RATIONALE, description="the token rationale: " + ", ".join(RATIONALES))


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets 413 before the app sees it. A
    declared Content-Length is checked up front (the server delivers no more than it declares);
    a chunked body is buffered up to the limit and then replayed to the app."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            if not length.isdigit() or int(length) > self.limit:
                return await _too_large(self.limit)(scope, receive, send)
            return await self.app(scope, receive, send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                return await _too_large(self.limit)(scope, receive, send)
            if not message.get("more_body"):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse({"error": f"request body over the server's limit of {limit} bytes"}, status_code=413)


def _one_line(err: RequestValidationError) -> str:
    first = err.errors()[0]
    if first.get("type") == "json_invalid":
        return f"the body is not valid JSON ({first.get('msg', 'invalid')} at character {first['loc'][-1]})"
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    return f"{where}: {first.get('msg', 'invalid')}"


def create_app(clf, limits: Limits | None = None, edits_dir: Path | None = None) -> FastAPI:
    """The server's application around a loaded :class:`protolm.serving.classifier.Classifier`; with
    ``edits_dir`` (a prototype model), ``POST /edit`` and the page's edit actions, writing there."""
    limits = limits or Limits()
    model_lock = threading.Lock()  # an edit holds the model while it changes it
    batcher = Batcher(
        model_calls(clf, limits.max_batch_texts, model_lock),
        window_s=limits.batch_window_ms / 1000,
        max_batch_texts=limits.max_batch_texts,
        max_waiting=limits.max_waiting,
        by_length=clf.device.type == "cpu",  # an accelerator pads at little cost: one pass for the batch
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        batcher.close()  # the worker thread ends with the server

    summary = f"{clf.model.config.task}: predictions with their prototypes"
    app = FastAPI(title="protolm", summary=summary, lifespan=lifespan)
    _install_error_handlers(app)
    _install_api(app, clf, batcher, limits)
    from protolm.serving.page import install_page

    session = None
    if edits_dir is not None and clf.model.config.is_prototype and clf.model.prototypes:
        from protolm.serving.edit_api import EditSession, install_edit_api

        session = EditSession(clf, Path(edits_dir), model_lock)
        install_edit_api(app, session)
        log.info("edits on (loopback only): the page's actions, or POST /edit with token %s", session.token)
    install_page(app, clf, batcher, lambda request: check(request, limits), session)
    return BodyLimit(app, limits.max_body_bytes)


def model_calls(clf, max_batch_texts: int, model_lock: threading.Lock | None = None):
    """The batcher's model call: ``key`` is ``("predict",)`` or ``("explain", top_k, nearest, rationale)``."""

    def run_batch(key: tuple, texts: list[str], text_pairs: list[str] | None) -> list[dict]:
        with model_lock or contextlib.nullcontext():
            return _run(key, texts, text_pairs)

    def _run(key: tuple, texts: list[str], text_pairs: list[str] | None) -> list[dict]:
        if key[0] == "predict":
            return clf.predict(texts, text_pairs, batch_size=max_batch_texts)
        _, top_k, nearest, rationale = key
        return clf.explain(
            texts, text_pairs, top_k=top_k, nearest=nearest, batch_size=max_batch_texts, rationale=rationale
        )

    return run_batch


def _install_error_handlers(app: FastAPI) -> None:
    """Every refusal a one-line JSON ``{"error": ...}`` with its status; nothing stops the server."""

    @app.exception_handler(RequestValidationError)
    async def malformed(request: Request, err: RequestValidationError):
        kind = request.headers.get("content-type", "")
        if request.method == "POST" and not kind.startswith("application/json"):
            message = f"send the body as JSON with Content-Type: application/json (got {kind or 'none'!r})"
            return JSONResponse({"error": message}, status_code=415)
        return JSONResponse({"error": _one_line(err)}, status_code=422)

    @app.exception_handler(ProtoLMError)
    async def refused(request: Request, err: ProtoLMError):
        return JSONResponse({"error": str(err)}, status_code=400)

    @app.exception_handler(Refusal)
    async def over_limit(request: Request, err: Refusal):
        return JSONResponse({"error": str(err)}, status_code=err.status)

    @app.exception_handler(Busy)
    async def busy(request: Request, err: Busy):
        return JSONResponse({"error": str(err)}, status_code=503)

    @app.exception_handler(Exception)
    async def failed(request: Request, err: Exception):
        log.exception("request to %s failed", request.url.path)
        return JSONResponse({"error": f"internal error ({type(err).__name__}); the server log has the details"}, 500)


def check(request: TextsRequest, limits: Limits) -> None:
    """The request within the server's limits, or a 422 naming what is over."""
    if len(request.texts) > limits.max_texts:
        raise Refusal(f"texts: {len(request.texts)} texts, over the server's limit of {limits.max_texts}")
    for field, values in (("texts", request.texts), ("text_pairs", request.text_pairs or [])):
        for i, text in enumerate(values):
            if len(text) > limits.max_chars:
                raise Refusal(f"{field}.{i}: {len(text)} characters, over the limit of {limits.max_chars}")
            if not is_unicode(text):
                raise Refusal(f"{field}.{i}: not valid Unicode text (a lone surrogate escape)")


def _install_api(app: FastAPI, clf, batcher: Batcher, limits: Limits) -> None:
    config = clf.model.config

    @app.get("/health")
    async def health():  # async: answered on the event loop, never behind the model's queue
        answer = {"status": "ok", "task": config.task, "head": config.head_type, "labels": clf.labels}
        return {**answer, "served": dict(batcher.counts)}  # how requests were batched so far

    # async: the event loop waits for the batcher, so requests keep arriving while the model runs
    # Each request's texts are checked alone (an empty one named by its index in that request)
    # before they join a batch of other requests' texts.
    @app.post("/predict")
    async def predict(request: TextsRequest):
        check(request, limits)
        clf.check_inputs(request.texts, request.text_pairs)
        return {"predictions": await batcher.run(("predict",), request.texts, request.text_pairs)}

    @app.post("/explain")
    async def explain(request: ExplainRequest):
        check(request, limits)
        clf.check_inputs(request.texts, request.text_pairs)
        check_rationale(request.rationale, clf.model)
        key = ("explain", request.top_k, request.nearest, request.rationale)
        return {"explanations": await batcher.run(key, request.texts, request.text_pairs)}

    @app.get("/prototypes")
    async def prototypes():
        return {"labels": clf.labels, "prototypes": clf.prototypes()}


class Refusal(Exception):
    """A request the server will not run: over a limit (422)."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status
