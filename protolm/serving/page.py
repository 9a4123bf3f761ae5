"""The server's page at ``/`` (server-rendered, no scripts): a form for a text, the explanation of
its prediction (a linear-head model: the prediction and its probabilities), and every prototype
per class with its nearest training examples, a phrase listed with the sentence it is part of."""

from __future__ import annotations

import html

from fastapi import FastAPI, Query
from fastapi.responses import HTMLResponse

from protolm.serving.batcher import Batcher, Busy
from protolm.serving.render import examples_html, explanation_section, page, prediction_section
from protolm.serving.server import Refusal, TextsRequest
from protolm.utils.errors import ProtoLMError

TOP_K, SHOWN = 3, 3  # prototypes per explanation, and distinct training examples per prototype
# Examples asked of the model per prototype: more than shown, so that SHOWN remain after the
# phrases of one sentence are folded into it (the projection records 5 or so).
NEAREST_ASKED = 20


def install_page(app: FastAPI, clf, batcher: Batcher, check) -> None:
    config = clf.model.config
    meta = {"task": config.task, "head": config.head_type, "labels": ", ".join(clf.labels or ["(regression)"])}

    @app.get("/", response_class=HTMLResponse)
    def home(text: str | None = Query(None), text_pair: str | None = Query(None)):
        body = ""
        if text:
            try:
                body = _answer(clf, batcher, check, text, text_pair)
            except (ProtoLMError, Refusal, Busy) as err:
                body = f'<p class="error">{html.escape(str(err))}</p>'
        return page("protolm", meta, _form(text, text_pair, clf.text_pair) + body + _browser(clf), PAGE_CSS)


def _answer(clf, batcher: Batcher, check, text: str, text_pair: str | None) -> str:
    """The typed text's explanation (a prototype model) or prediction (a linear one), through the
    batcher as the endpoints' requests are."""
    pairs = [text_pair or ""] if clf.text_pair else None
    check(TextsRequest(texts=[text], text_pairs=pairs))  # the endpoints' limits
    if clf.model.config.head_type == "prototype":
        (found,) = batcher.submit(("explain", TOP_K, NEAREST_ASKED), [text], pairs).result()
        return explanation_section(found, 1, examples_shown=SHOWN)
    (row,) = batcher.submit(("predict",), [text], pairs).result()
    return prediction_section(row, text, text_pair if clf.text_pair else None, 1)


PAGE_CSS = """
form{background:#fff;border:1px solid #dde1e8;border-radius:10px;padding:14px;margin-bottom:18px}
textarea{width:100%;box-sizing:border-box;font:inherit;font-size:15px;padding:8px;border:1px solid #ccd;\
border-radius:6px}
button{margin-top:8px;font:inherit;padding:6px 16px;border-radius:6px;border:1px solid #4a7bd0;\
background:#4a7bd0;color:#fff}
.error{color:#a12;font-weight:600}
details{background:#fff;border:1px solid #dde1e8;border-radius:10px;padding:10px 14px;margin-bottom:10px}
summary{cursor:pointer;font-weight:600} .protos{display:flex;flex-wrap:wrap;gap:10px;margin-top:10px}
.protos .card{flex:1 1 360px}
"""


def _form(text: str | None, text_pair: str | None, pair: bool) -> str:
    second = (
        f'<textarea name="text_pair" rows="2" placeholder="second text">{html.escape(text_pair or "")}</textarea>'
        if pair
        else ""
    )
    return (
        f'<form method="get" action="/"><textarea name="text" rows="3" placeholder="a text to classify">'
        f'{html.escape(text or "")}</textarea>{second}<button type="submit">explain</button></form>'
    )


def _browser(clf) -> str:
    """Every prototype, grouped by class, with its nearest training examples (folded)."""
    records = clf.prototypes()
    if not records:
        return ""
    by_class: dict = {}
    for record in records:
        by_class.setdefault(record.get("class_name") or record["class"], []).append(record)
    sections = []
    for name, group in by_class.items():
        cards = "".join(
            f'<div class="card proto"><div class="hd"><span>prototype {r["prototype_id"]}</span></div>'
            + examples_html(
                [{**n, "label": n["label_name"] if n["label_name"] is not None else n["label"]} for n in r["nearest"]]
            )
            + "</div>"
            for r in group
        )
        title = f"class {html.escape(str(name))}: {len(group)} prototypes"
        sections.append(
            f'<details class="class-group"><summary>{title}</summary><div class="protos">{cards}</div></details>'
        )
    return "<h2>Prototypes</h2>" + "".join(sections)
