"""The page's edit actions and reports (server-rendered forms, no scripts): on each prototype card
remove / allow and "move here" beside each nearest example (replace); a panel to forbid a phrase
or add a prototype from a text; and the last edit's report (figures before and after on the
selection split, the predictions that flipped, the prototypes it touched)."""

from __future__ import annotations

import html


def _form(token: str, kind: str, button: str, hidden: dict | None = None, inner: str = "", css: str = "act") -> str:
    fields = "".join(
        f'<input type="hidden" name="{k}" value="{html.escape(str(v))}">' for k, v in (hidden or {}).items()
    )
    return (
        f'<form class="{css}" method="post" action="/edit"><input type="hidden" name="token" value="{token}">'
        f'<input type="hidden" name="kind" value="{kind}">{fields}{inner}<button type="submit">{button}</button></form>'
    )


def card_actions(record: dict, token: str) -> str:
    """Remove and allow for one prototype (an allowed one says so instead)."""
    pid = record["prototype_id"]
    if record.get("allowed"):
        return '<div class="acts"><span class="num">allowed: edits keep it</span></div>'
    remove = _form(token, "remove", "remove", {"prototypes": pid})
    allow = _form(token, "allow", "allow", {"prototypes": pid})
    return f'<div class="acts">{remove}{allow}</div>'


def move_here(record: dict, neighbour: dict, token: str) -> str:
    """A button that replaces the prototype by this nearest example."""
    if record.get("allowed") or neighbour.get("index") is None:
        return ""
    hidden = {"prototype": record["prototype_id"], "example": neighbour["index"]}
    return _form(token, "replace", "move here", hidden, css="act small")


def debug_panel(labels: list[str] | None, token: str) -> str:
    """Forbid a phrase (the encoder too, when ticked) and add a prototype from a text."""
    forbid = _form(
        token, "forbid", "forbid",
        inner='<input name="phrases" placeholder="words or phrases, comma-separated"> '
              '<label><input type="checkbox" name="tune_encoder" value="true"> also the encoder</label> ',
    )  # fmt: skip
    options = "".join(f'<option value="{html.escape(c)}">{html.escape(c)}</option>' for c in labels or [])
    text = '<input name="texts" placeholder="a text that stands for the class"> '
    add = _form(token, "add", "add prototype", inner=f'{text}<select name="class">{options}</select> ')
    return (
        '<details class="debug" open><summary>Debug the model through its prototypes</summary>'
        f'<div class="dbg">{forbid}{add}</div><div class="note">Each edit retrains the last layer, writes a new '
        "checkpoint beside the served one and reports what changed; the served model becomes the edited one.</div>"
        "</details>"
    )


def report_section(report: dict) -> str:
    """The last edit's report as the page shows it."""
    edit = report["edit"]
    if "before" not in report:
        return f'<section class="report" id="edit-report"><h2>Edit: {html.escape(edit["kind"])}</h2></section>'
    rows = "".join(
        f"<tr><td>{name}</td>" + "".join(f"<td>{report[name][k]:.4f}</td>" for k in ("acc", "ce", "ece")) + "</tr>"
        for name in ("before", "after")
    )
    flipped = "".join(
        f"<li>{html.escape(f['text'])} <span class='num'>(label {html.escape(str(f['label']))}): "
        f"{html.escape(str(f['before']['prediction']))} → {html.escape(str(f['after']['prediction']))}</span></li>"
        for f in report["flipped"]
    )
    touched = "".join(
        f"<li>{html.escape(p['change'])} #{p['prototype_id']} ({html.escape(str(p['class']))}): "
        f"{html.escape(' | '.join(p['nearest'][:2]))}</li>"
        for p in report["prototypes"]
    )
    return (
        f'<section class="report" id="edit-report"><h2>Edit: {html.escape(edit["kind"])}</h2>'
        f'<table class="fig"><tr><th>selection split</th><th>acc</th><th>ce</th><th>ece</th></tr>{rows}</table>'
        f"<p>{report['flipped_count']} of {report['examples']} predictions flipped ({report['seconds']:.1f} s); "
        f"written to {html.escape(report.get('written_to', ''))}</p><ul>{flipped}</ul>"
        f"<h3>Prototypes touched</h3><ul>{touched or '<li>none</li>'}</ul></section>"
    )


EDIT_CSS = """
.acts{display:flex;gap:6px;margin-top:6px} form.act{display:inline;background:none;border:0;padding:0;margin:0}
form.act button{margin:0;padding:2px 10px;font-size:12px} form.small button{padding:0 6px;font-size:11px;\
background:#fff;color:#4a7bd0}
.dbg form{display:flex;gap:8px;align-items:center;margin:8px 0;background:none;border:0;padding:0}
.dbg input[name=phrases],.dbg input[name=texts]{flex:1;padding:6px;border:1px solid #ccd;border-radius:6px}
.dbg button{margin:0}
.report{background:#fff;border:1px solid #dde1e8;border-radius:10px;padding:12px 16px;margin-bottom:18px}
table.fig td,table.fig th{padding:2px 10px;text-align:right}
"""
