"""What the faithfulness measures share: the two kinds of score and whose probability they read."""

from __future__ import annotations

import torch

KINDS = ("comprehensiveness", "sufficiency")


def target_classes(logits: torch.Tensor, labels: torch.Tensor, target: str) -> torch.Tensor:
    return logits.argmax(-1) if target == "predicted" else labels
