"""Faithfulness of the model's own explanations, beside random baselines.

Prototype level: remove the k prototypes contributing most to the predicted class
(comprehensiveness = drop in that class's probability) or keep only them (sufficiency).
Token level (ERASER, DeYoung et al. 2020) with the model's attention as the rationale: delete
(or mask) the top q % of tokens (comprehensiveness) or everything else (sufficiency), for bins q,
and their AOPC (mean over bins). Higher comprehensiveness and lower sufficiency than the random
baseline mean the explanation points at what the model actually uses.
"""

from __future__ import annotations

import math
import random

import torch

from protolm.progress import track
from protolm.projection import _forward_context

REMOVALS = ("delete", "mask")
TARGETS = ("predicted", "true")


def _target(logits: torch.Tensor, labels: torch.Tensor, target: str) -> torch.Tensor:
    return logits.argmax(-1) if target == "predicted" else labels


@torch.no_grad()
def prototype_level(
    model, dataloader, ks: list[int], random_draws: int = 10, seed: int = 0, target: str = "predicted"
) -> dict:
    """Comprehensiveness / sufficiency of the top-k contributing prototypes vs k random prototypes."""
    head = model.head
    P = head.num_prototypes
    ks = sorted({min(int(k), P) for k in ks})
    weights = head.last_layer.weight.float()
    generator = torch.Generator().manual_seed(seed)
    sums = {
        k: {"comprehensiveness": 0.0, "sufficiency": 0.0, "random_comprehensiveness": 0.0, "random_sufficiency": 0.0}
        for k in ks
    }
    n = 0
    model.eval()
    with _forward_context(model):
        for batch in track(dataloader, "prototype faithfulness"):
            batch = {key: v.to(model.device) for key, v in batch.items()}
            out = model(batch)
            sims = out["similarities"].float()
            chosen = _target(out["logits"], batch["labels"], target)
            rows = torch.arange(len(sims), device=sims.device)
            prob = lambda keep: torch.softmax(head.logits_from_similarities(sims, keep).float(), -1)[rows, chosen]  # noqa: E731
            full = prob(None)
            contribution = sims * weights[chosen]
            ranked = torch.argsort(contribution, dim=1, descending=True)
            for k in ks:
                top = torch.zeros_like(sims, dtype=torch.bool).scatter_(1, ranked[:, :k], True)
                sums[k]["comprehensiveness"] += (full - prob(~top)).sum().item()
                sums[k]["sufficiency"] += (full - prob(top)).sum().item()
                for _ in range(random_draws):
                    pick = torch.rand(sims.shape, generator=generator).argsort(1)[:, :k].to(sims.device)
                    rand = torch.zeros_like(top).scatter_(1, pick, True)
                    sums[k]["random_comprehensiveness"] += (full - prob(~rand)).sum().item() / random_draws
                    sums[k]["random_sufficiency"] += (full - prob(rand)).sum().item() / random_draws
            n += len(sims)
    return {"examples": n, "by_k": {str(k): {name: v / n for name, v in values.items()} for k, values in sums.items()}}


def _special_positions(tokenizer, ids: list[int]) -> set[int]:
    mask = tokenizer.get_special_tokens_mask(ids, already_has_special_tokens=True)
    return {i for i, m in enumerate(mask) if m}


def _edit(
    ids: list[int],
    types: list[int] | None,
    content: list[int],
    positions: set[int],
    keep: bool,
    removal: str,
    mask_id: int | None,
):
    """Remove (or mask) ``positions``; with keep=True remove the other content tokens instead.
    Special tokens ([CLS], [SEP], ...) are never removed."""
    content = set(content)
    out_ids, out_types = [], []
    for i, token in enumerate(ids):
        selected = i in positions
        drop = i in content and ((not selected) if keep else selected)
        if drop and removal == "delete":
            continue
        out_ids.append(mask_id if drop else token)
        if types is not None:
            out_types.append(types[i])
    return out_ids, (out_types if types is not None else None)


@torch.no_grad()
def _probabilities(
    model, tokenizer, inputs: list[tuple[list[int], list[int] | None]], targets: list[int], batch_size: int
) -> list[float]:
    probs = []
    pad = tokenizer.pad_token_id
    with _forward_context(model):
        for start in track(range(0, len(inputs), batch_size), "token faithfulness"):
            chunk = inputs[start : start + batch_size]
            width = max(len(ids) for ids, _ in chunk)
            batch = {
                "input_ids": torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in chunk]),
                "attention_mask": torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in chunk]),
            }
            if chunk[0][1] is not None:
                batch["token_type_ids"] = torch.tensor([t + [0] * (width - len(t)) for _, t in chunk])
            batch = {k: v.to(model.device) for k, v in batch.items()}
            p = torch.softmax(model(batch)["logits"].float(), -1).cpu()
            probs += [float(p[i, targets[start + i]]) for i in range(len(chunk))]
    return probs


def integrated_gradients_ranking(model, batch: dict, targets: torch.Tensor, steps: int = 20) -> torch.Tensor:
    """Token importance by Captum's integrated gradients on the input embeddings (B x L)."""
    from captum.attr import LayerIntegratedGradients

    embeddings = model.encoder.get_input_embeddings()

    def forward(input_ids, attention_mask, token_type_ids=None):
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        return model(inputs)["logits"].float()

    ig = LayerIntegratedGradients(forward, embeddings)
    extra = (batch["attention_mask"],) + ((batch["token_type_ids"],) if "token_type_ids" in batch else ())
    attributions = ig.attribute(
        batch["input_ids"],
        baselines=torch.zeros_like(batch["input_ids"]),
        additional_forward_args=extra,
        target=targets,
        n_steps=steps,
        internal_batch_size=len(targets) * steps,
    )
    return attributions.sum(-1).detach()


def token_level(
    model,
    tokenizer,
    split,
    bins: list[float],
    removal: str = "delete",
    target: str = "predicted",
    seed: int = 0,
    batch_size: int = 32,
    max_length: int = 128,
    rationales: tuple[str, ...] = ("attention", "random"),
) -> dict:
    """ERASER comprehensiveness / sufficiency / AOPC per rationale ("attention", "random", "integrated_gradients")."""
    if removal not in REMOVALS:
        raise ValueError(f"faithfulness.token_removal={removal!r} is not one of {', '.join(REMOVALS)}")
    mask_id = tokenizer.mask_token_id if removal == "mask" else None
    if removal == "mask" and mask_id is None:
        raise ValueError("faithfulness.token_removal=mask: this tokenizer has no mask token; use delete")
    rng = random.Random(seed)
    model.eval()
    # Full inputs, their target class and probability, and the model's own attention.
    records = []
    for start in range(0, len(split), batch_size):
        texts = split.texts[start : start + batch_size]
        pairs = split.pairs[start : start + batch_size] if split.pairs is not None else None
        enc = tokenizer(
            *((texts, pairs) if pairs is not None else (texts,)),
            truncation=True,
            max_length=max_length,
            padding=True,
            return_tensors="pt",
        )
        batch = {
            k: v.to(model.device) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")
        }
        with torch.no_grad(), _forward_context(model):
            out = model(batch)
        labels = torch.tensor(split.labels[start : start + batch_size], device=out["logits"].device)
        targets = _target(out["logits"], labels, target)
        probs = torch.softmax(out["logits"].float(), -1)
        scores = {"attention": out["attention"].float()}
        if "integrated_gradients" in rationales:
            scores["integrated_gradients"] = integrated_gradients_ranking(model, batch, targets)
        for i in range(len(texts)):
            length = int(batch["attention_mask"][i].sum())
            ids = batch["input_ids"][i, :length].tolist()
            types = batch["token_type_ids"][i, :length].tolist() if "token_type_ids" in batch else None
            specials = _special_positions(tokenizer, ids)
            content = [t for t in range(length) if t not in specials]
            ranking = {name: sorted(content, key=lambda t: -float(s[i, t])) for name, s in scores.items()}
            if "random" in rationales:
                ranking["random"] = rng.sample(content, len(content))
            records.append(
                {
                    "ids": ids,
                    "types": types,
                    "content": content,
                    "target": int(targets[i]),
                    "full": float(probs[i, targets[i]]),
                    "ranking": ranking,
                }
            )
    # Every edited input of every rationale and bin, scored in batches.
    edits, owners = [], []
    for r, rec in enumerate(records):
        for name in rec["ranking"]:
            for q in bins:
                n = min(len(rec["content"]), max(1, math.ceil(q * len(rec["content"])))) if rec["content"] else 0
                chosen = set(rec["ranking"][name][:n])
                for kind, keep in (("comprehensiveness", False), ("sufficiency", True)):
                    edits.append(_edit(rec["ids"], rec["types"], rec["content"], chosen, keep, removal, mask_id))
                    owners.append((r, name, q, kind))
    probs = _probabilities(model, tokenizer, edits, [records[r]["target"] for r, *_ in owners], batch_size)
    table: dict = {}
    for (r, name, q, kind), p in zip(owners, probs):
        cell = table.setdefault(name, {}).setdefault(str(q), {"comprehensiveness": 0.0, "sufficiency": 0.0})
        cell[kind] += (records[r]["full"] - p) / len(records)
    for name, by_bin in table.items():
        by_bin["aopc"] = {
            kind: sum(by_bin[str(q)][kind] for q in bins) / len(bins) for kind in ("comprehensiveness", "sufficiency")
        }
    return {"examples": len(records), "by_rationale": table}
