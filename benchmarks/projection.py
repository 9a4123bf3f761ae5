"""Benchmark 3: projecting P prototypes over N training examples, and explaining inputs.

    python benchmarks/projection.py                         # N = 1k, 10k, 67k SST-2 (all of train)
    python benchmarks/projection.py --sizes 1000,10000      # quicker

Time and peak extra memory (resident set size sampled during the pass, above what the process
held before it) of projection as training runs it: one encoder pass over the training split (the
pooled embeddings every prototype stage shares: N x H floats, kept in a memory-mapped file above
1 GiB), then a `link` projection from them, with the packaged MiniLM and a prototype head
initialised from training embeddings. Then the time per explained input (explain(), batch of one).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import table, write  # noqa: E402
from benchmarks.e2e import build, compose  # noqa: E402


def rss_bytes() -> int:
    """This process's resident set size (Linux /proc; psutil elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096
    except OSError:
        import psutil

        return psutil.Process().memory_info().rss


class PeakRSS:
    """Samples this process's resident memory every 10 ms while in the with-block."""

    def __enter__(self):
        self.peak, self.running = 0, True
        self.base = rss_bytes()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.01)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()

    @property
    def extra_mb(self) -> float:
        return max(0, self.peak - self.base) / 2**20


def main():
    from protolm.explanations.describe import explain
    from protolm.prototypes.features import encode_split
    from protolm.prototypes.initial import init_prototypes_from_training_data
    from protolm.prototypes.projection import project

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,67349")
    parser.add_argument("--prototypes-per-class", type=int, default=10)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    rows = []
    for n in map(int, args.sizes.split(",")):
        cfg = compose(
            [
                "backbone=minilm",
                "task=sst2",
                f"data.max_train_samples={n}",
                "data.max_length=128",
                f"data.eval_batch_size={args.batch_size}",
                f"head.prototypes_per_class={args.prototypes_per_class}",
            ]
        )
        dm, module = build(cfg)
        split, model = dm.role_split("train"), module.model.eval()
        init_prototypes_from_training_data(model, dm, seed=0)
        with PeakRSS() as memory:
            start = time.perf_counter()
            features = encode_split(model, dm, "train")
            record = project(model, features, split, mode="link", top_k=args.top_k)
            seconds = time.perf_counter() - start
        rows.append(
            {
                "examples": len(split),
                "prototypes": model.head.num_prototypes,
                "seconds": seconds,
                "examples_per_s": len(split) / seconds,
                "peak_extra_rss_mb": memory.extra_mb,
                "state_entries": model.head.num_prototypes * args.top_k,
                "mode": record.mode,
            }
        )
        print(table(rows[-1:], list(rows[-1])), flush=True)
    # Time per explained input, one at a time (what an interactive user sees).
    texts = dm.role_split("test").texts[:50]
    tok = dm.tokenizer
    explain(model, tok, texts[:2])  # warm-up
    start = time.perf_counter()
    for text in texts:
        explain(model, tok, [text])
    per_input = (time.perf_counter() - start) / len(texts)
    start = time.perf_counter()
    explain(model, tok, texts)
    batched = (time.perf_counter() - start) / len(texts)
    print("\n" + table(rows, list(rows[0])))
    print(
        f"explain: {1000 * per_input:.1f} ms per input one at a time, "
        f"{1000 * batched:.1f} ms per input in batches of 16"
    )
    path = write(
        "projection",
        {
            "args": vars(args),
            "rows": rows,
            "explain_ms_per_input": 1000 * per_input,
            "explain_ms_per_input_batched": 1000 * batched,
        },
        args.out,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
