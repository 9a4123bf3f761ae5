"""The server's page at ``/`` (server-rendered, no scripts): a form for a text, the explanation of
its prediction, and every prototype per class with its nearest training examples."""

from __future__ import annotations

import html

from fastapi import FastAPI, Query
from fastapi.responses import HTMLResponse

from protolm.serving.render import example_html, explanation_section, page
from protolm.serving.server import Refusal, TextsRequest
from protolm.utils.errors import ProtoLMError


def install_page(app: FastAPI, clf, run_model, check) -> None:
    config = clf.model.config
    meta = {"task": config.task, "head": config.head_type, "labels": ", ".join(clf.labels or ["(regression)"])}

    @app.get("/", response_class=HTMLResponse)
    def home(text: str | None = Query(None), text_pair: str | None = Query(None)):
        body, error = "", ""
        if text:
            try:
                pairs = [text_pair or ""] if clf.text_pair else None
                check(TextsRequest(texts=[text], text_pairs=pairs))  # the endpoints' limits
                if config.head_type == "prototype":
                    found, rows = run_model(lambda: clf.explain([text], pairs)), None
                else:
                    found, rows = None, run_model(lambda: clf.predict([text], pairs))
                body = explanation_section(found[0], 1) if found else f"<p>prediction: {html.escape(str(rows[0]))}</p>"
            except (ProtoLMError, Refusal) as err:
                error = f'<p class="error">{html.escape(str(err))}</p>'
        return page("protolm", meta, _form(text, text_pair, clf.text_pair) + error + body + _browser(clf), PAGE_CSS)


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
    """Every prototype, grouped by class, with its nearest training examples."""
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
            + "".join(
                example_html({**n, "label": n["label_name"] if n["label_name"] is not None else n["label"]})
                for n in r["nearest"]
            )
            + "</div>"
            for r in group
        )
        title = f"class {html.escape(str(name))}: {len(group)} prototypes"
        sections.append(
            f'<details class="class-group"><summary>{title}</summary><div class="protos">{cards}</div></details>'
        )
    return "<h2>Prototypes</h2>" + "".join(sections)
