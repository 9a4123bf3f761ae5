"""Explanations of single predictions: the prediction, the words that mattered, the prototypes
(and their nearest training examples) that pushed the decision.
"""

from __future__ import annotations

import torch

from protolm.errors import CheckpointError, DataError
from protolm.inference import MODEL_INPUTS, to_device
from protolm.projection import projected_record


def require_projection(model, path) -> None:
    if not getattr(model, "is_prototype", False):
        raise CheckpointError(f"checkpoint {path} has a linear head: explanations need head=prototype")
    if model.projection is None:
        raise CheckpointError(
            f"checkpoint {path} has no prototype projection, so prototypes have no training examples to show. "
            f"Project it first: python project.py ckpt_path={path} (or train with project.at_end=true)"
        )


def merge_words(
    encoding, index: int, attention: torch.Tensor, texts: tuple[str, str | None]
) -> tuple[list[dict], float]:
    """Sum sub-word attention into words; returns the words and the attention on special tokens."""
    words, special = {}, 0.0
    offsets = encoding["offset_mapping"][index]
    for position, (word, segment) in enumerate(zip(encoding.word_ids(index), encoding.sequence_ids(index))):
        weight = float(attention[position])
        if word is None or segment is None:
            special += weight
            continue
        start, end = (int(x) for x in offsets[position])
        entry = words.setdefault((segment, word), {"segment": segment, "start": start, "end": end, "attention": 0.0})
        entry["start"], entry["end"] = min(entry["start"], start), max(entry["end"], end)
        entry["attention"] += weight
    merged = [{"word": texts[w["segment"]][w["start"] : w["end"]], **w} for _, w in sorted(words.items())]
    return merged, special


def _prediction(model, logits: torch.Tensor) -> tuple[int, str | float, dict | None]:
    """(predicted class index, prediction as shown, class probabilities) for one input's logits."""
    if model.regression:
        return 0, float(logits[0]), None
    labels = model.task_info.labels
    p = torch.softmax(logits, -1)
    predicted = int(p.argmax())
    return predicted, labels[predicted], {labels[c]: float(p[c]) for c in range(len(labels))}


def _prototypes(model, sims: torch.Tensor, weights: torch.Tensor, top_k: int, nearest: int) -> list[dict]:
    """The ``top_k`` prototypes contributing most (similarity x weight to the predicted class), each
    with its nearest training examples from the projection."""
    contribution = sims * weights
    labels = model.task_info.labels
    shown = []
    for j in torch.argsort(contribution, descending=True)[:top_k].tolist():
        record = projected_record(model, j)
        c = int(model.head.prototype_class[j])
        examples = [
            {
                "text": n.text,
                "text_pair": n.text_pair,
                "label": n.label_name if n.label_name is not None else n.label,
                "similarity": n.similarity,
            }
            for n in (record.nearest if record else [])[:nearest]
        ]
        shown.append(
            {
                "prototype_id": j,
                "class": labels[c] if labels and not model.regression else c,
                "similarity": float(sims[j]),
                "contribution": float(contribution[j]),
                "nearest_examples": examples,
            }
        )
    return shown


def _explain_batch(
    model, tokenizer, texts: list[str], pairs: list[str] | None, top_k: int, nearest: int, max_length: int
) -> list[dict]:
    args = (texts, pairs) if pairs is not None else (texts,)
    enc = tokenizer(
        *args,
        truncation=True,
        max_length=max_length,
        padding=True,
        return_offsets_mapping=True,
        return_tensors="pt",
    )
    out = model(to_device(enc, model.device, MODEL_INPUTS))
    logits, sims, attention = (out[k].float().cpu() for k in ("logits", "similarities", "attention"))
    weights = model.head.last_layer.weight.detach().float().cpu()  # C x P
    results = []
    for i, text in enumerate(texts):
        pair = pairs[i] if pairs is not None else None
        words, special = merge_words(enc, i, attention[i], (text, pair))
        predicted, prediction, probs = _prediction(model, logits[i])
        results.append(
            {
                "text": text,
                "text_pair": pair,
                "prediction": prediction,
                "probs": probs,
                "tokens": [w["word"] for w in words],
                "attention": [w["attention"] for w in words],
                "segments": [w["segment"] for w in words],
                "special_tokens_attention": special,
                "truncated": bool(enc.encodings[i].overflowing),
                "prototypes": _prototypes(model, sims[i], weights[predicted], top_k, nearest),
            }
        )
    return results


@torch.no_grad()
def explain(
    model,
    tokenizer,
    texts: list[str],
    pairs: list[str] | None = None,
    top_k: int = 3,
    nearest: int = 3,
    max_length: int = 512,
    batch_size: int = 16,
) -> list[dict]:
    """One explanation dict per input (the fields of explanations.jsonl)."""
    if not getattr(tokenizer, "is_fast", False):
        raise DataError("explanations need a fast (Rust) tokenizer to map sub-words to words")
    if model.task_info.pair and pairs is None:
        raise DataError(f"task {model.task_info.name} classifies text pairs: give text_pair as well as text")
    results = []
    for start in range(0, len(texts), batch_size):
        chunk_pairs = pairs[start : start + batch_size] if pairs is not None else None
        results += _explain_batch(
            model, tokenizer, texts[start : start + batch_size], chunk_pairs, top_k, nearest, max_length
        )
    return results
