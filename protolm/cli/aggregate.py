"""Collect results.json files of a sweep into tables: mean ± std and the 95 % CI over seeds per cell.

    protolm aggregate outputs/multirun/2026-11-29/10-00-00 [more dirs] [--out DIR]

Cells are the configuration values that differ between runs (task, backbone, head and any
swept key such as loss.cohesion), seeds excluded. Each task is scored by the test twin of its
selection metric (test/acc, or test/pearson for a regression) unless --metric says otherwise,
and the selection metric itself (val/acc) stands beside it: choices are made on it, never on the
reported split.
When runs differ by head, a second table puts the linear baseline and the prototype head side by
side with their difference per task. Writes table.md and table.csv (and logs them to W&B with
--wandb); failed runs (an error.txt, no results.json) are listed, not silently dropped.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
from collections import Counter, defaultdict
from pathlib import Path

# Keys that never define a cell: seeds, where things are written, how they are displayed.
IGNORED_PREFIXES = (
    "seed",
    "paths.",
    "ckpt_path",
    "overwrite",
    "traceback",
    "data.data_dir",
    "logger.",
    "trainer.enable_progress_bar",
    "callbacks.progress_bar",
    "callbacks.progress_every_s",
    "hydra",
    "optimized_metric",
)
FIRST_KEYS = ("task.name", "backbone.name", "head.name")


def flatten(node, prefix: str = "") -> dict:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    if isinstance(node, list):
        return {prefix[:-1]: json.dumps(node)}
    if prefix == "init.from_checkpoint." and str(node).endswith("first_stage"):
        return {prefix[:-1]: "two-stage"}  # each two-stage run names its own first stage: one cell for all
    return {prefix[:-1]: node}


# Settings a linear-head run carries in its config but never reads: they do not split its cells.
LINEAR_UNUSED = ("loss.cohesion", "loss.separation", "loss.k", "loss.reference_signs", "project.", "prune.")


def run_settings(record: dict) -> dict:
    """A run's flattened config, without the settings its head does not read."""
    flat = flatten(record["config"])
    if flat.get("head.name") == "linear":
        flat = {k: (None if k.startswith(LINEAR_UNUSED) else v) for k, v in flat.items()}
    return flat


def collect(dirs: list[Path]) -> tuple[list[dict], list[dict]]:
    runs, failures = [], []
    for root in dirs:
        for path in sorted(root.rglob("results.json")):
            if path.parent.name == "first_stage":  # a two-stage run's first stage: in its run's first_stage
                continue
            record = json.loads(path.read_text())
            record["_path"] = str(path.parent)
            runs.append(record)
        for error in sorted(root.rglob("error.txt")):
            if not (error.parent / "results.json").exists():
                failures.append({"run": str(error.parent), "error": error.read_text().splitlines()[0]})
    return runs, failures


def cell_keys(runs: list[dict]) -> list[str]:
    """task/backbone/head, plus every config key that differs between runs of the same
    task, backbone and head (so values derived from those, like a backbone's default learning
    rate, do not make columns), seeds and output settings excluded. A key that some runs do not
    record was added after they were made, with a default that keeps what they did: it differs
    only where the runs that record it disagree (else every key added since would split old runs
    from new ones)."""
    flat = [run_settings(r) for r in runs]
    groups = defaultdict(list)
    for f in flat:
        groups[tuple(f.get(k) for k in FIRST_KEYS)].append(f)
    keys = set().union(*flat) if flat else set()
    varying = []
    for key in sorted(keys):
        if key in FIRST_KEYS or key.startswith(IGNORED_PREFIXES):
            continue
        if any(len({json.dumps(f[key], sort_keys=True) for f in group if key in f}) > 1 for group in groups.values()):
            varying.append(key)
    return list(FIRST_KEYS) + varying


def default_metric(record: dict) -> str:
    return record["selection"]["metric"].replace("val/", "test/", 1)


def selection_twin(metric: str) -> str:
    """The selection split's figure beside a reported one (test/acc -> val/acc)."""
    return "val/" + metric.rsplit("/", 1)[1]


def summarise(values: list[float]) -> dict:
    """Mean, sample standard deviation and the half-width of the mean's 95 % confidence interval
    (Student's t with n - 1 degrees of freedom: with 3 seeds it is 2.48 standard deviations)."""
    from scipy.stats import t

    values = [v for v in values if v is not None and not math.isnan(v)]
    n = len(values)
    std = statistics.stdev(values) if n > 1 else float("nan")
    return {
        "n": n,
        "mean": statistics.fmean(values) if n else float("nan"),
        "std": std,
        "ci95": float(t.ppf(0.975, n - 1) * std / math.sqrt(n)) if n > 1 else float("nan"),
    }


def fmt(stat: dict) -> str:
    if not stat["n"]:
        return "–"
    if math.isnan(stat["std"]):
        return f"{stat['mean']:.3f} (n={stat['n']})"
    return f"{stat['mean']:.3f} ± {stat['std']:.3f} (n={stat['n']}); 95 % CI ± {stat['ci95']:.3f}"


def aggregate(
    runs: list[dict], metric: str | None = None, extra_metrics: tuple[str, ...] = ()
) -> tuple[list[str], list[dict]]:
    keys = cell_keys(runs)
    cells: dict[tuple, dict] = defaultdict(lambda: defaultdict(list))
    for record in runs:
        flat = run_settings(record)
        cell = tuple(flat.get(k) for k in keys)
        name = metric or default_metric(record)
        cells[cell]["metric_name"].append(name)
        cells[cell]["main"].append(record["metrics"].get(name))
        cells[cell]["selection"].append(record["metrics"].get(selection_twin(name)))
        cells[cell]["seeds"].append(record["seed"])
        for extra in extra_metrics:
            cells[cell][extra].append(record["metrics"].get(extra))
    rows = []
    for cell, values in sorted(cells.items(), key=lambda kv: [str(x) for x in kv[0]]):
        row = dict(zip(keys, cell))
        row["metric"] = values["metric_name"][0]
        row["seeds"] = sorted(values["seeds"])
        row["main"] = summarise(values["main"])
        row["selection"] = summarise(values["selection"])
        for extra in extra_metrics:
            row[extra] = summarise(values[extra])
        rows.append(row)
    return keys, rows


def markdown(keys: list[str], rows: list[dict], extra_metrics: tuple[str, ...] = ()) -> str:
    statistic = "mean ± std (n); 95 % CI of the mean"
    header = [k.replace(".name", "") for k in keys] + ["metric", statistic, "selection split (val)"]
    header += list(extra_metrics)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [("–" if row[k] is None else str(row[k])) for k in keys]
        cells += [row["metric"], fmt(row["main"]), fmt(row["selection"])] + [fmt(row[e]) for e in extra_metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# Keys only the prototype head reads (or, for init, only a prototype run sets): a prototype cell
# that differs from another in one of them is a variant compared with the same linear baseline.
PROTOTYPE_ONLY = ("head.", "loss.cohesion", "loss.separation", "loss.k", "loss.reference_signs", "project.", "init.")


def head_comparison(keys: list[str], rows: list[dict]) -> str | None:
    """Linear baseline vs each prototype variant per task (and backbone and shared setting), with
    the difference. Variants differ in prototype-only keys (similarity, loss weights, projection,
    the two-stage start) and are each compared with the linear cell that shares everything else."""
    heads = {row["head.name"] for row in rows}
    if not {"linear", "prototype"} <= heads:
        return None
    shared = [k for k in keys if k not in FIRST_KEYS and not k.startswith(PROTOTYPE_ONLY)]
    variant_keys = [k for k in keys if k not in FIRST_KEYS and k.startswith(PROTOTYPE_ONLY)]
    linear: dict[tuple, list[dict]] = defaultdict(list)
    prototype: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        match = (row["task.name"], row["backbone.name"], *[row[k] for k in shared])
        (linear if row["head.name"] == "linear" else prototype)[match].append(row)
    # The variant column names what sets a prototype row apart: its values of the prototype-only
    # keys that differ from the most common value among the table's prototype rows.
    proto_rows = [r for rs in prototype.values() for r in rs]
    varying = [k for k in variant_keys if len({str(r[k]) for r in proto_rows}) > 1]
    common = {k: Counter(str(r[k]) for r in proto_rows).most_common(1)[0][0] for k in varying}
    lines = [
        "| task | backbone | "
        + "".join(f"{k} | " for k in shared)
        + ("prototype variant | " if varying else "")
        + "metric | linear | prototype | prototype − linear | on the selection split (val) |",
        "|" + "---|" * (7 + len(shared) + bool(varying)),
    ]
    for match in sorted(set(linear) | set(prototype), key=lambda m: [str(x) for x in m]):
        lin = linear.get(match, [None])[0]
        for proto in prototype.get(match) or [None]:
            diff = val_diff = "–"
            if lin and proto and lin["main"]["n"] and proto["main"]["n"]:
                diff = f"{proto['main']['mean'] - lin['main']['mean']:+.3f}"
            if lin and proto and lin["selection"]["n"] and proto["selection"]["n"]:
                val_diff = f"{proto['selection']['mean'] - lin['selection']['mean']:+.3f}"
            variant = "–"
            if proto:
                variant = (
                    ", ".join(f"{k}={proto[k]}" for k in varying if str(proto[k]) != common[k]) or "the common settings"
                )
            lines.append(
                "| "
                + " | ".join(str(x) for x in match)
                + (f" | {variant}" if varying else "")
                + f" | {(proto or lin)['metric']} | {fmt(lin['main']) if lin else '–'} | "
                f"{fmt(proto['main']) if proto else '–'} | {diff} | {val_diff} |"
            )
    return "\n".join(lines)


def write_csv(path: Path, keys: list[str], rows: list[dict], extra_metrics: tuple[str, ...]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            keys
            + ["metric", "mean", "std", "n", "seeds", "ci95"]
            + [f"{e}_{s}" for e in extra_metrics for s in ("mean", "std")]
        )
        for row in rows:
            writer.writerow(
                [row[k] for k in keys]
                + [
                    row["metric"],
                    row["main"]["mean"],
                    row["main"]["std"],
                    row["main"]["n"],
                    " ".join(map(str, row["seeds"])),
                    row["main"]["ci95"],
                ]
                + [row[e][s] for e in extra_metrics for s in ("mean", "std")]
            )


def log_to_wandb(project: str, tables: dict[str, Path]) -> None:
    import wandb

    run = wandb.init(project=project, job_type="aggregate", mode=None)
    for name, path in tables.items():
        with open(path) as f:
            reader = list(csv.reader(f))
        run.log({name: wandb.Table(columns=reader[0], data=reader[1:])})
    run.finish()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m protolm.cli.aggregate", description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="sweep or run directories (searched recursively)")
    parser.add_argument(
        "--metric", help="score every cell by this results.json metric (default: test twin of the selection metric)"
    )
    parser.add_argument(
        "--also", nargs="*", default=[], help="more metrics to report beside it, e.g. unprojected/test/acc"
    )
    parser.add_argument("--out", type=Path, help="where to write table.md / table.csv (default: the first directory)")
    parser.add_argument("--title", default=None)
    parser.add_argument("--wandb", metavar="PROJECT", help="also log the tables to this W&B project")
    args = parser.parse_args(argv)
    missing = [d for d in args.dirs if not d.is_dir()]
    if missing:
        parser.error(f"not a directory: {', '.join(map(str, missing))}")
    runs, failures = collect(args.dirs)
    if not runs:
        parser.error(f"no results.json under {', '.join(map(str, args.dirs))}")
    extra = tuple(args.also)
    keys, rows = aggregate(runs, args.metric, extra)
    out = args.out or args.dirs[0]
    out.mkdir(parents=True, exist_ok=True)
    parts = [
        f"# {args.title or 'Results'}",
        "",
        f"{len(runs)} runs from {', '.join(map(str, args.dirs))}; mean ± sample std over seeds (n runs per cell).",
        "",
        markdown(keys, rows, extra),
    ]
    comparison = head_comparison(keys, rows)
    if comparison:
        parts += ["", "## Prototype head vs linear baseline", "", comparison]
    if failures:
        parts += ["", "## Failed runs", ""] + [f"- `{f['run']}`: {f['error']}" for f in failures]
    (out / "table.md").write_text("\n".join(parts) + "\n")
    write_csv(out / "table.csv", keys, rows, extra)
    print("\n".join(parts))
    print(f"\nwrote {out / 'table.md'} and {out / 'table.csv'}")
    if args.wandb:
        log_to_wandb(args.wandb, {"results": out / "table.csv"})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
