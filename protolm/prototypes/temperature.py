"""Temperature scaling of the shipped model (Guo et al. 2017, "On calibration of modern neural
networks"): one scalar T, fitted on the selection split's labels after the last-layer phase, divides
every logit. It changes no prediction and no ranking (of classes, prototypes or tokens), only how
confident the probabilities are.

T is folded into the last layer (``W / T``, ``b / T``): logits are linear in it, so the checkpoint,
the export, the ONNX file and the server carry the temperature with no new parameter or code path.

Whether it helps is measured where it is fitted, without touching the reported split: the selection
split is cut in two halves (even and odd rows), T fitted on each is scored on the other, and the
mean cross-entropy with and without it is recorded (``cross_fitted``).
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

BOUNDS = (0.05, 20.0)  # T is searched in this range: a wider one only fits noise on small splits


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The T minimising the cross-entropy of ``logits / T`` against ``labels`` (a 1-D convex
    problem in log T, solved by golden-section search: exact to 1e-4 and deterministic)."""
    logits, labels = logits.double(), labels.long()

    def loss(log_t: float) -> float:
        return F.cross_entropy(logits / math.exp(log_t), labels).item()

    low, high = math.log(BOUNDS[0]), math.log(BOUNDS[1])
    ratio = (math.sqrt(5) - 1) / 2
    while high - low > 1e-4:
        a, b = high - ratio * (high - low), low + ratio * (high - low)
        if loss(a) <= loss(b):
            high = b
        else:
            low = a
    return math.exp((low + high) / 2)


def cross_fitted(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """The selection split's cross-entropy without and with a temperature fitted on the other half
    of it (two folds: even and odd rows), and the two folds' temperatures."""
    folds = [torch.arange(start, len(labels), 2) for start in (0, 1)]
    without = with_t = 0.0
    temperatures = []
    for fit_rows, score_rows in (folds, folds[::-1]):
        t = fit_temperature(logits[fit_rows], labels[fit_rows])
        temperatures.append(round(t, 4))
        share = len(score_rows) / len(labels)
        without += share * F.cross_entropy(logits[score_rows].double(), labels[score_rows].long()).item()
        with_t += share * F.cross_entropy(logits[score_rows].double() / t, labels[score_rows].long()).item()
    return {"ce_without": round(without, 5), "ce_with": round(with_t, 5), "fold_temperatures": temperatures}


@torch.no_grad()
def fold_into_last_layer(head, temperature: float) -> None:
    """Divide the head's logits by ``temperature`` for good: the last layer's weights (and bias)."""
    head.last_layer.weight.div_(temperature)
    if head.last_layer.bias is not None:
        head.last_layer.bias.div_(temperature)


def calibrate(head, logits: torch.Tensor, labels: torch.Tensor) -> dict:
    """Fit T on the selection split's ``logits`` and ``labels``, fold it into ``head``; the record
    results.json keeps (T, and the cross-fitted evidence)."""
    temperature = fit_temperature(logits, labels)
    fold_into_last_layer(head, temperature)
    return {"temperature": round(temperature, 4), "fitted_on": "selection split", **cross_fitted(logits, labels)}
