"""protolm health: a model's prototype health (health.json, prototypes_pca.png), pruned when asked (pruned.ckpt)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from protolm.cli.tool import datamodule_for, open_prototype_model, output_dir, stage_context
from protolm.config.tools import HealthToolConfig
from protolm.prototypes.stages import health_and_pruning


def health_command(cfg: HealthToolConfig) -> dict:
    clf = open_prototype_model(cfg, "prototype health")
    datamodule = datamodule_for(clf, cfg)
    out = output_dir(cfg, ("health.json", "prototypes_pca.png", "pruned.ckpt"))
    result = health_and_pruning(stage_context(clf, datamodule, out), cfg.health, cfg.prune, out / "pruned.ckpt")
    console = Console()
    print_health(result.report, console, clf.labels)
    written = [out / "health.json"] + ([out / "prototypes_pca.png"] if cfg.health.plot else [])
    if result.pruned is not None:
        written.append(out / "pruned.ckpt")
        console.print(f"pruned {len(result.pruned.removed)} prototypes: {result.pruned.remaining} remain")
    console.print("wrote " + ", ".join(map(str, written)))
    return {"output_dir": str(out), "report": result.to_dict()}


def print_health(report, console: Console | None = None, labels: list[str] | None = None) -> None:
    """A :class:`protolm.prototypes.health.HealthReport` as a table of prototypes and its summary; classes by
    their label names (as explanations show them) when ``labels`` are given."""
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
