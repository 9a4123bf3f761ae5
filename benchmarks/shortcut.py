"""The planted-shortcut benchmark: does a model pick up a meaningless token planted in one class's
training sentences, can a person find it through the prototypes, and does one debugging round
remove it? Against the cheapest remedy without prototypes: the linear-head model fine-tuned again
on the training data without the token.

    python benchmarks/shortcut.py --seeds 1 2 3 --work outputs/shortcut --out benchmarks/measured/shortcut.json

Per seed, on the demo budget (SST-2, packaged MiniLM, 4,000 sentences, one epoch, 64 tokens):
``zxq`` inserted into half of the positive training (and selection) sentences (``experiment=shortcut``); models trained
clean and with the shortcut, each head; the prototype model edited once (``protolm edit
forbid.phrases=[zxq]``, head only and with the encoder); the linear model fine-tuned again from its
own encoder on the clean data. Every model is scored on SST-2 dev (872) as it is and with the token
inserted into every negative sentence ("flipped"), where a model that learned the token fails.
Runs already finished in ``--work`` are reused, so the benchmark resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine  # noqa: E402

TOKEN, CLASS, SHARE = "zxq", 1, 0.5  # as conf/experiment/shortcut.yaml plants them (a test holds the two together)
QUIET = ["trainer.enable_progress_bar=false", "logger=csv", "health.at_end=false"]
DEMO, PLANTED = ["experiment=demo", *QUIET], ["experiment=shortcut", *QUIET]


def protolm(*args: str) -> float:
    """Run ``protolm <args>`` in a fresh process; its wall time in seconds."""
    started = time.time()
    done = subprocess.run([sys.executable, "-m", "protolm", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"protolm {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return round(time.time() - started, 1)


def trained(run: Path, overrides: list[str]) -> tuple[Path, float | None]:
    """A training run in ``run`` (reused when finished): (its directory, its wall time or None)."""
    if (run / "results.json").exists():
        return run, None
    return run, protolm("train", *overrides, f"hydra.run.dir={run}")


def edited(model: Path, out: Path, *options: str) -> tuple[Path, float | None]:
    if (out / "edited.ckpt").exists():
        return out / "edited.ckpt", None
    return out / "edited.ckpt", protolm("edit", f"model={model}", f"forbid.phrases=[{TOKEN}]", *options,
                                        f"hydra.run.dir={out}")  # fmt: skip


def test_sets() -> dict[str, tuple[list[str], list[int]]]:
    """SST-2 dev as it is, and with the token inserted into every sentence of the other class."""
    texts, labels = dev_split()
    rng = random.Random(0)
    flipped = [insert(t, rng) if label != CLASS else t for t, label in zip(texts, labels)]
    return {"clean": (texts, labels), "flipped": (flipped, labels)}


def dev_split() -> tuple[list[str], list[int]]:
    import csv

    from protolm.config.resolvers import default_data_dir

    path = Path(default_data_dir()) / "sst2" / "dev.tsv"
    with path.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r["sentence"] for r in rows], [int(r["label"]) for r in rows]


def insert(text: str, rng: random.Random) -> str:
    words = text.split(" ")
    at = rng.randint(0, len(words))
    return " ".join(words[:at] + [TOKEN] + words[at:])


def accuracies(model: Path, sets: dict) -> dict[str, float]:
    import protolm

    clf = protolm.load(model)
    found = {}
    for name, (texts, labels) in sets.items():
        predictions = [clf.labels.index(p["prediction"]) for p in clf.predict(texts, batch_size=64)]
        found[name] = round(sum(p == y for p, y in zip(predictions, labels)) / len(labels), 4)
    return found


def one_seed(seed: int, work: Path, sets: dict, extra: list[str]) -> dict:
    """Every model of one seed: its accuracies and the time it took (training, or the remedy)."""
    s = f"seed={seed}", *extra
    runs = {
        "prototype, clean": trained(work / f"proto_clean_s{seed}", [*DEMO, *s]),
        "prototype, shortcut": trained(work / f"proto_short_s{seed}", [*PLANTED, *s]),
        "linear, clean": trained(work / f"linear_clean_s{seed}", [*DEMO, "head=linear", *s]),
        "linear, shortcut": trained(work / f"linear_short_s{seed}", [*PLANTED, "head=linear", *s]),
    }
    shortcut = runs["prototype, shortcut"][0]
    runs["prototype, shortcut + forbid (head)"] = edited(shortcut, work / f"forbid_head_s{seed}")
    runs["prototype, shortcut + forbid (encoder)"] = edited(shortcut, work / f"forbid_enc_s{seed}",
                                                           "forbid.tune_encoder=true")  # fmt: skip
    linear = runs["linear, shortcut"][0]
    remedy = [*DEMO, "head=linear", *s, f"init.from_checkpoint={linear}"]
    runs["linear, shortcut + fine-tuned again without the token"] = trained(work / f"linear_remedy_s{seed}", remedy)
    return {name: accuracies(path, sets) | {"seconds": seconds} for name, (path, seconds) in runs.items()}


def summary(by_seed: dict[int, dict]) -> dict:
    names = next(iter(by_seed.values())).keys()
    out = {}
    for name in names:
        rows = [by_seed[s][name] for s in by_seed]
        out[name] = {k: round(statistics.fmean(r[k] for r in rows), 4) for k in ("clean", "flipped")}
        times = [r["seconds"] for r in rows if r["seconds"] is not None]
        out[name]["seconds"] = round(statistics.fmean(times), 1) if times else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--work", type=Path, default=Path("outputs/shortcut"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/measured/shortcut.json"))
    parser.add_argument("--extra", nargs="*", default=[], help="more overrides for every run (a smaller budget)")
    args = parser.parse_args()
    sets = test_sets()
    by_seed = {seed: one_seed(seed, args.work, sets, args.extra) for seed in args.seeds}
    record = {
        "command": "python " + " ".join(sys.argv),
        "machine": machine(),
        "token": TOKEN, "class": CLASS, "share": SHARE,
        "by_seed": by_seed,
        "mean": summary(by_seed),
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    for name, figures in record["mean"].items():
        print(f"{name:55s} clean {figures['clean']:.4f}  flipped {figures['flipped']:.4f}  {figures['seconds']} s")


if __name__ == "__main__":
    main()
