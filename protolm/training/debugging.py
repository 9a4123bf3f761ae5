"""The debugging fine-tune after ``forbid`` (in the spirit of ProtoPDebug, Bontempelli et al. 2023):
a short training that makes the model stop relying on a concept a person marked as forbidden.

Two signals, each used when the concept gives it:

* **counterfactuals** (the concept is a phrase): the model should answer a text as the model before
  the edit answered the same text without the phrase. Training examples that contain the phrase are
  shown with it and fitted to the old model's probabilities on the text with the phrase removed; an
  equal number of other examples, of every class, get the phrase inserted at a random word boundary
  and are fitted to the old model's probabilities on them as they were. The phrase then carries no
  evidence for any class (the KL divergence to those targets, as the last-layer phase's ``distill``);
* **forgetting** (ProtoPDebug's forgetting loss): the mean over prototypes of their largest
  similarity to the concept's examples (pooled embeddings of the phrase itself and of any example
  texts given) is pushed down, so no prototype stays close to the concept.

The head (attention pooling, prototypes, last layer) learns at the run's head rate; the encoder only
when asked, at the run's backbone rate. The prototypes leave their training examples during this
fine-tune; the caller projects them again afterwards.
"""

from __future__ import annotations

import logging
import random
import re
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from protolm.modeling.inference import MODEL_INPUTS, encode_texts, evaluating, forward, to_device

log = logging.getLogger(__name__)


@dataclass
class DebuggingPhase:
    """How the debugging fine-tune runs (the edit command's ``forbid.*`` and the run's rates)."""

    epochs: int = 1
    head_lr: float = 3e-3
    encoder_lr: float = 1e-4
    tune_encoder: bool = False
    batch_size: int = 16
    forgetting: float = 1.0  # the forgetting term's weight (0: counterfactuals alone)
    max_examples: int = 2000  # examples with the phrase, plus as many with it inserted
    seed: int = 0


@dataclass
class Counterfactuals:
    """Training texts as shown to the model and the texts whose old probabilities they must match."""

    shown: list[str]
    target_texts: list[str]
    pairs: list[str] | None


def strip_phrases(text: str, patterns: list[re.Pattern]) -> str:
    for pattern in patterns:
        text = pattern.sub(" ", text)
    return re.sub(r"\s{2,}", " ", text).strip()


def insert_phrase(text: str, phrase: str, rng: random.Random) -> str:
    words = text.split(" ")
    at = rng.randint(0, len(words))
    return " ".join(words[:at] + [phrase] + words[at:])


def counterfactuals(texts, pairs, phrases: list[str], patterns: list[re.Pattern], phase: DebuggingPhase):
    """The fine-tune's examples: every one carrying a phrase (up to ``max_examples``) and as many
    others with a phrase inserted, in a seeded order. Without phrases (a concept given by example
    texts alone), a sample of ``max_examples`` examples fitted to the model's own probabilities: the
    forgetting term moves the prototypes while the answers stay."""
    rng = random.Random(phase.seed)
    carrying = [i for i, t in enumerate(texts) if any(p.search(t) for p in patterns)]
    taken = set(carrying)
    others = [i for i in range(len(texts)) if i not in taken]
    rng.shuffle(carrying), rng.shuffle(others)
    carrying = carrying[: phase.max_examples]
    if phrases:
        inserted = others[: max(len(carrying), min(len(others), phase.max_examples // 4))]
        shown = [texts[i] for i in carrying] + [insert_phrase(texts[i], rng.choice(phrases), rng) for i in inserted]
        targets = [strip_phrases(texts[i], patterns) for i in carrying] + [texts[i] for i in inserted]
    else:
        inserted = others[: phase.max_examples]
        shown = targets = [texts[i] for i in inserted]
    order = carrying + inserted
    log.info("debugging fine-tune: %d examples carrying the phrase, %d with it inserted", len(carrying), len(inserted))
    return Counterfactuals(shown, targets, [pairs[i] for i in order] if pairs is not None else None)


@torch.no_grad()
def old_log_probabilities(net, tokenizer, data: Counterfactuals, max_length: int, batch_size: int) -> torch.Tensor:
    """The model's log-probabilities on the target texts, before the fine-tune changes it."""
    parts = []
    with evaluating(net):
        for s in range(0, len(data.target_texts), batch_size):
            pairs = data.pairs[s : s + batch_size] if data.pairs is not None else None
            enc = encode_texts(tokenizer, data.target_texts[s : s + batch_size], pairs, max_length)
            logits = forward(net, to_device(enc, net.device, MODEL_INPUTS))["logits"]
            parts.append(F.log_softmax(logits.float(), -1).cpu())
    return torch.cat(parts)


def forgetting_loss(head, concept: torch.Tensor | None) -> torch.Tensor:
    """The mean over prototypes of their largest similarity to a concept example."""
    if concept is None or not len(concept):
        return torch.zeros((), device=head.prototypes.device)
    return head.similarities(concept.to(head.prototypes)).max(0).values.mean()


def trainable(net, phase: DebuggingPhase) -> list[dict]:
    """The parameter groups: the head at its rate, the encoder at its own when asked (else frozen)."""
    for p in net.encoder.parameters():
        p.requires_grad_(phase.tune_encoder)
    groups = [{"params": list(net.head.parameters()), "lr": phase.head_lr}]
    if phase.tune_encoder:
        groups.append({"params": list(net.encoder.parameters()), "lr": phase.encoder_lr})
    return groups


def debugging_fine_tune(net, tokenizer, data: Counterfactuals, concept, phase: DebuggingPhase, max_length: int):
    """Fine-tune ``net`` on the counterfactuals and the forgetting term; the mean loss of each epoch."""
    targets = old_log_probabilities(net, tokenizer, data, max_length, phase.batch_size * 2)
    optimizer = torch.optim.AdamW(trainable(net, phase), weight_decay=0.0)
    generator, losses = torch.Generator().manual_seed(phase.seed), []
    net.train()
    try:
        for _ in range(phase.epochs):
            order = torch.randperm(len(data.shown), generator=generator).tolist()
            total = 0.0
            for s in range(0, len(order), phase.batch_size):
                index = order[s : s + phase.batch_size]
                loss = _step_loss(net, tokenizer, data, targets, index, concept, phase, max_length)
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], 1.0)
                optimizer.step()
                total += loss.item() * len(index)
            losses.append(round(total / max(1, len(order)), 4))
    finally:
        net.eval()
        for p in net.encoder.parameters():
            p.requires_grad_(True)
    log.info("debugging fine-tune: %d epoch(s), loss %s", phase.epochs, losses)
    return losses


def _step_loss(net, tokenizer, data, targets, index, concept, phase, max_length) -> torch.Tensor:
    pairs = [data.pairs[i] for i in index] if data.pairs is not None else None
    enc = encode_texts(tokenizer, [data.shown[i] for i in index], pairs, max_length)
    logits = forward(net, to_device(enc, net.device, MODEL_INPUTS))["logits"].float()
    target = targets[index].to(logits.device)
    loss = F.kl_div(F.log_softmax(logits, -1), target, log_target=True, reduction="batchmean")
    return loss + phase.forgetting * forgetting_loss(net.head, concept)
