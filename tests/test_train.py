"""Training through the real entry point (the function run.py calls), on every task and head."""

import json

import pytest
import torch

from protolm.training.train import train
from protolm.utils.errors import ConfigError
from tests.support import TASKS, TINY

# QNLI and MNLI ship only dev files here: train on the dev file to exercise the plumbing.
LOCAL_TRAIN = {"qnli": ["task.local.train=qnli/dev.tsv"], "mnli": ["task.local.train=mnli/dev.jsonl"]}


@pytest.mark.parametrize("head", ["prototype", "linear"])
@pytest.mark.parametrize("task", TASKS)
def test_fast_dev_run_every_task_and_head(task, head, make_config):
    cfg = make_config(*TINY, f"task={task}", f"head={head}", "trainer.fast_dev_run=true", *LOCAL_TRAIN.get(task, []))
    results = train(cfg)
    metric = "pearson" if task == "biosses" else "acc"
    # (the -devsplit variants train on half of the dev file, so they need no override)
    assert f"test/{metric}" in results["metrics"] and f"val/{metric}" in results["metrics"]
    if head == "prototype" and task != "biosses":
        assert {"test/cohesion", "test/separation", "test/prototypes_used"} <= set(results["metrics"])
    saved = json.loads(
        (cfg.paths.output_dir and __import__("pathlib").Path(cfg.paths.output_dir) / "results.json").read_text()
    )
    assert saved["task"] == task and saved["head"] == head and saved["backbone"] == "tiny"
    assert saved["config"]["task"]["name"] == task


def test_results_json_and_checkpoints_of_a_short_run(make_config, tmp_path):
    cfg = make_config(*TINY, "trainer.max_epochs=2", "head.num_prototypes=6", "seed=7", "logger=csv")
    results = train(cfg)
    run = tmp_path / "run"
    saved = json.loads((run / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    for key in ("task", "backbone", "head", "num_prototypes", "seed", "metrics", "shipped_checkpoint", "config"):
        assert key in saved
    assert saved["num_prototypes"] == 6 and saved["seed"] == 7
    # What a finished run keeps: the full state to extend it and the shipped model's weights, nothing else.
    assert saved["selected_checkpoint"] is None  # the best before projection: removed (keep_intermediate=false)
    assert saved["shipped_checkpoint"] == str(run / "checkpoints" / "projected.ckpt")  # projected after selection
    assert (
        set(saved["checkpoints"])
        == {p.name for p in (run / "checkpoints").iterdir()}
        == {"last.ckpt", "projected.ckpt"}
    )
    assert "optimizer_states" in torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert "optimizer_states" not in torch.load(run / "checkpoints" / "projected.ckpt", weights_only=True)
    assert saved["splits"]["test"]["split"] == "validation" and saved["splits"]["val"]["split"] == "heldout"
    logged = (run / "csv" / "version_0" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/loss_epoch", "train/cohesion_epoch", "val/prototypes_used", "train/prototypes_used"} <= set(logged)
    # The checkpoint carries what is needed to rebuild the model offline, and loads weights-only.
    ckpt = torch.load(saved["shipped_checkpoint"], weights_only=True)
    meta = ckpt["protolm"]
    assert meta["model"]["head"]["num_prototypes"] == 6 and "tokenizer_config.json" in meta["tokenizer_files"]
    assert meta["training"]["config"]["head"]["num_prototypes"] == 6  # the run's config, as a record
    assert {"model.head.prototypes", "model.head.prototype_class"} <= set(ckpt["state_dict"])


def test_refuses_to_overwrite_a_finished_run(make_config, tmp_path):
    train(make_config(*TINY, "trainer.max_epochs=1", "head.num_prototypes=4"))
    with pytest.raises(ConfigError, match="holds a finished run .*overwrite=true"):
        train(make_config(*TINY, "trainer.max_epochs=1", "head.num_prototypes=4"))


def test_a_linear_run_ships_its_last_state_once_and_keeps_intermediates_only_when_asked(make_config, tmp_path):
    results = train(make_config(*TINY, "head=linear", "trainer.max_epochs=1"))
    ckpts = tmp_path / "run" / "checkpoints"
    # One epoch: the best checkpoint is the last state, so last.ckpt alone is kept and shipped.
    assert [p.name for p in ckpts.iterdir()] == ["last.ckpt"] and results["shipped_checkpoint"] == str(
        ckpts / "last.ckpt"
    )
    results = train(
        make_config(
            *TINY, "trainer.max_epochs=2", "callbacks.checkpoint.keep_intermediate=true", run_dir=tmp_path / "kept"
        )
    )
    kept = {p.name for p in (tmp_path / "kept" / "checkpoints").iterdir()}
    assert {"last.ckpt", "projected.ckpt"} < kept and results["selected_checkpoint"].endswith(".ckpt")
    assert "optimizer_states" not in torch.load(results["selected_checkpoint"], weights_only=True)  # weights only


def test_resume_from_last_continues_the_same_run(make_config, tmp_path):
    first = train(make_config(*TINY, "trainer.max_epochs=1", "head.num_prototypes=4"))
    assert first["epochs_completed"] == 1
    # A finished run is extended on purpose: more epochs, and overwrite=true for its results.
    resumed = train(
        make_config(*TINY, "trainer.max_epochs=2", "head.num_prototypes=4", "ckpt_path=last", "overwrite=true")
    )
    assert resumed["epochs_completed"] == 2 and resumed["global_step"] == 2 * first["global_step"]


def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(make_config, tmp_path, monkeypatch):
    from protolm.training.module import ProtoLM
    from protolm.utils.errors import TrainingDiverged

    train(make_config(*TINY, "trainer.max_epochs=1", "head.num_prototypes=4"))
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    good = torch.load(last, weights_only=True)["state_dict"]["model.head.prototypes"]
    original = ProtoLM.losses

    def poisoned(self, out, labels):
        terms = original(self, out, labels)
        if self.current_epoch >= 1:
            terms["loss"] = terms["loss"] * float("nan")
        return terms

    monkeypatch.setattr(ProtoLM, "losses", poisoned)
    with pytest.raises(TrainingDiverged, match="not finite at epoch 1.*last good checkpoint is kept"):
        train(make_config(*TINY, "trainer.max_epochs=2", "head.num_prototypes=4", "ckpt_path=last", "overwrite=true"))
    kept = torch.load(last, weights_only=True)["state_dict"]["model.head.prototypes"]
    assert torch.equal(kept, good)


@pytest.mark.parametrize(
    "override,message",
    [
        ("head.num_prototypes=5", "head.num_prototypes=5 must be a multiple of task sst2's 2 classes"),
        ("loss.cohesion=-1", "loss.cohesion=-1 must be a number in [0, inf)"),
        ("loss.k_fraction=1.5", "loss.k_fraction=1.5 must be a number in (0, 1]"),
        ("head.similarity=dot", "head.similarity='dot' is not one of: inv_l2, log_l2, cosine"),
        ("optim.warmup_ratio=1.2", "optim.warmup_ratio=1.2 must be a number in [0, 1)"),
        ("+trainer.max_epoch=3", "trainer: unknown key 'max_epoch' (did you mean 'max_epochs'?)"),
    ],
)
def test_bad_values_are_one_line_errors_naming_the_key(override, message, make_config):
    with pytest.raises(ConfigError) as err:
        train(make_config(*TINY, override))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_prototypes_start_on_training_examples_of_their_class(make_config, tmp_path):
    """train_embeddings init: each prototype equals the pooled embedding of a training example of its class."""
    from protolm.config import read_settings
    from protolm.modeling.backbone import load_tokenizer
    from protolm.training.assemble import build_datamodule, build_model, build_trainer

    cfg = make_config(*TINY, "head.num_prototypes=6", "trainer.max_steps=0", "data.max_train_samples=200")
    settings = read_settings(cfg)
    dm = build_datamodule(settings, load_tokenizer(settings.backbone))
    model = build_model(settings)
    trainer = build_trainer(settings, [], [], tmp_path)
    trainer.fit(model, datamodule=dm)
    assert bool(model.head.prototypes_initialized)
    model.eval()
    train_split = dm.role_split("train")
    pooled, labels = [], []
    with torch.no_grad():
        for batch in dm.dataloader("train"):
            pooled.append(model(batch)["pooled"])
            labels += [train_split.labels[i] for i in batch["index"].tolist()]
    pooled = torch.cat(pooled)
    for j, vector in enumerate(model.head.prototypes):
        distances = (pooled - vector).norm(dim=1)
        nearest = int(distances.argmin())
        assert distances[nearest] < 1e-4
        assert labels[nearest] == int(model.head.prototype_class[j])
