"""explain.py: explanations of a projected checkpoint's predictions, as JSON lines, HTML and on the console."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from omegaconf import DictConfig
from rich.console import Console

from protolm.cli.tool import datamodule_for, open_checkpoint, output_dir
from protolm.errors import ConfigError, DataError
from protolm.explain import explain, require_projection
from protolm.render import print_explanations, render_html

log = logging.getLogger(__name__)


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


def _inputs(cfg: DictConfig, loaded) -> tuple[list[str], list[str] | None]:
    """The texts to explain (and their pairs): text=, input_file= or split=, exactly one."""
    pair_task = bool(loaded.model.task_info.pair)
    given = [k for k in ("text", "input_file", "split") if cfg.get(k) is not None]
    if len(given) != 1:
        raise ConfigError('give exactly one of text="...", input_file=<path> or split=<train|val|test|split name>')
    if cfg.text is not None:
        if pair_task and cfg.text_pair is None:
            raise ConfigError(f'task {loaded.model.task_info.name} classifies text pairs: give text_pair="..." too')
        return [str(cfg.text)], ([str(cfg.text_pair)] if pair_task else None)
    if cfg.input_file is not None:
        return _lines_of(Path(cfg.input_file).expanduser(), cfg.max_inputs, pair_task)
    split = datamodule_for(loaded, cfg).role_split(cfg.split)
    n = min(cfg.max_inputs, len(split))
    if n < len(split):
        log.info("split=%s: explaining the first %d of its %d examples (max_inputs=%d)", cfg.split, n, len(split), n)
    return split.texts[:n], (split.pairs[:n] if split.pairs is not None else None)


def explain_command(cfg: DictConfig) -> dict:
    loaded = open_checkpoint(cfg)
    model = loaded.model
    require_projection(model, cfg.ckpt_path)
    texts, pairs = _inputs(cfg, loaded)
    max_length = cfg.max_length or loaded.config["data"]["max_length"]
    explanations = explain(
        model, loaded.tokenizer, texts, pairs, top_k=cfg.top_k, nearest=cfg.nearest, max_length=max_length
    )
    out = output_dir(cfg, ("explanations.jsonl", "explanations.html"))
    with open(out / "explanations.jsonl", "w") as f:
        for e in explanations:
            f.write(json.dumps(e) + "\n")
    meta = {
        "checkpoint": cfg.ckpt_path,
        "task": loaded.config["task"]["name"],
        "backbone": loaded.config["backbone"]["name"],
        "prototypes": model.head.num_prototypes,
        "similarity": loaded.config["head"]["similarity"],
        "projection": model.projection.mode,
    }
    (out / "explanations.html").write_text(render_html(explanations, "protolm explanations", meta))
    console = Console()
    print_explanations(explanations, console)
    console.print(f"wrote {out / 'explanations.jsonl'} and {out / 'explanations.html'}")
    return {"output_dir": str(out), "explanations": explanations}
