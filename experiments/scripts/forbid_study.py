"""The forbid edit's fine-tune, setting by setting, on a model trained with a planted shortcut: how
much it relies on the phrase afterwards on the selection split (accuracy with the phrase inserted
into every text, what the edit report measures), beside its plain selection accuracy.

    python experiments/scripts/forbid_study.py RUN [RUN ...] --phrase zxq --out <folder>

Each RUN is a run directory trained with ``data.shortcut_token``; every setting starts from the
run's shipped model. Writes ``<run name>.json`` and ``table.md`` (means over the runs).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from protolm.config.tools import ForbidConfig
from protolm.serving.classifier import load
from protolm.serving.editing import Editor

SETTINGS = {
    "head, 1 epoch (default)": {},
    "head, 3 epochs": {"epochs": 3},
    "head, no forgetting term": {"forgetting": 0.0},
    "encoder, 1 epoch": {"tune_encoder": True},
    "encoder, 2 epochs": {"tune_encoder": True, "epochs": 2},
}


def study(run: Path, phrase: str) -> dict:
    found = {}
    for name, changes in SETTINGS.items():
        editor = Editor(load(run))
        report = editor.forbid([phrase], settings=ForbidConfig(**changes))
        found[name] = {"selection": report.after, "selection_before": report.before,
                       "with_phrase": report.with_phrase, "seconds": report.seconds,
                       "removed": len(report.edit["removed"])}  # fmt: skip
        print(run.name, name, found[name], flush=True)
    return {"run": run.name, "phrase": phrase, "settings": found}


def table(records: list[dict]) -> str:
    header = "| setting | selection acc | with the phrase inserted: before -> after | seconds |"
    lines = [f"runs: {', '.join(r['run'] for r in records)} (means)", "", header, "|---|---|---|---|"]
    for name in SETTINGS:
        rows = [r["settings"][name] for r in records]
        acc = statistics.fmean(r["selection"]["acc"] for r in rows)
        before = statistics.fmean(r["with_phrase"]["before"] for r in rows)
        after = statistics.fmean(r["with_phrase"]["after"] for r in rows)
        seconds = statistics.fmean(r["seconds"] for r in rows)
        lines.append(f"| {name} | {acc:.4f} | {before:.4f} -> {after:.4f} | {seconds:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--phrase", default="zxq")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    records = []
    for run in args.runs:
        records.append(study(run, args.phrase))
        (args.out / f"{run.name}.json").write_text(json.dumps(records[-1], indent=1) + "\n")
    (args.out / "table.md").write_text(table(records))
    print(table(records))


if __name__ == "__main__":
    main()
