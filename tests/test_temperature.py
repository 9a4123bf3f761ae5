"""Temperature scaling after the last-layer phase (``project.temperature=selection``): the fit finds
the temperature that generated the data, folding it changes no prediction, and the shipped
checkpoint carries it."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from protolm.prototypes.temperature import calibrate, cross_fitted, fit_temperature
from tests.support import TINY


def sampled(temperature: float, n: int = 6000, classes: int = 3, seed: int = 0):
    """Logits, and labels drawn from softmax(logits / temperature): ``temperature`` is the right T."""
    generator = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(n, classes, generator=generator)
    labels = torch.multinomial(F.softmax(logits / temperature, -1), 1, generator=generator).squeeze(1)
    return logits, labels


@pytest.mark.no_data
@pytest.mark.parametrize("true_t", [0.5, 1.0, 2.5])
def test_the_fit_recovers_the_temperature_that_generated_the_labels(true_t):
    logits, labels = sampled(true_t)
    assert fit_temperature(logits, labels) == pytest.approx(true_t, rel=0.1)


@pytest.mark.no_data
def test_cross_fitting_shows_the_gain_on_held_out_halves_and_none_where_there_is_none():
    over = cross_fitted(*sampled(2.5))  # logits 2.5x too confident
    assert over["ce_with"] < over["ce_without"] - 0.05
    assert all(t == pytest.approx(2.5, rel=0.15) for t in over["fold_temperatures"])
    right = cross_fitted(*sampled(1.0))  # already calibrated: a temperature gains nothing
    assert abs(right["ce_with"] - right["ce_without"]) < 0.005


@pytest.mark.no_data
def test_folding_divides_the_logits_and_keeps_every_prediction():
    torch.manual_seed(0)
    head = torch.nn.Module()
    head.last_layer = torch.nn.Linear(6, 3, bias=True)
    similarities = torch.randn(50, 6)
    before = head.last_layer(similarities).detach()
    logits, labels = sampled(2.0, n=50)
    record = calibrate(head, logits, labels)
    after = head.last_layer(similarities).detach()
    assert torch.allclose(after, before / record["temperature"], rtol=1e-4, atol=1e-6)  # T recorded to 4 decimals
    assert torch.equal(after.argmax(-1), before.argmax(-1))
    assert {"temperature", "fitted_on", "ce_without", "ce_with", "fold_temperatures"} <= set(record)


def test_a_run_with_temperature_ships_calibrated_weights_and_records_the_fit(make_config):
    from protolm.prototypes.features import encode_split
    from protolm.serving.classifier import load
    from protolm.training.train import train

    results = train(make_config(*TINY, "head.num_prototypes=4", "project.temperature=selection",
                                "health.at_end=false"))  # fmt: skip
    fitted = results["projection"]["temperature"]
    assert fitted["fitted_on"] == "selection split" and fitted["temperature"] > 0
    # The shipped checkpoint already holds T: its selection logits need no further temperature.
    loaded = load(results["shipped_checkpoint"])
    val = encode_split(loaded.model, loaded.datamodule(), "val")
    logits = val.logits(loaded.model.head, loaded.model.device)
    assert fit_temperature(logits, val.labels) == pytest.approx(1.0, abs=0.01)
    assert results["metrics"]["val/ce"] == pytest.approx(F.cross_entropy(logits, val.labels).item(), abs=1e-4)
