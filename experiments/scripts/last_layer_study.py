"""The last-layer phase after projection, variant by variant, on trained models: calibration and
how far a few prototypes carry each decision, on the selection split (val) and the reported (test).

    python experiments/scripts/last_layer_study.py RUN [RUN ...] --out experiments/results/last_layer

Each RUN is a run directory trained with ``callbacks.checkpoint.keep_intermediate=true`` (its
selected checkpoint, before projection, is kept). The encoder passes over the train, val and test
splits once per run (``prototypes.features``); every variant then projects the same prototypes
(replace) and retrains the last layer with the product's own code (``prototypes.last_layer``) from
the same starting head. Writes ``<run name>.json`` per run and ``table.md`` (means over runs of
the same task). Given ``.json`` files it studies nothing and writes only ``table.md`` from them:

    cd experiments/results/last_layer && python ../../scripts/last_layer_study.py *.json --out .
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
from collections import defaultdict
from pathlib import Path

import torch

from protolm.config import ProjectConfig
from protolm.explanations.prototype_faithfulness import prototype_level_of, top_share
from protolm.modeling.metrics import task_metrics
from protolm.prototypes.features import encode_split
from protolm.prototypes.last_layer import phase_from_run, train_last_layer, unconnected
from protolm.prototypes.projection import project
from protolm.prototypes.pruning import remove_prototypes
from protolm.serving.classifier import load

VARIANTS = {
    "unprojected": None,
    "replaced, last layer as trained": {"last_layer_epochs": 0},
    "labels, 1 epoch (the default until 2026-12-07)": {"last_layer_objective": "labels", "last_layer_epochs": 1},
    "labels, 3 epochs": {"last_layer_objective": "labels", "last_layer_epochs": 3},
    "distill, 1 epoch": {"last_layer_objective": "distill", "last_layer_epochs": 1},
    "distill, 3 epochs": {"last_layer_objective": "distill", "last_layer_epochs": 3},
    "distill, sparse 0.01 (10 + 3 epochs)": {"last_layer_sparsity": 0.01, "last_layer_epochs": 10},
    "distill, sparse 0.03 (10 + 3 epochs)": {"last_layer_sparsity": 0.03, "last_layer_epochs": 10},
}


def figures(net, features, prefix: str) -> dict:
    """Accuracy, CE, ECE, the top-3 share and prototype faithfulness at k = 1, 3, 5 from cached features."""
    head, device = net.head, net.device
    metrics = task_metrics(net.config.num_labels, False, prefix)
    sims = features.similarities(head, device)
    with torch.no_grad():
        logits = head.logits_from_similarities(sims.to(device)).float().cpu()
    metrics.update(logits, features.labels)
    out = {k: float(v) for k, v in metrics.compute().items()}
    out[f"{prefix}ce"] = float(torch.nn.functional.cross_entropy(logits, features.labels))
    out[f"{prefix}top3_share"] = top_share(head, sims, logits, 3)
    chunks = [(sims[s : s + 256], logits[s : s + 256], features.labels[s : s + 256]) for s in range(0, len(sims), 256)]
    level = prototype_level_of(head, chunks, [1, 3, 5], random_draws=10, seed=0)
    for k, scores in level["by_k"].items():
        for name, value in scores.items():
            out[f"{prefix}proto{k}_{name}"] = value
    out[f"{prefix}prototypes"] = head.num_prototypes
    return out


def study(run: Path) -> dict:
    results = json.loads((run / "results.json").read_text())
    clf = load(results["selected_checkpoint"])
    net, datamodule = clf.model, clf.datamodule()
    encoded = {role: encode_split(net, datamodule, role) for role in ("train", "val", "test")}
    split, start = datamodule.role_split("train"), copy.deepcopy(net.head)
    found = {}
    for name, changes in VARIANTS.items():
        net.head, net.prototypes = copy.deepcopy(start), None
        if changes is not None:
            project_cfg = ProjectConfig(**changes)
            phase = phase_from_run(clf.training["config"], project_cfg)
            teacher = encoded["train"].logits(net.head, net.device)
            project(net, encoded["train"], split, "replace", 5)
            if phase.epochs:
                train_last_layer(net.head, encoded["train"], split.lengths, phase, teacher)
                remove_prototypes(net, ~unconnected(net.head))
        found[name] = figures(net, encoded["val"], "val/") | figures(net, encoded["test"], "test/")
        print(run.name, name, {k: round(v, 4) for k, v in found[name].items() if k.endswith(("acc", "/ce", "ece"))})
    return {"run": run.name, "task": results["task"], "seed": results["seed"], "variants": found}


COLUMNS = ("acc", "ce", "ece", "top3_share", "proto3_comprehensiveness", "proto3_random_same_class_comprehensiveness")


def mean_of(values) -> float:
    """The mean over the runs that have a value (a metric is None where a split has one class)."""
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else float("nan")


def table(records: list[dict]) -> str:
    by_task = defaultdict(list)
    for record in records:
        by_task[record["task"]].append(record)
    lines = []
    for task, runs in sorted(by_task.items()):
        seeds = ", ".join(str(r["seed"]) for r in runs)
        lines += [f"## {task} (seeds {seeds}; means)", ""]
        header = " | ".join(f"{split} {c}" for split in ("val", "test") for c in COLUMNS)
        lines += [
            f"| variant | {header} | val comp@3 / random same class | prototypes |",
            "|---|" + "---|" * (2 * len(COLUMNS) + 2),
        ]
        for name in VARIANTS:
            mean = {key: mean_of(r["variants"][name].get(key) for r in runs) for key in runs[0]["variants"][name]}
            cells = [f"{mean[f'{split}/{c}']:.3f}" for split in ("val", "test") for c in COLUMNS]
            ratio = mean["val/proto3_comprehensiveness"] / mean["val/proto3_random_same_class_comprehensiveness"]
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {ratio:.2f} | {mean['val/prototypes']:.0f} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    records = []
    for run in args.runs:
        if run.suffix == ".json":
            records.append(json.loads(run.read_text()))
            continue
        record = study(run)
        (args.out / f"{run.name}.json").write_text(json.dumps(record, indent=1) + "\n")
        records.append(record)
    (args.out / "table.md").write_text(table(records) + "\n")
    print(table(records))


if __name__ == "__main__":
    main()
