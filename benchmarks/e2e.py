"""Benchmark 2: end-to-end training throughput on SST-2's real length distribution.

    python benchmarks/e2e.py                     # packaged MiniLM, 1,500 SST-2 sentences, CPU
    python benchmarks/e2e.py --backbone roberta-large --samples 20000 --precision bf16-mixed   # a GPU

Rows: the framework (protolm's Lightning module through the same builders run.py uses) with the
prototype head and with the linear baseline; a minimal hand-written PyTorch loop over the same
Hugging Face model, head, losses, optimiser and batches (the floor for framework overhead); and
the prototype head with length grouping off and with padding to max_length instead of per batch.
Training steps only (no validation, no projection); step times are medians over the epoch.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import table, write  # noqa: E402


class StepTimer(L.Callback):
    def __init__(self):
        self.times, self.examples, self.tokens = [], 0, 0

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.times.append(time.perf_counter() - self._start)
        self.examples += len(batch["labels"])
        self.tokens += int(batch["attention_mask"].sum())


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import open_dict

    import protolm.config  # noqa: F401

    with initialize_config_dir(str(Path(__file__).resolve().parents[1] / "conf"), version_base="1.3"):
        cfg = hydra_compose("config", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(Path(tempfile.gettempdir()) / "protolm-bench")
    return cfg


def build(cfg):
    from protolm.config import read_settings
    from protolm.modeling.backbone import load_tokenizer
    from protolm.training.assemble import build_datamodule, build_model

    L.seed_everything(cfg.seed, verbose=False)
    settings = read_settings(cfg)
    dm = build_datamodule(settings, load_tokenizer(settings.backbone))
    return dm, build_model(settings)


def framework(cfg) -> dict:
    from protolm.config import read_settings
    from protolm.training.assemble import trainer_kwargs

    dm, model = build(cfg)
    timer = StepTimer()
    trainer = L.Trainer(
        **trainer_kwargs(
            read_settings(cfg),
            limit_val_batches=0,
            enable_checkpointing=False,
            logger=False,
            enable_progress_bar=False,
            num_sanity_val_steps=0,
        ),
        callbacks=[timer],
    )
    start = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    return summarise(timer.times, timer.examples, timer.tokens, time.perf_counter() - start)


def hand_loop(cfg) -> dict:
    """The same model, losses, optimiser and batches, with a plain PyTorch loop."""
    dm, model = build(cfg)
    device = torch.device("cuda" if torch.cuda.is_available() and cfg.trainer.accelerator != "cpu" else "cpu")
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    from protolm.training.optim import implementation

    optimizer = torch.optim.AdamW(params, lr=cfg.optim.head_lr, **implementation(model.optim))
    loader = dm.train_dataloader()
    if model.is_prototype:  # the initialisation the framework does in on_fit_start
        model.init_prototypes_from_training_data(dm)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled="bf16" in str(cfg.trainer.precision))
    times, examples, tokens = [], 0, 0
    start = time.perf_counter()
    for batch in loader:
        t = time.perf_counter()
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast:
            out = model(batch)
            loss = model.losses(out, batch["labels"])["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
        examples += len(batch["labels"])
        tokens += int(batch["attention_mask"].sum())
    return summarise(times, examples, tokens, time.perf_counter() - start)


def summarise(times, examples, tokens, total) -> dict:
    return {
        "steps": len(times),
        "median_step_ms": 1000 * statistics.median(times),
        "examples_per_s": examples / sum(times),
        "tokens_per_s": tokens / sum(times),
        "wall_s": total,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="minilm")
    parser.add_argument("--samples", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument("--rows", default="prototype,linear,hand,no_grouping,pad_to_max")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds of prototype/linear/hand")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    base = [
        f"backbone={args.backbone}",
        "task=sst2",
        f"data.max_train_samples={args.samples}",
        f"data.batch_size={args.batch_size}",
        f"data.max_length={args.max_length}",
        "trainer.max_epochs=1",
        f"trainer.precision={args.precision}",
        f"trainer.accelerator={args.accelerator}",
        "seed=0",
    ]
    variants = {
        "prototype": (framework, base + ["head=prototype"]),
        "linear": (framework, base + ["head=linear"]),
        "hand": (hand_loop, base + ["head=prototype"]),
        "no_grouping": (framework, base + ["head=prototype", "data.length_grouping=false"]),
        "pad_to_max": (
            framework,
            base + ["head=prototype", "data.length_grouping=false", "data.dynamic_padding=false"],
        ),
    }
    # Interleaved rounds: a shared CPU's speed drifts by 10-20 % over minutes, so the variants
    # compared with each other run side by side, and each figure is the median over rounds.
    names = args.rows.split(",")
    measured = {name: [] for name in names}
    for round_ in range(args.repeats):
        for name in names:
            if round_ and name in ("no_grouping", "pad_to_max"):
                continue  # several-fold differences: one round is enough
            fn, overrides = variants[name]
            measured[name].append(fn(compose(overrides)))
            print(f"round {round_ + 1} {name}: {measured[name][-1]}", flush=True)
    rows = []
    for name in names:
        runs = measured[name]
        row = {"run": name, "rounds": len(runs)}
        for key in runs[0]:
            row[key] = statistics.median(r[key] for r in runs)
        rows.append(row)
    by = {r["run"]: r for r in rows}
    derived = {}
    if "prototype" in by and "linear" in by:
        derived["prototype_vs_linear_step_time"] = by["prototype"]["median_step_ms"] / by["linear"]["median_step_ms"]
    if "prototype" in by and "hand" in by:
        derived["framework_vs_hand_throughput"] = by["prototype"]["examples_per_s"] / by["hand"]["examples_per_s"]
    if "prototype" in by and "pad_to_max" in by:
        derived["speedup_dynamic_grouped_vs_pad_to_max"] = (
            by["prototype"]["examples_per_s"] / by["pad_to_max"]["examples_per_s"]
        )
    if "prototype" in by and "no_grouping" in by:
        derived["speedup_grouping_vs_dynamic_only"] = (
            by["prototype"]["examples_per_s"] / by["no_grouping"]["examples_per_s"]
        )
    print("\n" + table(rows, list(rows[0])))
    for k, v in derived.items():
        print(f"{k}: {v:.3f}")
    path = write(
        f"e2e_{args.backbone}_{args.precision}", {"args": vars(args), "rows": rows, "derived": derived}, args.out
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
