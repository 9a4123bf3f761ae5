"""Explanations as people read them: a console view, and a self-contained HTML page (inline CSS,
no scripts, no network) that the explain command writes and the server's page is built from."""

from __future__ import annotations

import html

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text


def _fmt_prediction(e: dict) -> str:
    if e["probs"] is None:
        return f"{e['prediction']:.3f}"
    return f"{e['prediction']} ({e['probs'][e['prediction']]:.1%})"


RATIONALE_WORDS = {
    "attention": "its attention, its share of the pooled vector the prototypes are compared with",
    "greedy_gates": "how much deleting it would lower the predicted class (deletion gates)",
    "gates": "how much deleting it would lower the predicted class (deletion gates, one pass)",
}


def shading(e: dict) -> tuple[list[float], str]:
    """Each word's shade (>= 0: the evidence for the predicted class) and what it means: the
    explanation's ``importance`` by its ``rationale``, else (older records) its attention."""
    rationale = e.get("rationale", "attention")
    values = e.get("importance") if "importance" in e else e["attention"]
    meaning = RATIONALE_WORDS.get(rationale, f"its weight by {rationale}")
    return [max(0.0, float(v)) for v in values], meaning


def print_explanations(explanations: list[dict], console: Console | None = None) -> None:
    console = console or Console()
    for n, e in enumerate(explanations, start=1):
        shades, _ = shading(e)
        peak = max(shades, default=1.0) or 1.0
        words = Text()
        for segment in sorted(set(e["segments"])):
            if segment:
                words.append(" || ", style="dim")
            for word, weight, seg in zip(e["tokens"], shades, e["segments"]):
                if seg == segment:
                    level = int(round(255 * (1 - weight / peak)))
                    words.append(
                        word, style=f"black on rgb(255,{max(level, 120)},{level})" if weight > 0.05 * peak else ""
                    )
                    words.append(" ")
        console.rule(f"[bold]#{n}  prediction: {escape(_fmt_prediction(e))}")
        console.print(words)
        if e.get("truncated"):
            console.print(f"(input truncated: the model read its first {len(e['tokens'])} tokens)", style="yellow")
        if e["probs"]:
            console.print("  ".join(f"{k}: {v:.3f}" for k, v in e["probs"].items()), style="dim")
        table = Table(show_header=True, header_style="bold", expand=False)
        for column in ("prototype", "class", "similarity", "contribution", "nearest training examples"):
            table.add_column(column)
        for p in e["prototypes"]:
            nearest = "\n".join(escape(f"[{x['label']}] {_clip(x['text'], 90)}") for x in p["nearest_examples"]) or "-"
            table.add_row(
                str(p["prototype_id"]),
                escape(str(p["class"])),
                f"{p['similarity']:.3f}",
                f"{p['contribution']:+.3f}",
                nearest,
            )
        console.print(table)


def _clip(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;background:#f6f7f9;color:#1d2330}
h1{font-size:20px;margin:0 0 4px} .meta{color:#667;font-size:13px;margin-bottom:18px}
.input{background:#fff;border:1px solid #dde1e8;border-radius:10px;padding:16px;margin-bottom:18px;\
display:flex;gap:20px;flex-wrap:wrap}
.left{flex:1 1 420px;min-width:300px} .right{flex:1 1 420px;min-width:300px;display:flex;flex-direction:column;gap:10px}
.pred{font-size:16px;font-weight:600;margin-bottom:8px} .num{color:#667;font-weight:400;font-size:13px}
.text{line-height:2.0;font-size:15px} .tok{padding:2px 1px;border-radius:3px} .sep{color:#99a;margin:0 6px}
.bars{margin-top:10px;font-size:12px} .bar{display:flex;align-items:center;gap:6px;margin:2px 0}
.bar span.l{width:110px;text-align:right;color:#445} .bar div.b{height:9px;background:#4a7bd0;border-radius:2px}
.card{border:1px solid #dde1e8;border-radius:8px;padding:10px 12px;background:#fbfcfe}
.card .hd{display:flex;justify-content:space-between;font-size:13px;margin-bottom:6px}
.cls{display:inline-block;padding:1px 8px;border-radius:10px;background:#e3ebfa;color:#234;font-weight:600}
.ex{font-size:13px;margin:3px 0;color:#333} .lab{color:#557;font-weight:600;margin-right:6px}
.note{font-size:12px;color:#778;margin-top:6px}
.legend{font-size:12px;color:#556;margin-top:8px;display:flex;align-items:center;gap:6px;flex-wrap:wrap}
.scale{display:inline-block;width:90px;height:10px;border-radius:2px;border:1px solid #dde1e8;\
background:linear-gradient(to right,rgba(255,140,0,0),rgba(255,140,0,0.85))}
.folded{color:#889;font-size:12px;margin-left:6px;cursor:help}
"""


def _token_html(e: dict) -> str:
    shades, _ = shading(e)
    peak = max(shades, default=1.0) or 1.0
    importance = e.get("importance", e["attention"])
    parts, previous = [], None
    for word, shade, weight, attention, segment in zip(e["tokens"], shades, importance, e["attention"], e["segments"]):
        if previous is not None and segment != previous:
            parts.append('<span class="sep">‖</span>')
        previous = segment
        alpha = 0.85 * shade / peak
        parts.append(
            f'<span class="tok" style="background:rgba(255,140,0,{alpha:.3f})" '
            f'title="{html.escape(e.get("rationale", "attention"))} {weight:.4f}; attention {attention:.4f}">'
            f"{html.escape(word)}</span>"
        )
    return " ".join(parts)


def _legend_html(e: dict) -> str:
    """What the shading means, with its scale: from nothing to this input's highest value."""
    shades, meaning = shading(e)
    peak = max(shades, default=0.0)
    special = e.get("special_tokens_attention") if e.get("rationale", "attention") == "attention" else None
    rest = f"; the special tokens took {special:.0%}" if special else ""
    return (
        f'<div class="legend">shading: each word\'s {html.escape(meaning)} (hover a word for its value{rest}) '
        f'<span>0</span><span class="scale"></span><span>{peak:.3f}, this text\'s highest</span></div>'
    )


def example_html(x: dict) -> str:
    """One training example: its label, its text (and second text), and how many listed phrases of
    it were folded into it (:func:`fold_examples`; their texts on hover)."""
    pair = f' <span class="sep">‖</span> {html.escape(_clip(x["text_pair"], 160))}' if x.get("text_pair") else ""
    label = f'<span class="lab">[{html.escape(str(x["label"]))}]</span>'
    folded = x.get("folded") or []
    note = (
        f'<span class="folded" title="{html.escape(" | ".join(_clip(t, 120) for t in folded))}">'
        f"+{len(folded)} phrase{'s' if len(folded) > 1 else ''} of it</span>"
        if folded
        else ""
    )
    return f'<div class="ex">{label}<span class="txt">{html.escape(_clip(x["text"], 220))}</span>{pair}{note}</div>'


def _words(text: str | None) -> str:
    return " " + " ".join((text or "").lower().split()) + " "


def fold_examples(examples: list[dict]) -> list[dict]:
    """The examples with each one that is a phrase of another listed one (a prefix, a part, or the
    same text again; same label and same second text) folded into the longest that holds it.
    Each kept example is listed where its best-ranked member was, with ``folded``: the texts it
    took in (SST-2 holds the phrases of its sentences as examples of their own, so a prototype's
    nearest examples are often one sentence several times)."""
    kept: list[list] = []  # [rank of the best-ranked member, the longest example, the texts folded into it]
    for rank, x in sorted(enumerate(examples), key=lambda item: -len(_words(item[1]["text"]))):
        holder = next(
            (
                entry
                for entry in kept
                if entry[1]["label"] == x["label"]
                and _words(entry[1].get("text_pair")) == _words(x.get("text_pair"))
                and _words(x["text"]) in _words(entry[1]["text"])
            ),
            None,
        )
        if holder is None:
            kept.append([rank, x, []])
        else:
            holder[0], holder[2] = min(holder[0], rank), [*holder[2], x["text"]]
    return [{**x, "folded": folded} for _, x, folded in sorted(kept, key=lambda entry: entry[0])]


def examples_html(examples: list[dict], shown: int | None = None) -> str:
    """A prototype's nearest examples, folded (:func:`fold_examples`), the first ``shown`` of them."""
    folded = fold_examples(examples)[:shown]
    return "".join(example_html(x) for x in folded) or '<div class="ex">no projected examples</div>'


def _card(p: dict, shown: int | None = None) -> str:
    examples = examples_html(p["nearest_examples"], shown)
    return (
        f'<div class="card"><div class="hd"><span>prototype {p["prototype_id"]} <span class="cls">'
        f'{html.escape(str(p["class"]))}</span></span><span class="num">similarity {p["similarity"]:.3f} · '
        f"contribution {p['contribution']:+.3f}</span></div>{examples}</div>"
    )


def _bars_html(probs: dict | None) -> str:
    if not probs:
        return ""
    bars = "".join(
        f'<div class="bar"><span class="l">{html.escape(k)}</span>'
        f'<div class="b" style="width:{160 * v:.0f}px"></div><span>{v:.3f}</span></div>'
        for k, v in probs.items()
    )
    return f'<div class="bars">{bars}</div>'


def explanation_section(e: dict, n: int, examples_shown: int | None = None) -> str:
    """One explanation: the prediction, the words shaded by attention (with the shading's legend),
    the class probabilities and the prototype cards (``examples_shown``: examples per card, after
    folding; None: all)."""
    bars = _bars_html(e["probs"])
    note = '<div class="note">input truncated to the model\'s max_length</div>' if e.get("truncated") else ""
    cards = "".join(_card(p, examples_shown) for p in e["prototypes"])
    return (
        f'<section class="input" id="input-{n}"><div class="left"><div class="pred">#{n} prediction: '
        f'{html.escape(_fmt_prediction(e))}</div><div class="text">{_token_html(e)}</div>{_legend_html(e)}'
        f'{bars}{note}</div><div class="right">{cards}</div></section>'
    )


def prediction_section(row: dict, text: str, text_pair: str | None, n: int) -> str:
    """A prediction without an explanation (a model with a linear head has no prototypes): the
    prediction, the text as given and the class probabilities."""
    pair = f' <span class="sep">‖</span> {html.escape(text_pair)}' if text_pair else ""
    return (
        f'<section class="input prediction" id="input-{n}"><div class="left"><div class="pred">#{n} prediction: '
        f'{html.escape(_fmt_prediction(row))}</div><div class="text">{html.escape(text)}{pair}</div>'
        f'{_bars_html(row["probs"])}<div class="note">this model has a linear head: no prototypes explain its '
        "predictions (a model trained with head=prototype has them)</div></div></section>"
    )


def page(title: str, meta: dict, body: str, extra_css: str = "") -> str:
    """A self-contained HTML page: inline CSS, no scripts, no network."""
    meta_line = " · ".join(f"{html.escape(str(k))}: {html.escape(str(v))}" for k, v in meta.items())
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
        f"<style>{CSS}{extra_css}</style></head>"
        f'<body><h1>{html.escape(title)}</h1><div class="meta">{meta_line}</div>{body}</body></html>'
    )


def render_html(explanations: list[dict], title: str, meta: dict) -> str:
    """A single self-contained page of explanations: inline CSS, no scripts, no network."""
    return page(title, meta, "".join(explanation_section(e, n) for n, e in enumerate(explanations, start=1)))
