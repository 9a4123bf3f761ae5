"""Faithfulness of the model's own explanations, beside random baselines.

Prototype level: remove the k prototypes contributing most to the target class
(comprehensiveness = drop in that class's probability) or keep only them (sufficiency), beside
k random prototypes of any class and k random prototypes of the target class.
Token level (ERASER, DeYoung et al. 2020) with the model's attention as the rationale: delete
(or mask) the top q % of tokens (comprehensiveness) or everything else (sufficiency), for bins q
(ceil(q * n) of an example's n content tokens), and their AOPC (per example the mean over its
distinct bin sizes, so that bins rounding to the same size count once; see :func:`_table`).
Higher comprehensiveness and lower sufficiency than a random baseline mean the explanation
points at what the model actually uses.
"""

from __future__ import annotations

import math
import random
import time

import torch

from protolm.data.collate import PadCollator
from protolm.inference import MODEL_INPUTS, evaluating, outputs, to_device
from protolm.progress import track
from protolm.tool_config import TOKEN_REMOVALS

KINDS = ("comprehensiveness", "sufficiency")


def _target(logits: torch.Tensor, labels: torch.Tensor, target: str) -> torch.Tensor:
    return logits.argmax(-1) if target == "predicted" else labels


# ------------------------------------------------------------------------ prototype level
class _PrototypeScores:
    """One batch's target-class probabilities with some prototypes switched off."""

    def __init__(self, head, sims: torch.Tensor, chosen: torch.Tensor):
        self.head, self.sims, self.chosen = head, sims, chosen
        self.rows = torch.arange(len(sims), device=sims.device)
        self.full = self.probability(None)

    def probability(self, keep: torch.Tensor | None) -> torch.Tensor:
        logits = self.head.logits_from_similarities(self.sims, keep).float()
        return torch.softmax(logits, -1)[self.rows, self.chosen]

    def drops(self, selected: torch.Tensor) -> tuple[float, float]:
        """Summed drop in probability when ``selected`` are removed, and when only they are kept."""
        return (self.full - self.probability(~selected)).sum().item(), (
            self.full - self.probability(selected)
        ).sum().item()


def _random_selection(allowed: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """A B x P mask of k prototypes per row, drawn uniformly among the ``allowed`` ones (B x P, bool;
    every row must allow at least k)."""
    # Keys in [0, 1) for the allowed prototypes and 2 for the others: the k smallest are a uniform
    # draw among the allowed. With everything allowed this is the plain argsort of the same draw,
    # so the all-class baseline's numbers are the ones earlier versions wrote.
    keys = torch.rand(allowed.shape, generator=generator).to(allowed.device).masked_fill(~allowed, 2.0)
    return torch.zeros_like(allowed).scatter_(1, keys.argsort(1)[:, :k], True)


def _accumulate(total: dict, prefix: str, drops: tuple[float, float], weight: float) -> None:
    for kind, drop in zip(KINDS, drops):
        total[prefix + kind] += drop * weight


def _add_batch(sums: dict, scores: _PrototypeScores, ranked: torch.Tensor, draws: int, generators) -> None:
    sims, head = scores.sims, scores.head
    everything = torch.ones_like(sims, dtype=torch.bool)
    same_class = head.prototype_class.to(sims.device)[None, :] == scores.chosen[:, None]
    for k, total in sums.items():
        top = torch.zeros_like(everything).scatter_(1, ranked[:, :k], True)
        _accumulate(total, "", scores.drops(top), 1.0)
        for _ in range(draws):
            _accumulate(total, "random_", scores.drops(_random_selection(everything, k, generators[0])), 1 / draws)
            if total["random_same_class_comprehensiveness"] is not None:  # None: k exceeds a class block
                picked = _random_selection(same_class, k, generators[1])
                _accumulate(total, "random_same_class_", scores.drops(picked), 1 / draws)


def _empty_sums(same_class: bool) -> dict:
    """Running sums per key of a ``by_k`` entry; the same-class baseline's are None when it is undefined."""
    sums = {f"{prefix}{kind}": 0.0 for prefix in ("", "random_") for kind in KINDS}
    return sums | {f"random_same_class_{kind}": 0.0 if same_class else None for kind in KINDS}


def prototype_level(
    model, dataloader, ks: list[int], random_draws: int = 10, seed: int = 0, target: str = "predicted"
) -> dict:
    """Comprehensiveness / sufficiency of the top-k contributing prototypes, beside two baselines.

    ``random_*``: k prototypes drawn from all P. Own-class last-layer weights are positive and the
    others negative, so for k up to the class block the top-k is the target class's block, and
    beating this baseline says little. ``random_same_class_*``: k prototypes drawn from the target
    class's block, which asks whether the ranking *within* the class matters. It is defined for k
    up to the smallest class block (P/C for equal blocks) and is None for larger k, where a draw
    of k prototypes of one class does not exist for every target class.
    """
    head = model.head
    ks = sorted({min(int(k), head.num_prototypes) for k in ks})
    weights = head.last_layer.weight.float()
    # Separate streams: the same-class draws leave the all-class baseline's draws unchanged.
    generators = (torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1))
    block = head.prototypes_per_class
    sums = {k: _empty_sums(k <= block) for k in ks}
    n = 0
    for batch, out in outputs(model, track(dataloader, "prototype faithfulness")):
        sims = out["similarities"].float()
        chosen = _target(out["logits"], batch["labels"], target)
        ranked = torch.argsort(sims * weights[chosen], dim=1, descending=True)
        _add_batch(sums, _PrototypeScores(head, sims, chosen), ranked, random_draws, generators)
        n += len(sims)
    by_k = {str(k): {name: None if v is None else v / n for name, v in values.items()} for k, values in sums.items()}
    return {"examples": n, "prototypes": head.num_prototypes, "smallest_class_block": block, "by_k": by_k}


# ---------------------------------------------------------------------------- token level
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
    """The target class's probability for every (edited) input, scored in padded batches."""
    collate = PadCollator(tokenizer.pad_token_id)
    examples = [{"input_ids": ids, **({"token_type_ids": types} if types is not None else {})} for ids, types in inputs]
    batches = (collate(examples[start : start + batch_size]) for start in range(0, len(examples), batch_size))
    probs = []
    for _, out in outputs(model, track(batches, "token faithfulness", total=math.ceil(len(examples) / batch_size))):
        p, offset = torch.softmax(out["logits"].float(), -1).cpu(), len(probs)
        probs += [float(p[i, targets[offset + i]]) for i in range(len(p))]
    return probs


def integrated_gradients_ranking(
    model, batch: dict, targets: torch.Tensor, steps: int = 20, internal_batch_size: int | None = None
) -> torch.Tensor:
    """Token importance by Captum's integrated gradients on the input embeddings (B x L).
    ``internal_batch_size``: sequences per forward pass (default: all B x steps at once)."""
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
        internal_batch_size=internal_batch_size or len(targets) * steps,
    )
    return attributions.sum(-1).detach()


def contribution_ranking(model, batch: dict, targets: torch.Tensor) -> torch.Tensor:
    """Each token's contribution to the target class through the head's attention pooling:
    alpha_t * (h_t . d log p(target) / d pooled), gradient x input at the pooled vector (B x L).

    The pooled vector is sum_t alpha_t h_t, so this splits the first-order effect of the pooled
    vector among the tokens by what each one adds, in the direction that raises the target class,
    where attention alone says only how much each is weighed. The encoder runs once without
    gradients; only the head (similarities and last layer) is differentiated."""
    inputs = {k: batch[k] for k in MODEL_INPUTS if k in batch}
    with torch.no_grad():
        hidden = model.encoder(**inputs).last_hidden_state.float()
        pooled, alpha = model.head.pooling(hidden, batch["attention_mask"])
    pooled = pooled.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model.head.logits_from_similarities(model.head.similarities(pooled)).float()
        chosen = torch.log_softmax(logits, -1).gather(1, targets[:, None].to(logits.device)).sum()
        (direction,) = torch.autograd.grad(chosen, pooled)
    return alpha * torch.einsum("blh,bh->bl", hidden, direction)


# Rationales computed from the model beyond its own attention: name -> fn(model, batch, targets) -> B x L
# scores (higher: more important). Callers may add their own (the peers benchmark adds LIME, KernelSHAP).
SCORERS = {"integrated_gradients": integrated_gradients_ranking, "contribution": contribution_ranking}


class _Eraser:
    """ERASER's token-level scores for one model: the full inputs, their edits, the table."""

    def __init__(
        self,
        model,
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
        self.model, self.tokenizer, self.removal, self.target = model, tokenizer, removal, target
        self.rng, self.batch_size, self.max_length = random.Random(seed), batch_size, max_length
        self.scorers = SCORERS | (scorers or {})
        # Seconds spent computing each rationale: the attention's is the forward pass that also
        # makes the prediction; random costs nothing.
        self.seconds = {"attention": 0.0}

    def records(self, split, rationales: tuple[str, ...]) -> list[dict]:
        """Full inputs: their ids, target class and probability, and each rationale's token ranking."""
        records = []
        with evaluating(self.model):
            for start in range(0, len(split), self.batch_size):
                records += self._batch_records(split, start, rationales)
        return records

    def _batch_records(self, split, start: int, rationales: tuple[str, ...]) -> list[dict]:
        end = start + self.batch_size
        texts = (split.texts[start:end],) + ((split.pairs[start:end],) if split.pairs is not None else ())
        enc = self.tokenizer(*texts, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt")
        batch = to_device(enc, self.model.device, MODEL_INPUTS)
        started = time.perf_counter()
        with torch.no_grad():
            out = self.model(batch)
        self.seconds["attention"] += time.perf_counter() - started
        labels = torch.tensor(split.labels[start:end], device=out["logits"].device)
        targets = _target(out["logits"], labels, self.target)
        probs = torch.softmax(out["logits"].float(), -1)
        scores = {"attention": out["attention"].float()} if "attention" in rationales else {}
        for name in rationales:
            if name in self.scorers:
                started = time.perf_counter()
                scores[name] = self.scorers[name](self.model, batch, targets)
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started
        return [
            self._record(batch, i, scores, int(targets[i]), float(probs[i, targets[i]]), rationales)
            for i in range(len(texts[0]))
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
    """Mean drop in the target probability per rationale, bin and kind, and each rationale's AOPC.

    A bin q reports every example at its size for q, even where several bins share a size. The
    AOPC is, per example, the mean drop over its *distinct* sizes, then the mean over examples:
    on a text of 20 content tokens or fewer the 1 % and 5 % bins are both the top token, which a
    mean over bins would count twice."""
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
    return table


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
    scorers: dict | None = None,
) -> dict:
    """ERASER comprehensiveness / sufficiency / AOPC per rationale: "attention" (the model's own,
    prototype head only), "random", and every name in :data:`SCORERS` or ``scorers``; with the
    seconds per example each rationale took to compute."""
    eraser = _Eraser(model, tokenizer, removal, target, seed, batch_size, max_length, scorers)
    unknown = set(rationales) - {"attention", "random"} - set(eraser.scorers)
    if unknown:
        raise ValueError(f"unknown rationale(s) {sorted(unknown)}: not attention, random or {sorted(eraser.scorers)}")
    own = sorted({"attention", "contribution"} & set(rationales))
    # A linear head's "attention" is its fixed pooling, not an explanation. Models other than
    # ProtoLM (without is_prototype) are taken at their word: they return an "attention" of their own.
    if own and not getattr(model, "is_prototype", True):
        raise ValueError(
            f"rationale(s) {own} need the prototype head's attention pooling; this model has a linear head"
        )
    records = eraser.records(split, rationales)
    edits, owners = eraser.edits(records, bins)
    probs = _probabilities(model, tokenizer, edits, [records[r]["target"] for r, *_ in owners], batch_size)
    seconds = {name: s / max(1, len(records)) for name, s in eraser.seconds.items() if name in rationales}
    return {
        "examples": len(records),
        "by_rationale": _table(records, owners, probs, bins),
        "seconds_per_example": seconds,
    }
