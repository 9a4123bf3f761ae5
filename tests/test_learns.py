"""The packaged MiniLM with the prototype head learns SST-2 on the CPU in a couple of minutes."""

from protolm.train import train


def test_minilm_prototype_head_learns_sst2(make_config):
    # 3,000 training sentences, one epoch, 64 tokens: ~1 minute of training on 2 CPU cores.
    # Reported on the full 872-sentence SST-2 dev set (max_eval_samples=872 keeps all of it).
    cfg = make_config(
        "task=sst2",
        "backbone=minilm",
        "head=prototype",
        "logger=none",
        "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false",
        "trainer.max_epochs=1",
        "data.max_train_samples=3000",
        "data.max_eval_samples=872",
        "data.max_length=64",
        "health.at_end=false",
    )
    results = train(cfg)
    assert results["splits"]["test"] == {"split": "validation", "origin": "sst2/dev.tsv", "size": 872, "truncated": 0}
    assert results["metrics"]["test/acc"] >= 0.75, results["metrics"]
    assert results["metrics"]["test/prototypes_used"] >= 2  # both classes' prototypes are in play
