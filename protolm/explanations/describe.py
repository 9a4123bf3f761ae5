"""Explanations of single predictions: the prediction, the words that mattered, the prototypes
(and their nearest training examples) that pushed the decision.
"""

from __future__ import annotations

import torch

from protolm.explanations.rationales import DEFAULT_RATIONALE, check_rationale, token_scores
from protolm.modeling.inference import MODEL_INPUTS, encode_texts, evaluating, to_device
from protolm.modeling.saved import require_prototypes
from protolm.utils.errors import DataError


def merge_words(
    encoding, index: int, per_token: dict[str, torch.Tensor], texts: tuple[str, str | None]
) -> tuple[list[dict], dict[str, float]]:
    """Sum each per-token value (``per_token``: name -> L values, e.g. attention) over a word's
    sub-words; returns the words (each with every value) and each value's total on special tokens."""
    words, special = {}, dict.fromkeys(per_token, 0.0)
    offsets = encoding["offset_mapping"][index]
    for position, (word, segment) in enumerate(zip(encoding.word_ids(index), encoding.sequence_ids(index))):
        values = {name: float(v[position]) for name, v in per_token.items()}
        if word is None or segment is None:
            special = {name: special[name] + value for name, value in values.items()}
            continue
        start, end = (int(x) for x in offsets[position])
        entry = words.setdefault(
            (segment, word), {"segment": segment, "start": start, "end": end, **dict.fromkeys(values, 0.0)}
        )
        entry["start"], entry["end"] = min(entry["start"], start), max(entry["end"], end)
        for name, value in values.items():
            entry[name] += value
    merged = [{"word": texts[w["segment"]][w["start"] : w["end"]], **w} for _, w in sorted(words.items())]
    return merged, special


def prediction_of(config, logits: torch.Tensor) -> tuple[int, str | float, dict | None]:
    """(predicted class index, prediction as shown, class probabilities) for one input's logits
    (``config``: the model's ProtoLMConfig)."""
    if config.problem_type == "regression":
        return 0, float(logits[0]), None
    labels = config.id2label
    p = torch.softmax(logits, -1)
    predicted = int(p.argmax())
    return predicted, labels[predicted], {labels[c]: float(p[c]) for c in range(len(labels))}


def nearest_of(net, prototype_id: int) -> list[dict]:
    """A prototype's nearest training examples from the model's projection record (none: [])."""
    records = (net.prototypes or {}).get("prototypes", [])
    record = next((r for r in records if r["prototype_id"] == prototype_id), None)
    return record["nearest"] if record else []


def _prototypes(net, sims: torch.Tensor, weights: torch.Tensor, top_k: int, nearest: int) -> list[dict]:
    """The ``top_k`` prototypes contributing most (similarity x weight to the predicted class), each
    with its nearest training examples from the projection."""
    contribution = sims * weights
    regression = net.config.problem_type == "regression"
    shown = []
    for j in torch.argsort(contribution, descending=True)[:top_k].tolist():
        c = int(net.head.prototype_class[j])
        examples = [
            {
                "text": n["text"],
                "text_pair": n["text_pair"],
                "label": n["label_name"] if n["label_name"] is not None else n["label"],
                "similarity": n["similarity"],
            }
            for n in nearest_of(net, j)[:nearest]
        ]
        shown.append(
            {
                "prototype_id": j,
                "class": c if regression else net.config.id2label[c],
                "similarity": float(sims[j]),
                "contribution": float(contribution[j]),
                "nearest_examples": examples,
            }
        )
    return shown


def _explain_batch(net, tokenizer, texts: list[str], pairs: list[str] | None, settings: dict) -> list[dict]:
    enc = encode_texts(tokenizer, texts, pairs, settings["max_length"], return_offsets_mapping=True,
                       return_special_tokens_mask=True)  # fmt: skip
    batch = to_device(enc, net.device, (*MODEL_INPUTS, "special_tokens_mask"))
    with torch.no_grad():
        out = net(**{k: batch[k] for k in MODEL_INPUTS if k in batch})
    logits, sims, attention = (t.float().cpu() for t in (out.logits, out.similarities, out.token_attention))
    rationale = settings["rationale"]
    importance = attention if rationale == "attention" else token_scores(rationale, net, batch, logits.argmax(-1))
    weights = net.head.last_layer.weight.detach().float().cpu()  # C x P
    results = []
    for i, text in enumerate(texts):
        pair = pairs[i] if pairs is not None else None
        words, special = merge_words(enc, i, {"attention": attention[i], "importance": importance[i]}, (text, pair))
        predicted, prediction, probs = prediction_of(net.config, logits[i])
        results.append(
            {
                "text": text,
                "text_pair": pair,
                "prediction": prediction,
                "probs": probs,
                "tokens": [w["word"] for w in words],
                "attention": [w["attention"] for w in words],
                "rationale": rationale,
                "importance": [w["importance"] for w in words],
                "segments": [w["segment"] for w in words],
                "special_tokens_attention": special["attention"],
                "truncated": bool(enc.encodings[i].overflowing),
                "prototypes": _prototypes(net, sims[i], weights[predicted], settings["top_k"], settings["nearest"]),
            }
        )
    return results


@torch.no_grad()
def explain(
    net,
    tokenizer,
    texts: list[str],
    pairs: list[str] | None = None,
    top_k: int = 3,
    nearest: int = 3,
    max_length: int = 512,
    batch_size: int = 16,
    rationale: str = DEFAULT_RATIONALE,
) -> list[dict]:
    """One explanation dict per input (the fields of explanations.jsonl). ``net``: a
    ProtoLMForSequenceClassification with the prototype head. ``rationale``: which token rationale
    fills each word's ``importance`` (:data:`~protolm.explanations.rationales.RATIONALES`); each word
    also keeps its pooling ``attention``."""
    if not getattr(tokenizer, "is_fast", False):
        raise DataError("explanations need a fast (Rust) tokenizer to map sub-words to words")
    require_prototypes(net, "this model", "explanations")
    check_rationale(rationale, net)
    if net.config.text_pair and pairs is None:
        raise DataError(f"task {net.config.task} classifies text pairs: give text_pair as well as text")
    settings = {"top_k": top_k, "nearest": nearest, "max_length": max_length, "rationale": rationale}
    results = []
    with evaluating(net):
        for start in range(0, len(texts), batch_size):
            chunk_pairs = pairs[start : start + batch_size] if pairs is not None else None
            results += _explain_batch(net, tokenizer, texts[start : start + batch_size], chunk_pairs, settings)
    return results
