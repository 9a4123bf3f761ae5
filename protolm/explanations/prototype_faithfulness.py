"""Prototype-level faithfulness: remove the k prototypes contributing most to the target class
(comprehensiveness = drop in that class's probability) or keep only them (sufficiency), beside k
random prototypes of any class and k random prototypes of the target class. Higher
comprehensiveness and lower sufficiency than the baselines mean the prototypes shown carry the decision.
"""

from __future__ import annotations

import torch

from protolm.explanations.scores import KINDS, target_classes
from protolm.modeling.inference import outputs
from protolm.utils.progress import track


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
    net, dataloader, ks: list[int], random_draws: int = 10, seed: int = 0, target: str = "predicted"
) -> dict:
    """Comprehensiveness / sufficiency of the top-k contributing prototypes, beside two baselines.

    ``random_*``: k prototypes drawn from all P. Own-class last-layer weights are positive and the
    others negative, so for k up to the class block the top-k is the target class's block, and
    beating this baseline says little. ``random_same_class_*``: k prototypes drawn from the target
    class's block, which asks whether the ranking *within* the class matters. It is defined for k
    up to the smallest class block (P/C for equal blocks) and is None for larger k, where a draw
    of k prototypes of one class does not exist for every target class.
    """
    scored = (
        (out["similarities"], out["logits"], batch["labels"])
        for batch, out in outputs(net, track(dataloader, "prototype faithfulness"))
    )
    return prototype_level_of(net.head, scored, ks, random_draws, seed, target)


def prototype_level_of(head, scored, ks: list[int], random_draws: int = 10, seed: int = 0, target: str = "predicted"):
    """:func:`prototype_level` from ``scored``: (similarities, logits, labels) of each batch, however
    they were computed (a pass of the model, or the pooled embeddings the prototype stages share)."""
    ks = sorted({min(int(k), head.num_prototypes) for k in ks})
    weights = head.last_layer.weight.float()
    # Separate streams: the same-class draws leave the all-class baseline's draws unchanged.
    generators = (torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1))
    block = head.prototypes_per_class
    sums = {k: _empty_sums(k <= block) for k in ks}
    n, shares = 0, 0.0
    with torch.no_grad():
        for sims, logits, labels in scored:
            sims = sims.float()
            chosen = target_classes(logits, labels, target)
            ranked = torch.argsort(sims * weights[chosen], dim=1, descending=True)
            _add_batch(sums, _PrototypeScores(head, sims, chosen), ranked, random_draws, generators)
            shares += top_share(head, sims, logits, 3) * len(sims)
            n += len(sims)
    by_k = {str(k): {name: None if v is None else v / n for name, v in values.items()} for k, values in sums.items()}
    level = {"examples": n, "prototypes": head.num_prototypes, "smallest_class_block": block, "by_k": by_k}
    return level | {"top3_share": shares / max(1, n)}


def top_share(head, sims: torch.Tensor, logits: torch.Tensor, k: int = 3) -> float:
    """The mean share of the predicted class's positive evidence the top-k prototypes carry: the
    sum of the k largest contributions (similarity x weight to the predicted class) over the sum
    of the positive ones."""
    weights = head.last_layer.weight.float()[logits.argmax(-1)]
    contributions = sims.float() * weights
    top = contributions.topk(min(k, contributions.shape[1]), dim=1).values.clamp_min(0).sum(1)
    return float((top / contributions.clamp_min(0).sum(1).clamp_min(1e-12)).mean())
