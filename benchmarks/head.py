"""Benchmark 1: PrototypeHead + its losses, forward+backward, against a per-example loop.

    python benchmarks/head.py                 # the grid below, on this machine
    python benchmarks/head.py --grid full     # batch 16-128 x length 64-512 x hidden 384-1024 x prototypes 10-2000

For every point: protolm's vectorised head vs the reference code's computation (word attention
and similarities one example at a time, as its `hierarchical_attention_calculation` does), both
with cohesion/separation losses, after checking they compute the same numbers; and the time of
the head's unavoidable matrix products alone (token projection h.W over the real tokens and the
pooled-to-prototype distance product), the floor the head should approach. Sequence lengths are
drawn uniformly between half and all of the padded length.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import table, timeit, write  # noqa: E402
from protolm import PrototypeHead  # noqa: E402
from protolm.config import LossConfig  # noqa: E402
from protolm.modeling.losses import cohesion_separation  # noqa: E402


def vectorised_step(head, hidden, mask, labels, k):
    out = head(hidden, mask)
    coh, sep = cohesion_separation(out["similarities"], labels, head.prototype_class, k)
    loss = 0.5 * F.cross_entropy(out["logits"], labels) + 0.25 * coh + 0.25 * sep
    loss.backward()
    return loss


def loop_forward(head, hidden, mask):
    """The reference code's computation: the projection batched, everything after it per example."""
    upsilon = torch.tanh(head.pooling.proj(hidden))
    w = head.pooling.context.weight.squeeze(0)
    pooled, sims = [], []
    for u, h, m in zip(upsilon, hidden, mask):
        scores = torch.mv(u, w).masked_fill(m == 0, torch.finfo(u.dtype).min)
        alpha = torch.softmax(scores, dim=0)
        s = torch.mm(alpha.unsqueeze(0), h).squeeze(0)
        d = torch.sqrt((s - head.prototypes).pow(2).sum(1))
        sims.append(1 / (d + head.eps))
        pooled.append(s)
    sims = torch.stack(sims)
    return head.last_layer(sims), sims


def loop_step(head, hidden, mask, labels, k):
    logits, sims = loop_forward(head, hidden, mask)
    coh, sep = [], []
    for sim, y in zip(sims, labels):  # the reference loops over the batch for the loss too
        own = head.prototype_class == y
        coh.append(-torch.topk(sim[own], k, largest=False).values.mean())
        sep.append(torch.topk(sim[~own], k).values.mean())
    loss = 0.5 * F.cross_entropy(logits, labels) + 0.25 * torch.stack(coh).mean() + 0.25 * torch.stack(sep).mean()
    loss.backward()
    return loss


def floor_step(W, tokens, pooled, prototypes):
    """Only the unavoidable matrix products, forward and backward: h.W over the real (non-padding)
    tokens and pooled.prototypes^T."""
    projected = tokens @ W
    cross = pooled @ prototypes.t()
    (projected.sum() + cross.sum()).backward()


def run_point(batch, length, hidden_size, num_prototypes, repeats, device):
    torch.manual_seed(0)
    num_classes = 2
    head = PrototypeHead(hidden_size, num_prototypes, num_classes, similarity="inv_l2").to(device)  # the reference's
    hidden = torch.randn(batch, length, hidden_size, device=device, requires_grad=True)
    lengths = torch.randint(length // 2, length + 1, (batch,), device=device)
    mask = (torch.arange(length, device=device)[None, :] < lengths[:, None]).long()
    labels = torch.randint(0, num_classes, (batch,), device=device)
    with torch.no_grad():  # prototypes near the data, as after initialisation from training embeddings
        head.prototypes.copy_(
            hidden.detach().mean(1)[torch.randint(0, batch, (num_prototypes,))]
            + 0.1 * torch.randn(num_prototypes, hidden_size, device=device)
        )
    k = LossConfig(k_fraction=0.5).k_for(num_prototypes // num_classes)
    # Same numbers first: logits of the two implementations, and the loss.
    with torch.no_grad():
        ours = head(hidden, mask)["logits"]
        theirs, _ = loop_forward(head, hidden, mask)
    agree = torch.allclose(ours, theirs, rtol=1e-4, atol=1e-4)
    sync = torch.cuda.synchronize if device == "cuda" else None

    def zero():
        head.zero_grad(set_to_none=True)
        hidden.grad = None

    vec = timeit(lambda: (zero(), vectorised_step(head, hidden, mask, labels, k)), repeats=repeats, sync=sync)
    loop = timeit(lambda: (zero(), loop_step(head, hidden, mask, labels, k)), repeats=repeats, sync=sync)
    W = head.pooling.proj.weight.detach().t().clone().requires_grad_(True)
    pooled = torch.randn(batch, hidden_size, device=device, requires_grad=True)
    protos = head.prototypes.detach().clone().requires_grad_(True)
    tokens = hidden.detach()[mask.bool()].clone().requires_grad_(True)
    floor = timeit(lambda: floor_step(W, tokens, pooled, protos), repeats=repeats, sync=sync)
    return {
        "batch": batch,
        "length": length,
        "hidden": hidden_size,
        "prototypes": num_prototypes,
        "same_numbers": agree,
        "vectorised_ms": 1000 * vec["median_s"],
        "loop_ms": 1000 * loop["median_s"],
        "matmul_floor_ms": 1000 * floor["median_s"],
        "speedup_vs_loop": loop["median_s"] / vec["median_s"],
        "vs_floor": vec["median_s"] / floor["median_s"],
    }


GRIDS = {
    "smoke": [(4, 16, 32, 8)],  # checks the script runs (tests/test_benchmarks.py)
    "target": [(64, 128, 1024, 1000)],
    "small": [(64, 128, 1024, 1000)]
    + [(b, 128, 768, 100) for b in (16, 32, 128)]
    + [(32, length, 768, 100) for length in (64, 256, 512)]
    + [(32, 128, h, 100) for h in (384, 1024)]
    + [(32, 128, 768, p) for p in (10, 1000, 2000)],
    "full": list(itertools.product((16, 32, 64, 128), (64, 128, 256, 512), (384, 768, 1024), (10, 100, 1000, 2000))),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grid", choices=sorted(GRIDS), default="small")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rows = []
    for point in GRIDS[args.grid]:
        rows.append(run_point(*point, repeats=args.repeats, device=args.device))
        print(table(rows[-1:], list(rows[-1])), flush=True) if len(rows) == 1 else print(
            table(rows[-1:], list(rows[-1])).splitlines()[-1], flush=True
        )
    columns = list(rows[0])
    print("\n" + table(rows, columns))
    path = write(f"head_{args.grid}_{args.device}", {"grid": args.grid, "rows": rows}, args.out)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
