"""protolm health: a model's prototype health (health.json, prototypes_pca.png), pruned when asked (pruned.ckpt)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from protolm.cli.tool import datamodule_for, open_prototype_model, output_dir, stage_context
from protolm.config.tools import HealthToolConfig
from protolm.prototypes.edits import carriers_of_phrases, phrase_pattern
from protolm.prototypes.records import projection_of
from protolm.prototypes.stages import health_and_pruning
from protolm.utils.files import write_json


def health_command(cfg: HealthToolConfig) -> dict:
    clf = open_prototype_model(cfg, "prototype health")
    datamodule = datamodule_for(clf, cfg)
    out = output_dir(cfg, ("health.json", "prototypes_pca.png", "pruned.ckpt", "phrases.json"))
    result = health_and_pruning(stage_context(clf, datamodule, out), cfg.health, cfg.prune, out / "pruned.ckpt")
    console = Console()
    print_health(result.report, console, clf.labels)
    written = [out / "health.json"] + ([out / "prototypes_pca.png"] if cfg.health.plot else [])
    if cfg.phrases:
        found = phrase_carriers(clf.model, datamodule.role_split("train"), cfg.phrases)
        print_phrase_carriers(found, console, clf.labels)
        write_json(out / "phrases.json", found)
        written.append(out / "phrases.json")
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


def phrase_carriers(net, train, phrases: list[str]) -> dict:
    """For each phrase, the prototypes whose nearest examples contain it (share of them) beside the
    share of their class's training examples that do: a prototype far above its class's rate stands
    for the phrase."""
    projection, labels = projection_of(net), train.labels
    texts = list(train.texts)
    found = {}
    for phrase in phrases:
        pattern = phrase_pattern(phrase)
        has = [bool(pattern.search(t)) for t in texts]
        rate = {}
        for c in range(net.head.num_classes):
            members = [h for h, label in zip(has, labels) if label == c]
            rate[c] = round(sum(members) / max(1, len(members)), 3)
        carriers = carriers_of_phrases(projection, [phrase], min_share=1e-9)
        classes = {p.prototype_id: p.class_index for p in projection.prototypes}
        found[phrase] = {
            "class_rate": rate,
            "prototypes": [
                {"prototype_id": i, "class": classes[i], "share": s}
                for i, s in sorted(carriers.items(), key=lambda kv: -kv[1])
            ],  # fmt: skip
        }
    return found


def print_phrase_carriers(found: dict, console: Console, labels: list[str] | None) -> None:
    for phrase, entry in found.items():
        table = Table(title=f"prototypes whose nearest examples contain {phrase!r}", header_style="bold")
        for column in ("id", "class", "share of its nearest examples", "share of its class's training examples"):
            table.add_column(column)
        for p in entry["prototypes"]:
            name = labels[p["class"]] if labels else str(p["class"])
            table.add_row(
                str(p["prototype_id"]), escape(name), f"{p['share']:.2f}", f"{entry['class_rate'][p['class']]:.2f}"
            )
        console.print(table if entry["prototypes"] else f"no prototype's nearest examples contain {phrase!r}")
