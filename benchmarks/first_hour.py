"""What a new user waits for: the smoke run (``make smoke``: every stage on a tiny budget) and the
demo (``make demo``), each in a fresh process, with its wall time and how much of it came after
training (the prototype stages on one shared pass of the encoder); optionally the same on another
checkout (``--baseline``), run one after the other on the same machine.

    python benchmarks/first_hour.py --what smoke demo [--baseline <older checkout>] --out benchmarks/measured

Writes ``first_hour.json``: per run the command, the wall time of the whole command (interpreter
start to exit), the run's ``timings`` (training, each post-training stage) and its test figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine, write  # noqa: E402

RUNS = {
    "smoke": ["experiment=smoke"],
    "smoke, tiny-llama with LoRA": ["experiment=smoke", "backbone=tiny-llama", "backbone.peft=lora"],
    "demo": ["experiment=demo"],
}
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "offline"}


def one_run(repo: Path, overrides: list[str], work: Path) -> dict:
    """``python run.py <overrides>`` of ``repo`` in a fresh process: wall time, timings, figures."""
    run_dir = work / f"{'-'.join(o.split('=')[-1] for o in overrides)}-{repo.name}-{time.strftime('%H%M%S')}"
    env = {**os.environ, **OFFLINE, "PYTHONPATH": str(repo), "TOKENIZERS_PARALLELISM": "false"}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "run.py", *overrides, "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}"],
        cwd=repo, env=env, capture_output=True, text=True,
    )  # fmt: skip
    wall, ended = time.perf_counter() - started, time.time()
    if done.returncode != 0:
        raise RuntimeError(f"run.py {' '.join(overrides)} in {repo} failed:\n{done.stderr[-3000:]}")
    results = json.loads((run_dir / "results.json").read_text())
    after_fit = ended - fit_ended(run_dir / "run.log")
    return {
        "run_dir": run_dir.name,  # under --work
        "wall_s": round(wall, 1),
        "after_training_s": round(after_fit, 1),
        "after_training_share_of_wall": round(after_fit / wall, 3),
        "timings": results.get("timings"),
        "test": {k: v for k, v in results["metrics"].items() if k.startswith("test/")},
        "parameters": results.get("parameters"),
    }


def fit_ended(log: Path) -> float:
    """When Lightning's fit ended (its log line's time stamp, as seconds since the epoch): everything
    after it is the post-training stages, the reports and the exit, measured alike on any checkout."""
    for line in log.read_text().splitlines():
        if "Trainer.fit` stopped" in line:
            stamp = line[1:24]  # [2026-12-07 04:11:21,395]
            return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
    raise RuntimeError(f"{log} has no line saying when training ended")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--what", nargs="+", choices=RUNS, default=["smoke"])
    parser.add_argument("--baseline", type=Path, help="an older checkout, run the same way after this one")
    parser.add_argument("--out", default=None)
    parser.add_argument("--work", type=Path, help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args()
    repos = {"this checkout": Path(__file__).resolve().parents[1]}
    if args.baseline:
        repos["baseline"] = args.baseline.resolve()
    rows = []
    with tempfile.TemporaryDirectory(prefix="protolm-first-hour-") as temporary:
        work = args.work or Path(temporary)
        for name in args.what:
            for label, repo in repos.items():
                row = {"run": name, "checkout": label, "command": f"python run.py {' '.join(RUNS[name])}"}
                experiment = RUNS[name][0].split("=")[1]
                if not (repo / "conf" / "experiment" / f"{experiment}.yaml").exists():
                    rows.append(row | {"absent": f"{repo.name} has no experiment={experiment}"})
                    continue
                rows.append(row | one_run(repo, RUNS[name], work))
                print(json.dumps(rows[-1]), flush=True)
    payload = {"command": "python " + " ".join(sys.argv), "machine": machine(), "rows": rows}
    print(f"wrote {write('first_hour', payload, args.out)}")


if __name__ == "__main__":
    main()
