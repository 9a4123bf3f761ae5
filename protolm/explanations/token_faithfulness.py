"""Token-level faithfulness (ERASER, DeYoung et al. 2020): delete (or mask) the top q % of a
rationale's tokens (comprehensiveness) or everything else (sufficiency), for bins q (the top
ceil(q * n) of an example's n content tokens), and their AOPC, beside a random rationale.
"""

from __future__ import annotations

import math
import random
import time

import torch

from protolm.config.prototypes import TOKEN_REMOVALS
from protolm.data.collate import PadCollator
from protolm.explanations.rationales import RATIONALES
from protolm.explanations.scores import KINDS, target_classes
from protolm.modeling.inference import MODEL_INPUTS, encode_texts, evaluating, forward, outputs, to_device
from protolm.utils.progress import track


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
    net, tokenizer, inputs: list[tuple[list[int], list[int] | None]], targets: list[int], batch_size: int
) -> list[float]:
    """The target class's probability for every (edited) input, scored in padded batches."""
    collate = PadCollator(tokenizer.pad_token_id)
    examples = [{"input_ids": ids, **({"token_type_ids": types} if types is not None else {})} for ids, types in inputs]
    batches = (collate(examples[start : start + batch_size]) for start in range(0, len(examples), batch_size))
    probs = []
    for _, out in outputs(net, track(batches, "token faithfulness", total=math.ceil(len(examples) / batch_size))):
        p, offset = torch.softmax(out["logits"].float(), -1).cpu(), len(probs)
        probs += [float(p[i, targets[offset + i]]) for i in range(len(p))]
    return probs


class _Eraser:
    """ERASER's token-level scores for one model: the full inputs, their edits, the table."""

    def __init__(
        self,
        net,
        tokenizer,
        removal: str,
        target: str,
        seed: int,
        batch_size: int,
        max_length: int,
        scorers: dict | None = None,
    ):
        if removal not in TOKEN_REMOVALS:
            raise ValueError(f"faithfulness.token_removal={removal!r} is not one of {', '.join(TOKEN_REMOVALS)}")
        self.mask_id = tokenizer.mask_token_id if removal == "mask" else None
        if removal == "mask" and self.mask_id is None:
            raise ValueError("faithfulness.token_removal=mask: this tokenizer has no mask token; use delete")
        self.net, self.tokenizer, self.removal, self.target = net, tokenizer, removal, target
        self.rng, self.batch_size, self.max_length = random.Random(seed), batch_size, max_length
        self.scorers = {name: r.function for name, r in RATIONALES.items() if name != "attention"} | (scorers or {})
        # Seconds spent computing each rationale: the attention's is the forward pass that also
        # makes the prediction; random costs nothing.
        self.seconds = {"attention": 0.0}

    def records(self, split, rationales: tuple[str, ...]) -> list[dict]:
        """Full inputs: their ids, target class and probability, and each rationale's token ranking."""
        records = []
        with evaluating(self.net):
            for start in range(0, len(split), self.batch_size):
                records += self._batch_records(split, start, rationales)
        return records

    def _batch_records(self, split, start: int, rationales: tuple[str, ...]) -> list[dict]:
        end = start + self.batch_size
        texts = list(split.texts[start:end])
        pairs = list(split.pairs[start:end]) if split.pairs is not None else None
        enc = encode_texts(self.tokenizer, texts, pairs, self.max_length, return_special_tokens_mask=True)
        batch = to_device(enc, self.net.device, (*MODEL_INPUTS, "special_tokens_mask"))
        started = time.perf_counter()
        with torch.no_grad():
            out = forward(self.net, batch)
        self.seconds["attention"] += time.perf_counter() - started
        labels = torch.tensor(split.labels[start:end], device=out["logits"].device)
        targets = target_classes(out["logits"], labels, self.target)
        probs = torch.softmax(out["logits"].float(), -1)
        scores = {"attention": out["attention"].float()} if "attention" in rationales else {}
        for name in rationales:
            if name in self.scorers:
                started = time.perf_counter()
                scores[name] = self.scorers[name](self.net, batch, targets)
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started
        return [
            self._record(batch, i, scores, int(targets[i]), float(probs[i, targets[i]]), rationales)
            for i in range(len(texts))
        ]

    def _record(self, batch: dict, i: int, scores: dict, target: int, full: float, rationales) -> dict:
        length = int(batch["attention_mask"][i].sum())
        ids = batch["input_ids"][i, :length].tolist()
        types = batch["token_type_ids"][i, :length].tolist() if "token_type_ids" in batch else None
        specials = _special_positions(self.tokenizer, ids)
        content = [t for t in range(length) if t not in specials]
        ranking = {name: sorted(content, key=lambda t, s=s: -float(s[i, t])) for name, s in scores.items()}
        if "random" in rationales:
            ranking["random"] = self.rng.sample(content, len(content))
        return {"ids": ids, "types": types, "content": content, "target": target, "full": full, "ranking": ranking}

    def edits(self, records: list[dict], bins: list[float]) -> tuple[list, list]:
        """Every edited input of every rationale and distinct bin size, and whose (record, rationale,
        size, kind) it is. Bins that round to the same size share one edit."""
        edits, owners = [], []
        for r, rec in enumerate(records):
            content = rec["content"]
            sizes = sorted(set(bin_sizes(len(content), bins).values()))
            for name, ranked in rec["ranking"].items():
                for n in sizes:
                    for kind, keep in zip(KINDS, (False, True)):
                        edit = _edit(
                            rec["ids"], rec["types"], content, set(ranked[:n]), keep, self.removal, self.mask_id
                        )
                        edits.append(edit)
                        owners.append((r, name, n, kind))
        return edits, owners


def bin_sizes(n: int, bins: list[float]) -> dict[float, int]:
    """How many of an example's ``n`` content tokens the top-q rationale holds, per bin q:
    ceil(q * n), at least one token and at most n (none for an example without content tokens)."""
    # round() first: 0.07 * 100 is 7.000000000000001 in floating point, which must stay 7 tokens.
    return {q: min(n, max(1, math.ceil(round(q * n, 9)))) if n else 0 for q in bins}


def _table(records: list[dict], owners: list, probs: list[float], bins: list[float]) -> dict:
    """Mean drop in the target probability per rationale, bin and kind, and each rationale's AOPC
    under two definitions.

    A bin q reports every example at its size for q, even where several bins share a size.
    ``aopc`` is, per example, the mean drop over its *distinct* sizes, then the mean over examples:
    on a text of 20 content tokens or fewer the 1 % and 5 % bins are both the top token, which a
    mean over bins would count twice. ``aopc_eraser`` is ERASER's (DeYoung et al. 2020): the mean
    over the bins of each bin's mean, a repeated size counted each time, as published figures are."""
    drops: dict = {}  # (record, rationale) -> size -> kind -> drop
    for (r, name, n, kind), p in zip(owners, probs):
        drops.setdefault((r, name), {}).setdefault(n, {})[kind] = records[r]["full"] - p
    table: dict = {}
    for (r, name), by_size in drops.items():
        empty = {str(q): dict.fromkeys(KINDS, 0.0) for q in bins} | {"aopc": dict.fromkeys(KINDS, 0.0)}
        by_bin = table.setdefault(name, empty)
        sizes = bin_sizes(len(records[r]["content"]), bins)
        for kind in KINDS:
            for q in bins:
                by_bin[str(q)][kind] += by_size[sizes[q]][kind] / len(records)
            by_bin["aopc"][kind] += sum(d[kind] for d in by_size.values()) / len(by_size) / len(records)
    for by_bin in table.values():
        by_bin["aopc_eraser"] = {kind: sum(by_bin[str(q)][kind] for q in bins) / len(bins) for kind in KINDS}
    return table


def token_level(
    net,
    tokenizer,
    split,
    bins: list[float],
    removal: str = "delete",
    target: str = "predicted",
    seed: int = 0,
    batch_size: int = 32,
    max_length: int = 128,
    rationales: tuple[str, ...] = ("attention", "random"),
    scorers: dict | None = None,
) -> dict:
    """ERASER comprehensiveness / sufficiency / AOPC per rationale: "attention" (the model's own,
    prototype head only), "random", and every name in
    :data:`~protolm.explanations.rationales.RATIONALES` or ``scorers``; with the seconds per example
    each rationale took to compute."""
    eraser = _Eraser(net, tokenizer, removal, target, seed, batch_size, max_length, scorers)
    unknown = set(rationales) - {"attention", "random"} - set(eraser.scorers)
    if unknown:
        raise ValueError(f"unknown rationale(s) {sorted(unknown)}: not attention, random or {sorted(eraser.scorers)}")
    own = sorted({"attention", "contribution"} & set(rationales))
    # A linear head's "attention" is its fixed pooling, not an explanation. A model without a
    # protolm config (a stand-in) is taken at its word: it returns an "attention" of its own.
    if own and not getattr(getattr(net, "config", None), "is_prototype", True):
        raise ValueError(
            f"rationale(s) {own} need the prototype head's attention pooling; this model has a linear head"
        )
    records = eraser.records(split, rationales)
    edits, owners = eraser.edits(records, bins)
    probs = _probabilities(net, tokenizer, edits, [records[r]["target"] for r, *_ in owners], batch_size)
    seconds = {name: s / max(1, len(records)) for name, s in eraser.seconds.items() if name in rationales}
    return {
        "examples": len(records),
        "by_rationale": _table(records, owners, probs, bins),
        "seconds_per_example": seconds,
    }
