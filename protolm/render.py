"""What people read: explanations (console view, self-contained HTML page), the prototype health
table, the faithfulness summary in Markdown, and the projected prototypes as a logger's table."""

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


def print_explanations(explanations: list[dict], console: Console | None = None) -> None:
    console = console or Console()
    for n, e in enumerate(explanations, start=1):
        peak = max(e["attention"], default=1.0) or 1.0
        words = Text()
        for segment in sorted(set(e["segments"])):
            if segment:
                words.append(" || ", style="dim")
            for word, weight, seg in zip(e["tokens"], e["attention"], e["segments"]):
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
"""


def _token_html(e: dict) -> str:
    peak = max(e["attention"], default=1.0) or 1.0
    parts, previous = [], None
    for word, weight, segment in zip(e["tokens"], e["attention"], e["segments"]):
        if previous is not None and segment != previous:
            parts.append('<span class="sep">‖</span>')
        previous = segment
        alpha = 0.85 * weight / peak
        parts.append(
            f'<span class="tok" style="background:rgba(255,140,0,{alpha:.3f})" '
            f'title="attention {weight:.4f}">{html.escape(word)}</span>'
        )
    return " ".join(parts)


def example_html(x: dict) -> str:
    pair = f' <span class="sep">‖</span> {html.escape(_clip(x["text_pair"], 160))}' if x.get("text_pair") else ""
    label = f'<span class="lab">[{html.escape(str(x["label"]))}]</span>'
    return f'<div class="ex">{label}{html.escape(_clip(x["text"], 220))}{pair}</div>'


def _card(p: dict) -> str:
    examples = "".join(example_html(x) for x in p["nearest_examples"]) or '<div class="ex">no projected examples</div>'
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


def explanation_section(e: dict, n: int) -> str:
    """One explanation: the prediction, the words shaded by attention, the class probabilities and
    the prototype cards."""
    bars = _bars_html(e["probs"])
    note = '<div class="note">input truncated to the model\'s max_length</div>' if e.get("truncated") else ""
    return (
        f'<section class="input" id="input-{n}"><div class="left"><div class="pred">#{n} prediction: '
        f'{html.escape(_fmt_prediction(e))}</div><div class="text">{_token_html(e)}</div>{bars}{note}</div>'
        f'<div class="right">{"".join(_card(p) for p in e["prototypes"])}</div></section>'
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


# -------------------------------------------------------------------------------- health
def print_health(report, console: Console | None = None, labels: list[str] | None = None) -> None:
    """A :class:`protolm.health.HealthReport` as a table of prototypes and its summary; classes by
    their label names (as explain.py shows them) when ``labels`` are given."""
    console = console or Console()
    anchor = ", its replace anchor excluded" if report.purity_excludes_anchor else ""
    caption = f"purity: share of the {report.purity_k} nearest training examples{anchor} in the prototype's class"
    table = Table(title="prototype health", caption=caption, header_style="bold")
    for column in ("id", "class", "nearest", "top contributor", "purity", "dead", "duplicates"):
        table.add_column(column)
    for r in report.prototypes:
        duplicates = sorted(set(r.shares_nearest_example_with) | set(r.near_identical_to))
        table.add_row(
            str(r.prototype_id),
            escape(labels[r.class_index]) if labels else str(r.class_index),
            str(r.nearest_count),
            str(r.top_contributor_count),
            "-" if r.purity is None else f"{r.purity:.2f}",
            "yes" if r.dead else "",
            ",".join(map(str, duplicates)),
        )
    console.print(table)
    console.print(report.summary.to_dict())


# -------------------------------------------------------------------------- faithfulness
def faithfulness_table(result: dict) -> str:
    """faithfulness.md: the prototype-level and token-level scores beside their random baselines."""
    settings = result["settings"]
    lines = [
        f"# Faithfulness: {result['task']} / {result['split']} ({result['examples']} examples, target: "
        f"{settings['target']} class)",
        "",
        *_prototype_lines(result["prototype_level"]),
    ]
    return "\n".join(lines + _token_lines(result["token_level"]["by_rationale"], settings))


def _score(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


# The scores of a by_k entry: the top k, then k random prototypes of any class and of the target class.
PREFIXES = ("", "random_", "random_same_class_")


def _prototype_lines(level: dict) -> list[str]:
    """The prototype-level table; k = P (every prototype) is left out, it measures no explanation."""
    lines = [
        "## Prototype level (drop in the target class probability)",
        "",
        "| k | comprehensiveness | random k | random k, same class | sufficiency | random k | random k, same class |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, v in level["by_k"].items():
        if "prototypes" in level and int(k) >= level["prototypes"]:
            continue
        scores = [v.get(f"{prefix}{kind}") for kind in ("comprehensiveness", "sufficiency") for prefix in PREFIXES]
        lines.append(f"| {k} | " + " | ".join(map(_score, scores)) + " |")
    block = level.get("smallest_class_block")
    note = f"; n/a for k above {block}, the smallest class block" if block is not None else ""
    return lines + [
        "",
        "Random k: k prototypes of any class. Random k, same class: k prototypes of the target class; "
        "own-class weights are positive and the others negative, so the top k are mostly the target "
        f"class's own prototypes and this is the baseline that tests their ranking{note}.",
    ]


def _token_lines(by_rationale: dict, settings: dict) -> list[str]:
    bins = settings["token_bins"]
    comp_header = " | ".join(f"comp {q:.0%}" for q in bins)
    suff_header = " | ".join(f"suff {q:.0%}" for q in bins)
    lines = [
        "",
        f"## Token level (ERASER, tokens {settings['token_removal']}d)",
        "",
        f"| rationale | {comp_header} | AOPC comp | {suff_header} | AOPC suff |",
        "|---|" + "---|" * (2 * len(bins) + 2),
    ]
    for name, by_bin in by_rationale.items():
        comp = " | ".join(f"{by_bin[str(q)]['comprehensiveness']:.4f}" for q in bins)
        suff = " | ".join(f"{by_bin[str(q)]['sufficiency']:.4f}" for q in bins)
        aopc = by_bin["aopc"]
        lines.append(f"| {name} | {comp} | {aopc['comprehensiveness']:.4f} | {suff} | {aopc['sufficiency']:.4f} |")
    return lines + [
        "",
        "Bin q: the top ceil(q·n) of an example's n content tokens. AOPC: per example, the mean over its "
        "distinct bin sizes (bins that round to the same size count once), then over examples.",
    ]


# ---------------------------------------------------------------------------- projection
PROTOTYPE_TABLE_COLUMNS = ["prototype_id", "class", "nearest training example", "similarity"]


def prototype_table_rows(projection) -> list[list]:
    """One row per projected prototype (:data:`PROTOTYPE_TABLE_COLUMNS`), e.g. for a W&B table."""
    rows = []
    for record in projection.prototypes:
        nearest = record.nearest[0] if record.nearest else None
        rows.append(
            [
                record.prototype_id,
                record.class_name or record.class_index,
                nearest.text if nearest else "",
                nearest.similarity if nearest else None,
            ]
        )
    return rows
