"""Running a model outside Lightning's loops: eval mode, a precision context, batches on its device.

Projection, health, faithfulness, explanations and edits all pass data through the model between
(or after) training steps; these helpers are the one way they do it. ``net`` is a
:class:`~protolm.modeling.modeling_protolm.ProtoLMForSequenceClassification`; ``precision`` a
context manager factory for its passes (a training run's, e.g. bf16 autocast; else none).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable, Iterator

import torch

from protolm.modeling.modeling_protolm import ProtoLMForSequenceClassification, encode_and_classify

# What the encoder reads from a batch; labels and example indices are the caller's business.
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
Precision = Callable[[], contextlib.AbstractContextManager]
# Where a tokenizer cannot say where it stopped reading: a generous bound on characters per token.
SLOW_CHARS_PER_TOKEN = 16


def to_device(batch: dict, device, keys: Iterable[str] | None = None) -> dict:
    """The batch's tensors on ``device`` (only those named in ``keys``, when given)."""
    return {k: v.to(device) for k, v in batch.items() if keys is None or k in keys}


def encode_texts(tokenizer, texts: list[str], pairs: list[str] | None, max_length: int, **options):
    """Texts (and their pairs) as one padded batch of tensors, truncated to ``max_length`` tokens, as
    every inference path tokenizes them (``options``: e.g. ``return_offsets_mapping=True``)."""
    args = (texts, pairs) if pairs is not None else (texts,)
    return tokenizer(*args, truncation=True, max_length=max_length, padding=True, return_tensors="pt", **options)


def truncated_rows(enc) -> list[bool | None]:
    """Whether each text of an :func:`encode_texts` batch was cut to ``max_length`` (None where the
    tokenizer cannot tell: a slow, pure-Python one keeps no record of what it dropped)."""
    encodings = getattr(enc, "encodings", None)
    if not encodings:
        return [None] * len(enc["input_ids"])
    return [bool(encoding.overflowing) for encoding in encodings]


def read_parts(tokenizer, text: str, pair: str | None, max_length: int) -> tuple[str, str | None]:
    """The beginnings of ``text`` (and ``pair``) that a model reading ``max_length`` tokens sees: up
    to the end of the last token kept of each. A slow tokenizer gives no character offsets: then
    the first ``SLOW_CHARS_PER_TOKEN * max_length`` characters of each, a bound and not an exact cut."""
    if not getattr(tokenizer, "is_fast", False):
        cap = SLOW_CHARS_PER_TOKEN * max_length
        return text[:cap], (pair[:cap] if pair is not None else None)
    budget = SLOW_CHARS_PER_TOKEN * max_length
    while pair is None and budget < len(text):  # a single text: read a beginning of it, not megabytes
        enc = tokenizer(text[:budget], truncation=True, max_length=max_length, return_offsets_mapping=True)
        end = _read_ends(enc)[0]
        # Words are tokenized on their own: the kept tokens are the whole text's when the prefix was
        # cut too and a space separates them from the word the cut at `budget` split.
        if enc.encodings[0].overflowing and re.search(r"\s", text[end:budget]):
            return text[:end], None
        budget *= 4
    args = (text, pair) if pair is not None else (text,)
    ends = _read_ends(tokenizer(*args, truncation=True, max_length=max_length, return_offsets_mapping=True))
    return text[: ends[0]], (pair[: ends[1]] if pair is not None else None)


def _read_ends(enc) -> dict[int, int]:
    """{sequence (0: the text, 1: its pair): the character offset where its last kept token ends}."""
    ends = {0: 0, 1: 0}
    for (_, end), sequence in zip(enc["offset_mapping"], enc.sequence_ids()):
        if sequence is not None:
            ends[sequence] = max(ends[sequence], end)
    return ends


def forward(net, batch: dict) -> dict:
    """The head's outputs for a batch: ``logits``, ``attention`` over tokens, ``pooled`` and, for the
    prototype head, ``similarities`` (what the training module and every stage compute). A model that
    is not a ProtoLMForSequenceClassification (the training module, a stand-in) is called on the batch."""
    if not isinstance(net, ProtoLMForSequenceClassification):
        return net(batch)
    inputs = {k: batch[k] for k in MODEL_INPUTS if k in batch}
    return encode_and_classify(net.encoder, net.head, **inputs)


@contextlib.contextmanager
def evaluating(net, precision: Precision | None = None):
    """The model in eval mode (no dropout) under ``precision``; every module's mode is restored after."""
    modes = {module: module.training for module in net.modules()}
    net.eval()
    try:
        with (precision or contextlib.nullcontext)():
            yield net
    finally:
        for module, training in modes.items():
            module.training = training


@torch.no_grad()
def outputs(net, batches: Iterable[dict], precision: Precision | None = None) -> Iterator[tuple[dict, dict]]:
    """(batch on the model's device, the model's outputs) for every batch, without gradients."""
    with evaluating(net, precision):
        for batch in batches:
            batch = to_device(batch, net.device)
            yield batch, forward(net, batch)
