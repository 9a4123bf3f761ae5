"""Benchmark 7: data that scales. Peak memory and time to the first training step on large tasks.

    python benchmarks/data.py                                  # 1k (the tiny run), 10k, 100k, 1M rows
    python benchmarks/data.py --compare /path/to/older/checkout  # and the same runs on older code

Each size is a synthetic task added by one YAML (a search path given to Hydra): SST-2's training
sentences repeated to N rows of a TSV, with 1,000-row dev and test files. Each run is
``run.py task=synth<N> backbone=tiny head=linear data.max_length=64`` in a fresh process, stopped
at its first training step, where it records the seconds since the command started and its peak
resident memory. Per size, a first run starts from an empty data cache and a second run reuses
what the first left (older code without a cache just does the same work twice). The 1,000-row
task is the tiny run the others are compared with.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.common import run_py_with, table, write  # noqa: E402

SIZES = (1_000, 10_000, 100_000, 1_000_000)
TASK_YAML = """\
# A synthetic task of {n} rows: SST-2's training sentences, repeated.
name: synth{n}
problem: classification
text_fields: [sentence]
label_field: label
labels: [negative, positive]
local:
  format: tsv
  train: synth/train{n}.tsv
  validation: synth/dev.tsv
  test: synth/test.tsv
select_on: validation
report_on: test
"""


def make_tasks(work: Path, data_dir: Path, sizes) -> None:
    """TSV files under ``work/data/synth`` and one task YAML per size under ``work/conf/task``."""
    lines = (data_dir / "sst2" / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]
    (work / "data" / "synth").mkdir(parents=True, exist_ok=True)
    (work / "conf" / "task").mkdir(parents=True, exist_ok=True)
    for name, n in [("dev", 1000), ("test", 1000)] + [(f"train{n}", n) for n in sizes]:
        path = work / "data" / "synth" / f"{name}.tsv"
        if not path.exists():
            with open(path, "w", encoding="utf-8") as f:
                f.write("sentence\tlabel\n")
                for i in range(n):
                    f.write(lines[i % len(lines)] + "\n")
    for n in sizes:
        (work / "conf" / "task" / f"synth{n}.yaml").write_text(TASK_YAML.format(n=n))


# ----------------------------------------------------------------------------- the child run
def child(args) -> None:
    """``run.py`` of ``--repo``, stopped at its first training step after recording the figures."""
    sys.path.insert(0, args.repo)
    import lightning as L

    class FirstStep(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            record = {
                "first_step_s": time.time() - args.t0,
                "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
            Path(args.json).write_text(json.dumps(record))
            os._exit(0)

    run_py_with(FirstStep(), args.overrides, repo=Path(args.repo))


def run_once(repo: Path, n: int, work: Path, cache: Path, tag: str) -> dict:
    out = work / "records" / f"{tag}.json"
    out.parent.mkdir(exist_ok=True)
    overrides = [
        f"task=synth{n}",
        "backbone=tiny",
        "head=linear",
        "data.max_length=64",
        f"data.data_dir={work / 'data'}",
        "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false",
        "logger=none",
        f"hydra.run.dir={work / 'runs' / tag}",
        f"hydra.searchpath=[file://{work / 'conf'}]",
    ]
    env = {**os.environ, "PROTOLM_CACHE_DIR": str(cache)}
    started = time.time()
    command = [sys.executable, __file__, "--child", "--repo", str(repo), "--json", str(out), "--t0", repr(started)]
    done = subprocess.run([*command, "--", *overrides], capture_output=True, text=True, env=env)
    if done.returncode != 0 or not out.exists():
        raise SystemExit(f"{tag} failed:\n{done.stderr[-3000:]}")
    entries = [p for p in (cache / "role").glob("*") if p.is_dir()] if (cache / "role").is_dir() else []
    return json.loads(out.read_text()) | {"cache_entries": len(entries)}  # tokenized splits in the cache


def measure(repo: Path, label: str, sizes, work: Path) -> list[dict]:
    rows = []
    for n in sizes:
        cache = work / "cache" / f"{label}-{n}"
        shutil.rmtree(cache, ignore_errors=True)
        first = run_once(repo, n, work, cache, f"{label}-{n}-first")
        second = run_once(repo, n, work, cache, f"{label}-{n}-second")
        rows.append({"code": label, "rows": n, "first": first, "second": second})
        print(label, n, first, second, flush=True)
        shutil.rmtree(cache, ignore_errors=True)
    tiny = rows[0]["first"]["peak_memory_mb"]
    for row in rows:
        row["first_over_tiny_mb"] = row["first"]["peak_memory_mb"] - tiny
        row["second_over_tiny_mb"] = row["second"]["peak_memory_mb"] - tiny
        row["second_speedup"] = row["first"]["first_step_s"] / row["second"]["first_step_s"]
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=list(SIZES))
    parser.add_argument("--compare", default=None, help="an older checkout of protolm to measure beside this one")
    parser.add_argument("--data-dir", default=None, help="the folder holding sst2/ (default: data.data_dir's)")
    parser.add_argument("--work", default=None, help="where data, runs and caches go (default: a temporary folder)")
    parser.add_argument("--out", default=None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--repo", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    parser.add_argument("--t0", type=float, help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    from protolm.config import default_data_dir

    work = Path(args.work or tempfile.mkdtemp(prefix="protolm-data-bench-"))
    make_tasks(work, Path(args.data_dir or default_data_dir()), args.sizes)
    rows = measure(ROOT, "this", args.sizes, work)
    if args.compare:
        rows += measure(Path(args.compare).resolve(), "compared", args.sizes, work)
    flat = [
        {
            "code": r["code"],
            "rows": r["rows"],
            "first_step_s (1st run)": r["first"]["first_step_s"],
            "first_step_s (2nd run)": r["second"]["first_step_s"],
            "2nd run sooner": r["second_speedup"],
            "peak MB (1st)": r["first"]["peak_memory_mb"],
            "peak MB (2nd)": r["second"]["peak_memory_mb"],
            "MB over tiny (1st)": r["first_over_tiny_mb"],
            "MB over tiny (2nd)": r["second_over_tiny_mb"],
        }
        for r in rows
    ]
    print(table(flat, list(flat[0])))
    path = write("data", {"sizes": args.sizes, "compare": bool(args.compare), "rows": rows}, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
