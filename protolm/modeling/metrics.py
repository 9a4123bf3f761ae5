"""Task metrics (synchronised across processes by torchmetrics) and prototype usage counts."""

from __future__ import annotations

import torch
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import BinaryF1Score, MulticlassAccuracy, MulticlassF1Score, MulticlassMatthewsCorrCoef
from torchmetrics.regression import MeanSquaredError, PearsonCorrCoef, SpearmanCorrCoef


def task_metrics(num_classes: int, regression: bool, prefix: str) -> MetricCollection:
    if regression:
        metrics = {"pearson": PearsonCorrCoef(), "spearman": SpearmanCorrCoef(), "mse": MeanSquaredError()}
    else:
        metrics = {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "f1_macro": MulticlassF1Score(num_classes, average="macro"),
            "mcc": MulticlassMatthewsCorrCoef(num_classes),
        }
        if num_classes == 2:
            metrics["f1"] = BinaryF1Score()  # F1 of class 1, the GLUE MRPC convention
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
