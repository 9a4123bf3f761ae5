"""The packaged MiniLM with the prototype head learns SST-2 on the CPU: real data, real thresholds."""

import pytest

from protolm.training.train import train

BASE = [
    "task=sst2",
    "backbone=minilm",
    "head=prototype",
    "logger=none",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
    "trainer.max_epochs=1",
    "health.at_end=false",
]


def test_minilm_prototype_head_learns_a_little_sst2_quickly(make_config):
    # The default suite's check: 600 training sentences, 32 tokens, one epoch, projection and its
    # last-layer epoch included; selected on 300 held-out sentences, reported on a seeded 300 of SST-2 dev.
    cfg = make_config(
        *BASE,
        "data.max_train_samples=600",
        "data.max_eval_samples=300",
        "data.max_length=32",
    )
    results = train(cfg)
    assert results["splits"]["test"]["size"] == 300
    assert results["metrics"]["test/acc"] >= 0.70, results["metrics"]
    assert results["metrics"]["test/prototypes_used"] >= 2


@pytest.mark.slow  # about 2.5 minutes on 2 cores
def test_minilm_prototype_head_learns_sst2(make_config):
    # 3,000 training sentences, one epoch, 64 tokens, on the full 872-sentence SST-2 dev set
    # (max_eval_samples=872 keeps all of it).
    cfg = make_config(
        *BASE,
        "data.max_train_samples=3000",
        "data.max_eval_samples=872",
        "data.max_length=64",
    )
    results = train(cfg)
    assert results["splits"]["test"] == {"split": "validation", "origin": "sst2/dev.tsv", "size": 872, "truncated": 0}
    assert results["metrics"]["test/acc"] >= 0.75, results["metrics"]
    assert results["metrics"]["test/prototypes_used"] >= 2  # both classes' prototypes are in play
