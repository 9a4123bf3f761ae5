"""The task metrics read logits: calibration error by hand on a small case, and logits in [0, 1] are
not taken for probabilities."""

import math

import pytest
import torch

from protolm.modeling.metrics import CALIBRATION_BINS, task_metrics

pytestmark = pytest.mark.no_data


def logits_for(confidences: list[float], predicted: list[int]) -> torch.Tensor:
    """Two-class logits whose softmax gives ``confidences`` to the ``predicted`` class."""
    rows = []
    for p, c in zip(confidences, predicted):
        margin = math.log(p / (1 - p))
        rows.append([margin, 0.0] if c == 0 else [0.0, margin])
    return torch.tensor(rows)


def test_expected_calibration_error_by_hand_with_fifteen_bins():
    assert CALIBRATION_BINS == 15
    # Two bins used: 0.95 (three right, one wrong) and 0.62 (one right, one wrong).
    logits = logits_for([0.95, 0.95, 0.95, 0.95, 0.62, 0.62], [1, 1, 0, 0, 1, 0])
    labels = torch.tensor([1, 1, 0, 1, 1, 1])
    metrics = task_metrics(2, False, "test/")
    metrics.update(logits, labels)
    found = {k: float(v) for k, v in metrics.compute().items()}
    expected = 4 / 6 * abs(3 / 4 - 0.95) + 2 / 6 * abs(1 / 2 - 0.62)
    assert found["test/ece"] == pytest.approx(expected, abs=1e-5)
    assert found["test/acc"] == pytest.approx(4 / 6)
    # F1 of class 1: predicted 1 for three examples, all right; five true 1s -> P 1, R 0.6.
    assert found["test/f1"] == pytest.approx(2 * 0.6 / 1.6)


def test_logits_that_lie_in_zero_one_are_still_logits():
    logits = torch.tensor([[0.9, 0.1], [0.2, 0.8]])  # softmax: 0.69 and 0.65, not 0.9 and 0.8
    metrics = task_metrics(2, False, "")
    metrics.update(logits, torch.tensor([0, 1]))
    confidences = torch.softmax(logits, -1).max(-1).values
    assert float(metrics.compute()["ece"]) == pytest.approx(float((1 - confidences).mean()), abs=1e-5)
