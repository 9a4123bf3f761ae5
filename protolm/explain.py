"""Explanations of single predictions: the prediction, the words that mattered, the prototypes
(and their nearest training examples) that pushed the decision.
"""

from __future__ import annotations

import torch

from protolm.errors import CheckpointError, DataError


def require_projection(model, path) -> None:
    if not getattr(model, "is_prototype", False):
        raise CheckpointError(f"checkpoint {path} has a linear head: explanations need head=prototype")
    if not model.projection:
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
    if model.task_info.get("pair") and pairs is None:
        raise DataError(f"task {model.task_info['name']} classifies text pairs: give text_pair as well as text")
    labels = model.task_info.get("labels")
    weights = model.head.last_layer.weight.detach().float().cpu()  # C x P
    projected = {p["prototype_id"]: p for p in (model.projection or {}).get("prototypes", [])}
    results = []
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        chunk_pairs = pairs[start : start + batch_size] if pairs is not None else None
        args = (chunk, chunk_pairs) if chunk_pairs is not None else (chunk,)
        enc = tokenizer(
            *args,
            truncation=True,
            max_length=max_length,
            padding=True,
            return_offsets_mapping=True,
            return_tensors="pt",
        )
        batch = {
            k: v.to(model.device) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")
        }
        out = model(batch)
        logits = out["logits"].float().cpu()
        sims = out["similarities"].float().cpu()
        attention = out["attention"].float().cpu()
        for i, text in enumerate(chunk):
            pair = chunk_pairs[i] if chunk_pairs is not None else None
            words, special = merge_words(enc, i, attention[i], (text, pair))
            if model.regression:
                predicted, prediction, probs = 0, float(logits[i, 0]), None
            else:
                p = torch.softmax(logits[i], -1)
                predicted = int(p.argmax())
                prediction = labels[predicted]
                probs = {labels[c]: float(p[c]) for c in range(len(labels))}
            contribution = sims[i] * weights[predicted]
            order = torch.argsort(contribution, descending=True)[:top_k].tolist()
            prototypes = []
            for j in order:
                record = projected.get(j, {})
                c = int(model.head.prototype_class[j])
                prototypes.append(
                    {
                        "prototype_id": j,
                        "class": labels[c] if labels and not model.regression else c,
                        "similarity": float(sims[i, j]),
                        "contribution": float(contribution[j]),
                        "nearest_examples": [
                            {
                                "text": n["text"],
                                "text_pair": n.get("text_pair"),
                                "label": n["label_name"] if n.get("label_name") is not None else n["label"],
                                "similarity": n["similarity"],
                            }
                            for n in record.get("nearest", [])[:nearest]
                        ],
                    }
                )
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
                    "prototypes": prototypes,
                }
            )
    return results
