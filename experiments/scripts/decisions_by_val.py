"""The study's decisions read again on the selection split: for each default the study chose, the
paired difference (variant minus its comparison) on val/acc (the 1,000 held-out training sentences
that select checkpoints) beside test/acc (the 872 dev sentences the figures report).

    python experiments/scripts/decisions_by_val.py experiments/results/study_demo/runs \
        experiments/results/cpu_main_table/runs > experiments/results/study_demo/decisions_by_val.md

The second folder gives the CPU main table's case for 25 prototypes per class (against 10), task by
task, on the same two splits.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from scipy.stats import t as student

# (decision, the variant chosen or tried, what it was compared with, what the study did)
DECISIONS = [
    ("cosine similarity (head.similarity)", "proto_cosine", "proto", "adopted"),
    (
        "2x encoder rate under the prototype head (head.encoder_lr_scale=2)",
        "proto_cosine_blr1e4",
        "proto_cosine",
        "adopted",
    ),
    ("3x encoder rate", "proto_elr3", "proto_defaults", "not adopted"),
    ("25 prototypes per class", "proto_ppc25", "proto_defaults", "adopted (with the CPU main table)"),
    ("5 prototypes per class", "proto_ppc5", "proto_defaults", "not adopted"),
    ("no warm-up (optim.warmup_ratio=0)", "proto_warmup0", "proto_defaults", "not adopted (kept 10 %)"),
    ("random prototype init", "proto_init_random", "proto_defaults", "not adopted"),
    ("K = 1", "proto_k1", "proto_defaults", "not adopted"),
    ("K = P/C (loss.k_fraction=1)", "proto_kfull", "proto_defaults", "not adopted"),
    ("head lr 1e-3", "proto_hlr1e3", "proto_defaults", "not adopted"),
    ("head lr 1e-2", "proto_hlr1e2", "proto_defaults", "not adopted"),
    ("link projection (no replace)", "proto_link", "proto_defaults", "not adopted"),
    ("attention starting as mean pooling", "proto_cosine_uniform", "proto_cosine", "not adopted"),
]


def load(runs: Path) -> dict[tuple[str, int], dict]:
    found = {}
    for path in runs.glob("*.json"):
        name, _, seed = path.stem.rpartition("-seed")
        found[(name, int(seed))] = json.loads(path.read_text())["metrics"]
    return found


def paired(runs: dict, variant: str, base: str, key: str) -> tuple[float, float, int, float]:
    """(mean difference, its t statistic, seeds paired, mean of the variant)."""
    seeds = sorted(s for (n, s) in runs if n == variant and (base, s) in runs)
    diffs = [runs[(variant, s)][key] - runs[(base, s)][key] for s in seeds]
    mean = statistics.fmean(diffs)
    sd = statistics.stdev(diffs) if len(diffs) > 1 else float("nan")
    t = mean / (sd / len(diffs) ** 0.5) if sd and sd == sd else float("nan")
    return mean, t, len(diffs), statistics.fmean(runs[(variant, s)][key] for s in seeds)


def verdict(mean: float, t: float, n: int) -> str:
    if n < 2 or t != t:
        return "too few seeds"
    p = 2 * student.sf(abs(t), n - 1)
    return f"{'better' if mean > 0 else 'worse'} (p = {p:.2f})" if p < 0.1 else f"no difference shown (p = {p:.2f})"


LEARNED = ("sst2", "sst5", "imdb", "mnli-devsplit", "qnli-devsplit")  # where the linear head beats the majority


def main_table(runs: dict) -> None:
    """25 per class (the runs named *-prototypes_per_class25) against 10 (the runs of that date)."""
    print("\n## 25 prototypes per class against 10, CPU main table (3 seeds per task)\n")
    print("| task | val/acc (selection) | test/acc (reported) |")
    print("|---|---|---|")
    means = {"val/acc": [], "test/acc": []}
    tasks = {name.split("-prototype")[0] for (name, _) in runs if "-prototype" in name}
    for task in sorted(t for t in tasks if t != "biosses"):  # a regression: no accuracy
        row = [task]
        for key in ("val/acc", "test/acc"):
            mean = paired(runs, f"{task}-prototype-prototypes_per_class25", f"{task}-prototype", key)[0]
            row.append(f"{mean:+.4f}")
            if task in LEARNED:
                means[key].append(mean)
        print("| " + " | ".join(row) + " |")
    print(
        f"| mean over {', '.join(LEARNED)} | {statistics.fmean(means['val/acc']):+.4f} | "
        f"{statistics.fmean(means['test/acc']):+.4f} |"
    )


def main() -> None:
    runs = load(Path(sys.argv[1]))
    print("# The study's decisions on the selection split\n")
    print("| decision | variant − comparison | seeds | val/acc (selection) | test/acc (reported) | on val | study |")
    print("|---|---|---|---|---|---|---|")
    for decision, variant, base, taken in DECISIONS:
        val, t_val, n, _ = paired(runs, variant, base, "val/acc")
        test, _, _, _ = paired(runs, variant, base, "test/acc")
        print(
            f"| {decision} | {variant} − {base} | {n} | {val:+.4f} (t = {t_val:.1f}) | {test:+.4f} | "
            f"{verdict(val, t_val, n)} | {taken} |"
        )
    if len(sys.argv) > 2:
        main_table(load(Path(sys.argv[2])))


if __name__ == "__main__":
    main()
