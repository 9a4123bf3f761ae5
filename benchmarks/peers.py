"""Benchmark 6: protolm beside what a user would pick instead.

    python benchmarks/peers.py --what train      # protolm (both heads) vs the Hugging Face Trainer
    python benchmarks/peers.py --what explain --prototype-run R --linear-run R   # vs post-hoc explainers

``--what train``: the same encoder (the packaged MiniLM unless ``--model`` says otherwise), the same
SST-2 training sentences (the `make demo` selection, written to a TSV the Trainer reads with
``datasets``), batch size, max length, AdamW with linear warm-up and decay, fp32, one epoch, run
by (a) ``run.py`` with the linear head, (b) ``run.py`` with the prototype head (projection and its
last-layer epoch included in the command, not in the step times), (c) the ``Trainer`` with
``AutoModelForSequenceClassification``, ``DataCollatorWithPadding`` and
``train_sampling_strategy="group_by_length"`` (transformers 5's ``group_by_length``). Each run is
a fresh process, so start-up (command start to first training step) and peak memory are its own;
rounds interleave the three, and every figure is the median over rounds. Accuracy is each run's on
the 872 SST-2 dev sentences.

``--what explain``: the cost per example and ERASER's token-level comprehensiveness / sufficiency /
AOPC (tokens deleted) of protolm's own explanation (the attention of the forward pass that makes
the prediction), Captum's integrated gradients, LIME and KernelSHAP, and a random rationale, on the
first ``--examples`` SST-2 dev sentences, for the prototype model and (post hoc only) the linear one.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.common import run_py_with, table, write  # noqa: E402

RUNNERS = ("protolm-linear", "protolm-prototype", "hf-trainer")


# ----------------------------------------------------------------------------- timing in a child
class _Timing:
    """Step times of a run's first training phase, start-up from the command's start, peak memory."""

    def __init__(self, started: float, out: Path):
        self.started, self.out, self.times, self.examples, self.tokens = started, out, [], 0, 0
        self.first_step_s, self._begin, self.done = None, None, False

    def step_begins(self):
        if self.first_step_s is None:
            self.first_step_s = time.time() - self.started
        self._begin = time.perf_counter()

    def step_ends(self, examples: int, tokens: int):
        self.times.append(time.perf_counter() - self._begin)
        self.examples, self.tokens = self.examples + examples, self.tokens + tokens

    def training_ends(self):
        if self.done:  # a later phase (the prototype head's last-layer epoch) is not measured
            return
        self.done = True
        record = {
            "startup_s": self.first_step_s,
            "steps": len(self.times),
            "median_step_ms": 1000 * statistics.median(self.times),
            "examples_per_s": self.examples / sum(self.times),
            "tokens_per_s": self.tokens / sum(self.times),
            "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
        self.out.write_text(json.dumps(record))


def protolm_child(args) -> None:
    """``run.py`` itself, with one more Lightning callback that times the training steps."""
    import lightning as L

    timing = _Timing(args.t0, Path(args.json))

    class Timer(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            timing.step_begins()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            timing.step_ends(len(batch["labels"]), int(batch["attention_mask"].sum()))

        def on_train_end(self, trainer, module):
            timing.training_ends()

    run_py_with(Timer(), args.overrides)


def hf_child(args) -> None:
    """The Hugging Face recipe for the same fine-tuning: Trainer + AutoModelForSequenceClassification."""
    import numpy as np
    from datasets import load_dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    timing = _Timing(args.t0, Path(args.json))
    seen = {"examples": 0, "tokens": 0}

    class Timer(TrainerCallback):
        def on_step_begin(self, *_, **__):
            timing.step_begins()

        def on_step_end(self, *_, **__):
            timing.step_ends(seen["examples"], seen["tokens"])
            seen["examples"] = seen["tokens"] = 0

        def on_train_end(self, *_, **__):
            timing.training_ends()

    class CountingCollator(DataCollatorWithPadding):  # examples and real tokens of each batch
        def __call__(self, features):
            batch = super().__call__(features)
            seen["examples"] += len(features)
            seen["tokens"] += int(batch["attention_mask"].sum())
            return batch

    spec = json.loads(args.spec)
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    model = AutoModelForSequenceClassification.from_pretrained(spec["model"], num_labels=2)
    files = {"train": spec["train"], "validation": spec["validation"]}
    data = load_dataset("csv", data_files=files, delimiter="\t", quoting=csv.QUOTE_NONE)
    data = data.map(
        lambda b: tokenizer(b["sentence"], truncation=True, max_length=spec["max_length"]),
        batched=True,
        remove_columns=["sentence"],
    )
    training = TrainingArguments(
        output_dir=spec["output_dir"],
        per_device_train_batch_size=spec["batch_size"],
        per_device_eval_batch_size=64,
        learning_rate=spec["lr"],
        weight_decay=spec["weight_decay"],
        warmup_steps=spec["warmup_ratio"],  # a float below 1 is a ratio of the steps in transformers 5
        lr_scheduler_type="linear",
        max_grad_norm=1.0,
        num_train_epochs=1,
        train_sampling_strategy="group_by_length",
        seed=spec["seed"],
        use_cpu=spec["cpu"],
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    collator = CountingCollator(tokenizer)
    trainer = Trainer(
        model=model,
        args=training,
        train_dataset=data["train"],
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=[Timer()],
    )
    trainer.train()
    predicted = trainer.predict(data["validation"])
    accuracy = float(np.mean(predicted.predictions.argmax(-1) == predicted.label_ids))
    record = json.loads(Path(args.json).read_text())
    Path(args.json).write_text(json.dumps(record | {"dev_acc": accuracy}))


# ------------------------------------------------------------------------------------ train
def _demo_training_set(args, work: Path) -> dict:
    """The `make demo` training sentences, as protolm selects them, written for the Trainer."""
    from benchmarks.e2e import compose
    from protolm.config import read_settings
    from protolm.data.datamodule import TaskDataModule
    from protolm.modeling.backbone import load_tokenizer, resolve_source

    settings = read_settings(compose(["experiment=demo", *args.common]))
    dm = TaskDataModule(settings.task, load_tokenizer(settings.backbone), settings.data, settings.seed)
    dm.setup("fit")
    train = dm.role_split("train")
    path = work / "train.tsv"
    with path.open("w") as f:
        f.write("sentence\tlabel\n")
        f.writelines(f"{text}\t{label}\n" for text, label in zip(train.texts, train.labels))
    return {
        "model": resolve_source(settings.backbone),
        "train": str(path),
        "validation": str(Path(settings.data.data_dir) / "sst2" / "dev.tsv"),
        "max_length": settings.data.max_length,
        "batch_size": settings.data.batch_size,
        "lr": settings.optim.backbone_lr,
        "weight_decay": settings.optim.weight_decay,
        "warmup_ratio": settings.optim.warmup_ratio,
        "examples": len(train),
        "cpu": settings.trainer.get("accelerator") == "cpu",
    }


def _run_child(runner: str, seed: int, spec: dict, args, work: Path) -> dict:
    out = work / f"{runner}-seed{seed}.json"
    run_dir = work / f"{runner}-seed{seed}"
    command = [sys.executable, __file__, "--child", runner, "--json", str(out), "--t0"]
    if runner == "hf-trainer":
        extra = ["--spec", json.dumps(spec | {"seed": seed, "output_dir": str(run_dir)})]
    else:
        head = runner.split("-")[1]
        extra = ["--", "experiment=demo", f"head={head}", f"seed={seed}", *args.common]
        extra += [f"hydra.run.dir={run_dir}", "logger=none", "trainer.enable_progress_bar=false"]
    started = time.time()
    done = subprocess.run([*command, repr(started), *extra], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{runner} seed {seed} failed:\n{done.stderr[-3000:]}")
    record = json.loads(out.read_text()) | {"command_s": time.time() - started}
    if runner != "hf-trainer":
        results = json.loads((run_dir / "results.json").read_text())
        record["dev_acc"] = results["metrics"]["test/acc"]
        record["run_dir"] = run_dir.name  # under --work
    return record


def train(args) -> None:
    work = Path(args.work or tempfile.mkdtemp(prefix="protolm-peers-"))
    work.mkdir(parents=True, exist_ok=True)
    spec = _demo_training_set(args, work)
    print(f"{spec['examples']} training sentences, {spec['max_length']} tokens, batch {spec['batch_size']}", flush=True)
    measured = {runner: [] for runner in args.runners}
    # Interleaved rounds: this shared CPU's speed drifts by 10-20 % over minutes.
    for round_ in range(args.rounds):
        for runner in args.runners:
            measured[runner].append(_run_child(runner, round_ + 1, spec, args, work))
            print(f"round {round_ + 1} {runner}: {measured[runner][-1]}", flush=True)
    keys = ("startup_s", "examples_per_s", "tokens_per_s", "median_step_ms", "peak_memory_mb", "command_s")
    rows = []
    for runner, runs in measured.items():
        row = {"run": runner, "rounds": len(runs)} | {k: statistics.median(r[k] for r in runs) for k in keys}
        accuracies = [r["dev_acc"] for r in runs]
        row["dev_acc_mean"] = statistics.mean(accuracies)
        row["dev_acc_per_seed"] = " ".join(f"{a:.3f}" for a in accuracies)
        rows.append(row)
    by = {r["run"]: r for r in rows}
    derived = {}
    if "hf-trainer" in by:
        for runner in ("protolm-linear", "protolm-prototype"):
            if runner in by:
                hf, ours = by["hf-trainer"], by[runner]
                derived[f"{runner}_vs_hf_throughput"] = ours["examples_per_s"] / hf["examples_per_s"]
                derived[f"{runner}_vs_hf_startup"] = ours["startup_s"] / hf["startup_s"]
                derived[f"{runner}_minus_hf_dev_acc"] = ours["dev_acc_mean"] - hf["dev_acc_mean"]
    print("\n" + table(rows, list(rows[0])))
    for key, value in derived.items():
        print(f"{key}: {value:.3f}")
    # Paths of this machine stay out of the record: the files by name, the model by its hub id.
    portable = spec | {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (packaged)" if "gt_all" in spec["model"] else spec["model"]
    }
    portable |= {"train": "<work>/train.tsv", "validation": "<data_dir>/sst2/dev.tsv"}
    payload = {
        "args": vars(args) | {"work": "<work>"},
        "spec": portable,
        "rows": rows,
        "derived": derived,
        "runs": measured,
    }
    print(f"\nwrote {write('peers_train', payload, args.out)}")


# ------------------------------------------------------------------------------------- main
def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--what", choices=("train", "explain"), default="train")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (seeds 1..N)")
    parser.add_argument("--runners", type=lambda s: s.split(","), default=list(RUNNERS))
    parser.add_argument("--common", nargs="*", default=[], help="extra overrides for both protolm runs")
    parser.add_argument("--work", default=None, help="where runs go (default: a new temporary folder)")
    parser.add_argument("--prototype-run", default=None)
    parser.add_argument("--linear-run", default=None)
    parser.add_argument("--examples", type=int, default=500)
    parser.add_argument("--start", type=int, default=0, help="the first dev sentence explained (0-based)")
    parser.add_argument("--ig-steps", type=int, default=50)
    parser.add_argument("--lime-samples", type=int, default=200)
    parser.add_argument("--shap-samples", type=int, default=200)
    parser.add_argument(
        "--rationales",
        type=lambda s: s.split(","),
        default=["greedy_gates", "gates", "attention", "contribution", "integrated_gradients", "lime", "kernel_shap"],
        help="which explanations to measure (a random rationale always runs)",
    )
    parser.add_argument("--out", default=None)
    parser.add_argument("--child", choices=RUNNERS, help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    parser.add_argument("--t0", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "hf-trainer":
        hf_child(args)
    elif args.child:
        protolm_child(args)
    elif args.what == "train":
        train(args)
    else:
        from benchmarks.peers_explain import explain

        explain(args)


if __name__ == "__main__":
    main()
