"""The server's page at ``/`` (server-rendered, no scripts): a form for a text, the explanation of
its prediction (a linear-head model: the prediction and its probabilities), and every prototype
per class with its nearest training examples, a phrase listed with the sentence it is part of."""

from __future__ import annotations

import html

from fastapi import FastAPI, Query
from fastapi.responses import HTMLResponse

from protolm.explanations.rationales import DEFAULT_RATIONALE, RATIONALES, check_rationale
from protolm.serving.batcher import Batcher, Busy
from protolm.serving.edit_page import EDIT_CSS, card_actions, debug_panel, move_here, report_section
from protolm.serving.render import example_html, explanation_section, fold_examples, page, prediction_section
from protolm.serving.server import Refusal, TextsRequest
from protolm.utils.errors import ProtoLMError

TOP_K, SHOWN = 3, 3  # prototypes per explanation, and distinct training examples per prototype
# Examples asked of the model per prototype: more than shown, so that SHOWN remain after the
# phrases of one sentence are folded into it (the projection records 5 or so).
NEAREST_ASKED = 20


def install_page(app: FastAPI, clf, batcher: Batcher, check, session=None) -> None:
    """The page; with an edit ``session`` (a prototype model served with edits on), its edit actions."""
    config = clf.model.config
    meta = {"task": config.task, "head": config.head_type, "labels": ", ".join(clf.labels or ["(regression)"])}
    token = session.token if session is not None else None

    @app.get("/", response_class=HTMLResponse)
    def home(
        text: str | None = Query(None),
        text_pair: str | None = Query(None),
        report: int | None = Query(None),
        edit_error: str | None = Query(None),
        rationale: str = Query(DEFAULT_RATIONALE),
    ):
        body = _edits_part(session, report, edit_error, clf.labels) if token else ""
        if text:
            try:
                check_rationale(rationale, clf.model)
                body += _answer(clf, batcher, check, (text, text_pair), rationale)
            except (ProtoLMError, Refusal, Busy) as err:
                body += f'<p class="error">{html.escape(str(err))}</p>'
        choices = [name for name, r in RATIONALES.items() if config.is_prototype or not r.prototype_only]
        content = _form(text, text_pair, clf.text_pair, (rationale, choices)) + body + _browser(clf, token)
        return page("protolm", meta, content, PAGE_CSS + EDIT_CSS)


def _edits_part(session, report: int | None, error: str | None, labels) -> str:
    """The edit panel, the error of the last edit, or the report it asked for."""
    part = debug_panel(labels, session.token)
    if error:
        part += f'<p class="error">edit refused: {html.escape(error)}</p>'
    if report is not None and 1 <= report <= len(session.reports):
        part += report_section(session.reports[report - 1])
    return part


def _answer(clf, batcher: Batcher, check, inputs: tuple[str, str | None], rationale: str) -> str:
    """The typed text's explanation (a prototype model) or prediction (a linear one), through the
    batcher as the endpoints' requests are."""
    text, text_pair = inputs
    pairs = [text_pair or ""] if clf.text_pair else None
    check(TextsRequest(texts=[text], text_pairs=pairs))  # the endpoints' limits
    if clf.model.config.head_type == "prototype":
        (found,) = batcher.submit(("explain", TOP_K, NEAREST_ASKED, rationale), [text], pairs).result()
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


def _form(text: str | None, text_pair: str | None, pair: bool, rationales: tuple[str, list[str]]) -> str:
    second = (
        f'<textarea name="text_pair" rows="2" placeholder="second text">{html.escape(text_pair or "")}</textarea>'
        if pair
        else ""
    )
    chosen, names = rationales
    options = "".join(f"<option{' selected' if n == chosen else ''}>{html.escape(n)}</option>" for n in names)
    pick = f' <label class="num">words weighed by <select name="rationale">{options}</select></label>'
    return (
        f'<form method="get" action="/"><textarea name="text" rows="3" placeholder="a text to classify">'
        f'{html.escape(text or "")}</textarea>{second}<button type="submit">explain</button>{pick}</form>'
    )


def _browser(clf, token: str | None = None) -> str:
    """Every prototype, grouped by class, with its nearest training examples (folded); with an
    edit ``token``, each card's edit actions."""
    records = clf.prototypes()
    if not records:
        return ""
    by_class: dict = {}
    for record in records:
        by_class.setdefault(record.get("class_name") or record["class"], []).append(record)
    sections = []
    for name, group in by_class.items():
        cards = "".join(_prototype_card(r, token) for r in group)
        title = f"class {html.escape(str(name))}: {len(group)} prototypes"
        sections.append(
            f'<details class="class-group"><summary>{title}</summary><div class="protos">{cards}</div></details>'
        )
    return "<h2>Prototypes</h2>" + "".join(sections)


def _prototype_card(record: dict, token: str | None) -> str:
    """A prototype's card: its nearest examples (folded); with an edit ``token``, a "move here"
    beside each and the card's remove / allow."""
    nearest = [
        {**n, "label": n["label_name"] if n["label_name"] is not None else n["label"]} for n in record["nearest"]
    ]
    examples = "".join(example_html(x) + (move_here(record, x, token) if token else "") for x in fold_examples(nearest))
    actions = card_actions(record, token) if token else ""
    return (
        f'<div class="card proto"><div class="hd"><span>prototype {record["prototype_id"]}</span></div>'
        f"{examples or '<div class=ex>no projected examples</div>'}{actions}</div>"
    )
