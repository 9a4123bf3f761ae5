"""Padding token id lists into a batch of tensors, shared by the data loaders and faithfulness scoring."""

from __future__ import annotations

import torch

# Carried per example but not padded: they become one value per example in the batch.
PER_EXAMPLE = ("labels", "index")


class PadCollator:
    """Pads a batch to its longest sequence (or to ``pad_to`` when dynamic padding is off).

    Examples are dicts of token id lists (``input_ids``, optionally ``token_type_ids``); ``labels``
    and ``index`` are optional and, when the examples carry them, come back as 1-D tensors.
    """

    def __init__(self, pad_token_id: int, regression: bool = False, pad_to: int | None = None):
        self.pad_token_id, self.regression, self.pad_to = pad_token_id, regression, pad_to

    def __call__(self, examples: list[dict]) -> dict:
        width = self.pad_to or max(len(e["input_ids"]) for e in examples)
        batch = {}
        for key in examples[0]:
            if key in PER_EXAMPLE:
                continue
            pad = self.pad_token_id if key == "input_ids" else 0
            batch[key] = torch.tensor([e[key] + [pad] * (width - len(e[key])) for e in examples])
        batch["attention_mask"] = torch.tensor(
            [[1] * len(e["input_ids"]) + [0] * (width - len(e["input_ids"])) for e in examples]
        )
        if "labels" in examples[0]:
            dtype = torch.float32 if self.regression else torch.long
            batch["labels"] = torch.tensor([e["labels"] for e in examples], dtype=dtype)
        if "index" in examples[0]:
            batch["index"] = torch.tensor([e["index"] for e in examples])
        return batch
