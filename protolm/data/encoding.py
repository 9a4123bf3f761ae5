"""Encoding a split: tokenized in batches into an Arrow file, truncation counted, under a cache key
that holds everything its tokens depend on."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from protolm.config import DataConfig
from protolm.config.task import TaskSpec
from protolm.data.build import splits_needed
from protolm.data.cache import digest
from protolm.data.sources import source_of
from protolm.data.split import GROUP, TOKEN_KEYS, WRITE_BATCH, Split


def source_identities(spec: TaskSpec, name: str, data: DataConfig, sources: dict | None = None) -> dict[str, list]:
    """The identity of every file (or hub split) that split ``name`` is read or carved from or with."""
    carved = {c.split for c in spec.carve}
    needed = sorted(s for s in splits_needed(spec, [name]) if s not in carved)
    return {s: source_of(spec, s, data, sources)[0] for s in needed}


def role_key(
    spec: TaskSpec, name: str, count: int | None, data: DataConfig, tokenizer_id: str, sources: dict | None = None
) -> str:
    """The cache key of split ``name`` limited to ``count`` and encoded: everything its tokens depend on
    (``tokenizer_id``: :func:`~protolm.data.cache.tokenizer_identity` of the tokenizer; ``sources``:
    as :func:`source_of` keeps them)."""
    return digest(
        [
            "role",
            asdict(spec),
            name,
            source_identities(spec, name, data, sources),
            data.split_seed,
            count,
            tokenizer_id,
            data.max_length,
            *([data.shortcut_token, data.shortcut_class, data.shortcut_share] if data.shortcut_token else []),
        ]
    )


def encode(split: Split, tokenizer, max_length: int, path: Path) -> Split:
    """The split tokenized in batches into the Arrow file ``path``; truncation counted."""
    pair = split.pairs is not None

    def tokenize(batch: dict) -> dict:
        args = (batch["text"], batch["pair"]) if pair else (batch["text"],)
        enc, out = token_ids(tokenizer, args, max_length)
        out["length"] = [len(ids) for ids in enc["input_ids"]]
        out["truncated"] = truncated_flags(tokenizer, enc, args, max_length)
        return out

    dataset = split.dataset.map(
        tokenize,
        batched=True,
        remove_columns=[c for c in split.dataset.column_names if c.startswith(GROUP)],
        cache_file_name=str(path),
        load_from_cache_file=False,
        new_fingerprint=hashlib.sha256(str(path).encode()).hexdigest()[:16],  # not a hash of the tokenizer
        desc=f"tokenizing {split.name}",
    )
    encoded = Split(split.name, split.origin, dataset)
    encoded.truncated = sum(encoded.column("truncated"))
    return encoded


def token_ids(tokenizer, args: tuple, max_length: int) -> tuple[object, dict[str, list]]:
    """Texts (and pairs) tokenized as every split is, truncated to ``max_length``: the tokenizer's
    encoding and its id columns (``input_ids``, and ``token_type_ids`` where the tokenizer makes them)."""
    enc = tokenizer(*args, truncation=True, max_length=max_length, return_attention_mask=False)
    return enc, {key: enc[key] for key in enc.keys() if key in TOKEN_KEYS}


def truncated_flags(tokenizer, enc, args: tuple, max_length: int) -> list[bool]:
    """Which examples truncation cut: fast tokenizers record it; slow ones are asked again."""
    if getattr(enc, "encodings", None):
        return [bool(e.overflowing) for e in enc.encodings]
    # Only examples that reached the limit can have been cut: re-tokenize just those, untruncated.
    flags = [False] * len(enc["input_ids"])
    at_limit = [i for i, ids in enumerate(enc["input_ids"]) if len(ids) >= max_length]
    if at_limit:
        sub = [[texts[i] for i in at_limit] for texts in args]
        full = tokenizer(*sub, truncation=False, return_attention_mask=False)["input_ids"]
        for i, ids in zip(at_limit, full):
            flags[i] = len(ids) > max_length
    return flags


def examples_digest(split: Split) -> str:
    """A digest of the examples as used (texts, pairs, labels, in order), streamed over the table:
    the sha256 of each of the three JSON lists in turn, as ``json.dumps`` of whole lists writes them."""
    hasher = hashlib.sha256()
    for column in ("text", "pair", "label"):
        hasher.update(b"[")
        if column in split.dataset.column_names:
            first = True
            for batch in split.dataset.select_columns([column]).iter(batch_size=WRITE_BATCH):
                for value in batch[column]:
                    hasher.update(((", " if not first else "") + json.dumps(value, ensure_ascii=False)).encode())
                    first = False
        hasher.update(b"]")
    return hasher.hexdigest()
