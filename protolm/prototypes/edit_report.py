"""What an edit changed: the model's figures on the selection split before and after, the selection
examples whose prediction flipped (each with the prototypes that pushed it, before and after), and
the prototypes the edit touched with their nearest training examples.

Everything is computed from the pooled embeddings of the selection split under the model before and
after the edit (:class:`~protolm.prototypes.features.Features`): no further pass of the encoder.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch.nn import functional as F

from protolm.modeling.metrics import task_metrics
from protolm.prototypes.features import Features
from protolm.prototypes.records import projection_of


@dataclass
class Scored:
    """A model's view of the selection split: similarities and logits per example, and what it needs
    to name its prototypes (classes, nearest example texts) as it was then."""

    similarities: torch.Tensor  # N x P
    logits: torch.Tensor  # N x C
    weights: torch.Tensor  # C x P, the last layer
    prototypes: list[dict]  # the projection record's prototypes then

    @classmethod
    @torch.no_grad()
    def of(cls, net, features: Features) -> Scored:
        head = net.head
        sims = features.similarities(head, net.device)
        logits = head.logits_from_similarities(sims.to(net.device)).float().cpu()
        record = projection_of(net)
        return cls(sims, logits, head.last_layer.weight.detach().float().cpu().clone(), record.to_dict()["prototypes"])

    def figures(self, labels: torch.Tensor, num_classes: int) -> dict[str, float]:
        metrics = task_metrics(num_classes, False, "")
        metrics.update(self.logits, labels)
        found = {k: round(float(v), 4) for k, v in metrics.compute().items() if k in ("acc", "ece")}
        return found | {"ce": round(float(F.cross_entropy(self.logits, labels)), 4)}

    def pushed(self, index: int, top_k: int) -> list[dict]:
        """The prototypes that pushed example ``index``'s prediction most, with their nearest example."""
        predicted = int(self.logits[index].argmax())
        contributions = self.similarities[index] * self.weights[predicted]
        order = torch.argsort(contributions, descending=True)[:top_k].tolist()
        return [
            {
                "prototype_id": p,
                "class": self.prototypes[p]["class_name"] or self.prototypes[p]["class"],
                "contribution": round(float(contributions[p]), 4),
                "nearest": self.prototypes[p]["nearest"][0]["text"] if self.prototypes[p]["nearest"] else "",
            }
            for p in order
        ]


@dataclass
class EditReport:
    """One edit round's report (``edit_report.json``)."""

    edit: dict  # what was asked and what it did (the edit log's entry)
    before: dict[str, float]  # acc, ce, ece on the selection split
    after: dict[str, float]
    examples: int  # selection examples scored
    flipped_count: int
    flipped: list[dict] = field(default_factory=list)  # up to max_flipped, each with before/after
    prototypes: list[dict] = field(default_factory=list)  # the prototypes the edit touched
    seconds: float = 0.0
    # forbid: accuracy on the selection split with a forbidden phrase inserted into every text,
    # before and after (a model that relies on the phrase loses it there)
    with_phrase: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def flipped_examples(
    before: Scored, after: Scored, split, limit: int, names: list[str] | None, top_k: int = 3
) -> tuple[int, list[dict]]:
    """(how many selection examples changed prediction, the first ``limit`` of them explained: the
    prototypes that pushed the prediction before and after, with their nearest example)."""
    changed = (before.logits.argmax(-1) != after.logits.argmax(-1)).nonzero().flatten().tolist()

    def name(c: int):
        return names[c] if names else c

    rows = []
    for i in changed[:limit]:
        rows.append(
            {
                "index": i,
                "text": split.texts[i],
                "label": name(int(split.labels[i])),
                "before": {"prediction": name(int(before.logits[i].argmax())), "pushed_by": before.pushed(i, top_k)},
                "after": {"prediction": name(int(after.logits[i].argmax())), "pushed_by": after.pushed(i, top_k)},
            }
        )
    return len(changed), rows


def touched_prototypes(net, before: list[dict], removed: list[int], changed: list[int]) -> list[dict]:
    """The removed prototypes as they were (ids before the edit) and the changed or added ones as they
    are now, each with its class and nearest examples."""
    now = projection_of(net).to_dict()["prototypes"]
    rows = [{"change": "removed"} | _card(before[i]) for i in removed]
    return rows + [{"change": "changed"} | _card(now[i]) for i in changed]


def _card(record: dict) -> dict:
    return {
        "prototype_id": record["prototype_id"],
        "class": record.get("class_name") or record["class"],
        "nearest": [n["text"] for n in record["nearest"]],
        **({"added_from": record["added_from"]} if record.get("added_from") else {}),
    }


def markdown(report: EditReport) -> str:
    """The report as a page a person reads (edit_report.md)."""
    lines = [f"# Edit: {report.edit.get('kind')}", "", f"{_details(report.edit)}", ""]
    lines += ["| selection split | acc | ce | ece |", "|---|---|---|---|"]
    for name in ("before", "after"):
        figures = getattr(report, name)
        lines.append(f"| {name} | {figures['acc']:.4f} | {figures['ce']:.4f} | {figures['ece']:.4f} |")
    if report.with_phrase:
        w = report.with_phrase
        lines.append(f"| with the phrase inserted into every text: acc | {w['before']:.4f} -> {w['after']:.4f} | | |")
    lines += ["", f"{report.flipped_count} of {report.examples} predictions flipped ({report.seconds:.1f} s).", ""]
    for row in report.flipped:
        was, now = row["before"], row["after"]
        lines.append(f"- {row['text']!r} (label {row['label']}): {was['prediction']} -> {now['prediction']}")
        for when, side in (("before", was), ("after", now)):
            pushed = "; ".join(f"#{p['prototype_id']} {p['nearest']!r}" for p in side["pushed_by"])
            lines.append(f"  - {when}: {pushed}")
    if report.prototypes:
        lines += ["", "## Prototypes touched", ""]
        for p in report.prototypes:
            lines.append(f"- {p['change']} #{p['prototype_id']} ({p['class']}): " + " | ".join(p["nearest"][:3]))
    return "\n".join(lines) + "\n"


def _details(edit: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in edit.items() if k not in ("kind", "at"))
