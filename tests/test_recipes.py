"""Recipes beside the defaults: the released code's choices (experiment=reference_code), the
two-stage recipe (init.two_stage, init.from_checkpoint), and pruning inside a run."""

import json
import math

import pytest
import torch

from protolm.config import read_settings
from protolm.training.assemble import build_model, start_encoder_from
from protolm.training.optim import optimizer_and_schedule
from protolm.training.train import train
from protolm.utils.errors import CheckpointError, ConfigError
from tests.support import TINY


@pytest.mark.no_data
def test_reference_preset_sets_the_released_choices(make_config):
    settings = read_settings(make_config("backbone=tiny", "experiment=reference_code"))
    torch.manual_seed(0)
    model = build_model(settings)
    head = model.head
    assert head.last_layer.bias is not None  # the released last layer has a bias
    assert 0.7 < float(head.pooling.context.weight.detach().std()) < 1.3  # w ~ N(0, 1), not the Linear default
    # Prototypes ~ N(0, 1), kept as drawn: marked initialised, so fit start does not move them onto examples.
    assert 0.7 < float(head.prototypes.detach().std()) < 1.3 and bool(head.prototypes_initialized)
    assert head.eps == 1e-8 and model.objective.reference_signs
    assert settings.project.mode == "link"  # the released code has no projection
    configured = optimizer_and_schedule(model, model.optim, total_steps=100)
    groups = configured["optimizer"].param_groups
    assert {g["lr"] for g in groups} == {6e-3} and {g["weight_decay"] for g in groups} == {0.0}
    schedule = configured["lr_scheduler"]["scheduler"].lr_lambdas[0]
    assert [schedule(step) for step in (0, 50, 99)] == [1.0, 1.0, 1.0]  # no warm-up, no decay


@pytest.mark.no_data
def test_defaults_differ_from_the_reference_where_docs_say(make_config):
    model = build_model(read_settings(make_config("backbone=tiny")))
    assert model.head.last_layer.bias is None
    assert float(model.head.pooling.context.weight.detach().std()) < 0.3  # PyTorch's Linear default, scaled by width
    assert not model.objective.reference_signs


@pytest.mark.no_data
@pytest.mark.parametrize("head", ["prototype", "linear"])
def test_default_similarity_and_encoder_learning_rate_are_the_studys_choices(make_config, head):
    """Chosen by experiments/results/study_demo: cosine similarity, and under the prototype head the
    encoder trains at 2x optim.backbone_lr (the linear head keeps 1x; the head's own rate is unchanged)."""
    settings = read_settings(
        make_config("backbone=tiny", f"head={head}", "optim.backbone_lr=1e-4", "optim.head_lr=3e-3")
    )
    model = build_model(settings)
    groups = optimizer_and_schedule(model, model.optim, total_steps=10)["optimizer"].param_groups
    lrs = {g["name"].split("_")[0]: g["initial_lr"] for g in groups}  # before the warm-up factor
    assert lrs == {"backbone": 2e-4 if head == "prototype" else 1e-4, "head": 3e-3}
    if head == "prototype":
        assert model.head.similarity_kind == "cosine"
        # 25 prototypes per class (cpu_main_table), K half of them: 50 prototypes for SST-2, K = 12.
        assert (model.head.num_prototypes, model.objective.k) == (50, 12)
        # A replace projection is followed by three last-layer epochs fitting the probabilities the
        # model gave before projection (experiments/results/last_layer/: calibration kept).
        project = settings.project
        assert (project.mode, project.last_layer_epochs, project.last_layer_objective) == ("replace", 3, "distill")
        assert project.last_layer_sparsity == 0.0  # dense by default: the sparse layer costs SST-5 accuracy
        settings = read_settings(make_config("backbone=tiny", "optim.backbone_lr=1e-4", "head.encoder_lr_scale=1"))
        assert build_model(settings).optim.backbone_lr == 1e-4


def test_two_stage_recipe_fine_tunes_then_trains_the_prototype_head_on_that_encoder(make_config, tmp_path):
    results = train(make_config(*TINY, "init.two_stage=true", "head.num_prototypes=4", "trainer.max_epochs=1"))
    run = tmp_path / "run"
    first = json.loads((run / "first_stage" / "results.json").read_text())
    assert first["head"] == "linear" and results["head"] == "prototype"
    assert results["first_stage"]["metrics"] == first["metrics"] and "test/acc" in results["metrics"]
    assert results["config"]["init"]["from_checkpoint"] == str(run / "first_stage")
    assert json.loads((run / "results.json").read_text())["first_stage"]["head"] == "linear"
    # The second stage started from the first stage's fine-tuned encoder, not the pretrained one.
    settings = read_settings(make_config(*TINY, "head.num_prototypes=4"))
    fresh = build_model(settings)
    start_encoder_from(fresh, run / "first_stage")
    shipped = torch.load(first["shipped_checkpoint"], weights_only=True)["state_dict"]
    for name, value in fresh.encoder.state_dict().items():
        assert torch.equal(value, shipped[f"model.encoder.{name}"]), name


def test_from_checkpoint_refuses_another_architecture_and_unfinished_runs(make_config, tmp_path, tiny_run):
    other = build_model(read_settings(make_config(*TINY, "backbone.config_overrides.intermediate_size=96")))
    with pytest.raises(CheckpointError, match="does not fit this backbone"):
        start_encoder_from(other, tiny_run)
    with pytest.raises(CheckpointError, match=r"nor a finished run \(results.json\)"):
        start_encoder_from(other, tmp_path)


@pytest.mark.no_data
def test_two_stage_needs_the_prototype_head(make_config):
    with pytest.raises(ConfigError, match="init.two_stage=true"):
        read_settings(make_config("backbone=tiny", "head=linear", "init.two_stage=true"))


def test_pruning_in_a_run_keeps_k_within_the_pruned_head(make_config):
    """K follows the pruned head: with fewer prototypes left in a class than the configured K the
    evaluation after pruning still runs, and its cohesion and loss are finite."""
    results = train(
        make_config(*TINY, "head.num_prototypes=8", "loss.k_fraction=1.0", "prune.enabled=true", "prune.min_purity=1.0")
    )
    assert results["health"]["pruned"]["remaining"] < 8  # some class lost prototypes: fewer than K = 4 remain
    for key in ("test/cohesion", "test/loss", "val/loss"):
        assert math.isfinite(results["metrics"][key]), key
