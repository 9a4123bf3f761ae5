"""Which of a run's metrics a person reads (a run's summary line, a model card): the reported and
selection figures, without the training objective's terms, keeping cross-entropy (``ce``) beside
accuracy and calibration error (``ece``): a reader of a score needs to know whether it is honest
(needs neither torch nor transformers)."""

from __future__ import annotations

SHOWN = ("test/", "val/", "unprojected/test/")
LOSS_TERMS = ("loss", "mse", "cohesion", "separation", "prototypes_used")


def shown_metrics(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k.startswith(SHOWN) and k.rsplit("/", 1)[1] not in LOSS_TERMS}
