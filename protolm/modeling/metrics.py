"""Task metrics from the model's logits (synchronised across processes by torchmetrics), the
calibration of its probabilities, and prototype usage counts.

Every metric takes ``(logits, labels)``: accuracy, F1 and MCC of the predicted class; ``ece``, the
expected calibration error of the predicted class's probability (15 equal-width confidence bins,
L1: the mean over bins of |accuracy - confidence| weighted by the bin's share of examples); for a
regression, Pearson, Spearman and MSE of the single output.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import (
    BinaryF1Score,
    MulticlassAccuracy,
    MulticlassCalibrationError,
    MulticlassF1Score,
    MulticlassMatthewsCorrCoef,
)
from torchmetrics.regression import MeanSquaredError, PearsonCorrCoef, SpearmanCorrCoef

CALIBRATION_BINS = 15  # the common choice (Guo et al. 2017; torchmetrics' default)


class PositiveClassF1(BinaryF1Score):
    """F1 of class 1 (the GLUE MRPC convention) from two-class logits."""

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        super().update(logits.argmax(-1), target)


class CalibrationError(MulticlassCalibrationError):
    """Expected calibration error of softmax(logits): probabilities are formed here, never guessed
    from the values' range (logits that happen to lie in [0, 1] would otherwise pass as probabilities)."""

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        super().update(torch.softmax(logits.float(), -1), target)


def _of_the_output(metric: type[Metric]) -> type[Metric]:
    """``metric`` of a regression's single output (B x 1 logits)."""

    class OfTheOutput(metric):
        def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
            super().update(logits.squeeze(-1).float(), target.float())

    OfTheOutput.__name__ = metric.__name__
    return OfTheOutput


def task_metrics(num_classes: int, regression: bool, prefix: str) -> MetricCollection:
    if regression:
        kinds = {"pearson": PearsonCorrCoef, "spearman": SpearmanCorrCoef, "mse": MeanSquaredError}
        return MetricCollection({name: _of_the_output(kind)() for name, kind in kinds.items()}, prefix=prefix)
    metrics = {
        "acc": MulticlassAccuracy(num_classes, average="micro"),
        "f1_macro": MulticlassF1Score(num_classes, average="macro"),
        "mcc": MulticlassMatthewsCorrCoef(num_classes),
        "ece": CalibrationError(num_classes, n_bins=CALIBRATION_BINS, norm="l1"),
    }
    if num_classes == 2:
        metrics["f1"] = PositiveClassF1()
    return MetricCollection(metrics, prefix=prefix)


class PrototypeUsage(Metric):
    """How many prototypes are the nearest (most similar) prototype of at least one example."""

    full_state_update = False

    def __init__(self, num_prototypes: int):
        super().__init__()
        self.add_state("counts", default=torch.zeros(num_prototypes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, similarities: torch.Tensor) -> None:
        nearest = similarities.argmax(dim=1)
        self.counts += torch.bincount(nearest, minlength=self.counts.numel())

    def compute(self) -> torch.Tensor:
        return (self.counts > 0).sum()
