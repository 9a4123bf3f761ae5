"""Running a model outside Lightning's loops: eval mode, the trainer's precision, batches on its device.

Projection, health, faithfulness and explanations all pass data through the model between (or
after) training steps; these helpers are the one way they do it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch

# What the encoder reads from a batch; labels and example indices are the caller's business.
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def to_device(batch: dict, device, keys: Iterable[str] | None = None) -> dict:
    """The batch's tensors on ``device`` (only those named in ``keys``, when given)."""
    return {k: v.to(device) for k, v in batch.items() if keys is None or k in keys}


def _precision(model):
    # A model attached to a trainer runs under its precision plugin (e.g. bf16 autocast), so that a
    # pass outside the trainer's loops computes what its validation and test loops would.
    trainer = getattr(model, "_trainer", None)
    return trainer.precision_plugin.forward_context() if trainer is not None else contextlib.nullcontext()


@contextlib.contextmanager
def evaluating(model):
    """The model in eval mode (no dropout) under its trainer's precision; its mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        with _precision(model):
            yield model
    finally:
        model.train(was_training)


@torch.no_grad()
def outputs(model, batches: Iterable[dict]) -> Iterator[tuple[dict, dict]]:
    """(batch on the model's device, the model's output) for every batch, without gradients."""
    with evaluating(model):
        for batch in batches:
            batch = to_device(batch, model.device)
            yield batch, model(batch)
