"""protolm explain: explanations of a projected model's predictions, as JSON lines, HTML and on the console."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from rich.console import Console

from protolm.cli.tool import datamodule_for, open_model, output_dir
from protolm.config.tools import ExplainConfig
from protolm.modeling.saved import require_projection
from protolm.serving.render import print_explanations, render_html
from protolm.utils.errors import ConfigError, DataError
from protolm.utils.progress import track

log = logging.getLogger(__name__)
EXPLAIN_BATCH = 16  # inputs per forward pass (Classifier.explain's default), counted by the progress


def _lines_of(path: Path, max_inputs: int, pair_task: bool) -> tuple[list[str], list[str] | None]:
    """Inputs from a file: one per line (pair tasks: text<TAB>text_pair); blank lines and lines past
    ``max_inputs`` are left out, and the log says how many."""
    if not path.is_file():
        raise DataError(f"input_file={path}: no such file")
    try:
        every_line = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not valid UTF-8 (byte {err.start})") from None
    lines = [line for line in every_line if line.strip()]
    if len(lines) < len(every_line):
        log.warning("input_file: skipped %d blank line(s) of %s", len(every_line) - len(lines), path)
    if not lines:
        raise DataError(f"input_file={path}: no text in it (every line is blank)")
    if len(lines) > max_inputs:
        log.warning(
            "input_file: explaining the first %d of %d inputs (max_inputs=%d; raise it for more)",
            max_inputs,
            len(lines),
            max_inputs,
        )
    lines = lines[:max_inputs]
    if not pair_task:
        return lines, None
    parts = [line.split("\t", 1) for line in lines]
    for number, p in enumerate(parts, start=1):
        if len(p) != 2:
            raise DataError(f"{path}: line {number}: pair task needs 'text<TAB>text_pair'")
    return [p[0] for p in parts], [p[1] for p in parts]


def _inputs(cfg: ExplainConfig, clf) -> tuple[list[str], list[str] | None]:
    """The texts to explain (and their pairs): text=, input_file= or split=, exactly one."""
    pair_task = clf.text_pair
    given = [k for k in ("text", "input_file", "split") if getattr(cfg, k) is not None]
    if len(given) != 1:
        raise ConfigError('give exactly one of text="...", input_file=<path> or split=<train|val|test|split name>')
    if cfg.text is not None:
        if pair_task and cfg.text_pair is None:
            raise ConfigError(f'task {clf.model.config.task} classifies text pairs: give text_pair="..." too')
        return [str(cfg.text)], ([str(cfg.text_pair)] if pair_task else None)
    if cfg.input_file is not None:
        return _lines_of(Path(cfg.input_file).expanduser(), cfg.max_inputs, pair_task)
    split = datamodule_for(clf, cfg).role_split(cfg.split)
    n = min(cfg.max_inputs, len(split))
    if n < len(split):
        log.info("split=%s: explaining the first %d of its %d examples (max_inputs=%d)", cfg.split, n, len(split), n)
    return _with_text(cfg.split, list(split.texts[:n]), list(split.pairs[:n]) if split.pairs is not None else None)


def _with_text(split: str, texts: list[str], pairs: list[str] | None) -> tuple[list[str], list[str] | None]:
    """The examples that have text (a model's answer to no words means nothing); the log says how
    many were left out, as for blank lines of an input_file."""
    keep = [i for i, t in enumerate(texts) if t.strip() and (pairs is None or pairs[i].strip())]
    if len(keep) < len(texts):
        left_out = len(texts) - len(keep)
        log.warning("split=%s: skipped %d example(s) with no text (empty or only whitespace)", split, left_out)
    return [texts[i] for i in keep], ([pairs[i] for i in keep] if pairs is not None else None)


def _refuse_empty_text(cfg: ExplainConfig) -> None:
    """Before the model loads: ``text=""`` (or only spaces) has no words to explain."""
    for key in ("text", "text_pair"):
        value = getattr(cfg, key)
        if value is not None and not str(value).strip():
            raise ConfigError(
                f'{key}="{value}" is empty or only whitespace: give the {key.replace("_", " ")} to explain'
            )


def explain_command(cfg: ExplainConfig) -> dict:
    _refuse_empty_text(cfg)
    clf = open_model(cfg)
    require_projection(clf.model, f"model={cfg.model}")
    texts, pairs = _inputs(cfg, clf)
    if cfg.max_length:
        clf.max_length = cfg.max_length
    explanations = []
    for start in track(range(0, len(texts), EXPLAIN_BATCH), "explaining", unit="batches"):
        batch_pairs = pairs[start : start + EXPLAIN_BATCH] if pairs is not None else None
        explanations += clf.explain(
            texts[start : start + EXPLAIN_BATCH],
            batch_pairs,
            top_k=cfg.top_k,
            nearest=cfg.nearest,
            rationale=cfg.rationale,
        )
    out = output_dir(cfg, ("explanations.jsonl", "explanations.html"))
    with open(out / "explanations.jsonl", "w") as f:
        for e in explanations:
            f.write(json.dumps(e) + "\n")
    config = clf.model.config
    meta = {
        "model": cfg.model,
        "task": config.task,
        "prototypes": clf.model.head.num_prototypes,
        "similarity": config.head.get("similarity"),
        "projection": clf.model.prototypes.get("mode"),
    }
    (out / "explanations.html").write_text(render_html(explanations, "protolm explanations", meta))
    console = Console()
    print_explanations(explanations, console)
    console.print(f"wrote {out / 'explanations.jsonl'} and {out / 'explanations.html'}")
    return {"output_dir": str(out), "explanations": explanations}
