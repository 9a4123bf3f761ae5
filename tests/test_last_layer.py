"""The last-layer phase after projection: what each objective fits, the sparse phase's structure, and
the gauge change it starts from. Synthetic features: no encoder, no task data."""

import pytest
import torch
from torch.nn import functional as F

from protolm import PrototypeHead
from protolm.config import ProjectConfig
from protolm.prototypes.features import Features
from protolm.prototypes.last_layer import (
    LastLayerPhase,
    block_diagonal,
    own_class_connections,
    phase_from_run,
    train_last_layer,
    unconnected,
)
from protolm.utils.errors import ConfigError

pytestmark = pytest.mark.no_data


def clustered(num_classes=3, per_class=200, hidden=16, seed=0) -> Features:
    """Examples scattered around one centre per class."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_classes, hidden, generator=g) * 2
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    pooled = centres[labels] + torch.randn(len(labels), hidden, generator=g)
    return Features("train", pooled, labels)


def head_on(features: Features, per_class=4, num_classes=3, seed=0) -> PrototypeHead:
    """A head whose prototypes sit on training examples of their class (a projected head)."""
    torch.manual_seed(seed)
    head = PrototypeHead(features.pooled.shape[1], per_class * num_classes, num_classes)
    with torch.no_grad():
        for p, c in enumerate(head.prototype_class.tolist()):
            members = (features.labels == c).nonzero().flatten()
            head.prototypes[p] = features.pooled[members[p % per_class]]
    return head


def phase(**changes) -> LastLayerPhase:
    return LastLayerPhase(**({"epochs": 3, "lr": 3e-3, "batch_size": 16} | changes))


def probabilities(head, features) -> torch.Tensor:
    with torch.no_grad():
        return head.logits_from_similarities(head.similarities(features.pooled)).softmax(-1)


def kl_to(teacher_logits, head, features) -> float:
    student = probabilities(head, features).clamp_min(1e-12).log()
    return float(F.kl_div(student, F.log_softmax(teacher_logits, -1), log_target=True, reduction="batchmean"))


def test_distill_fits_the_probabilities_before_projection_and_labels_fits_the_labels():
    features = clustered()
    lengths = [8] * len(features)
    head = head_on(features)
    with torch.no_grad():
        teacher = head.logits_from_similarities(head.similarities(features.pooled)) / 4  # a softer model
    start = {k: v.clone() for k, v in head.state_dict().items()}
    before = kl_to(teacher, head, features)
    train_last_layer(head, features, lengths, phase(objective="distill", epochs=5), teacher)
    distilled_kl, distilled_conf = kl_to(teacher, head, features), probabilities(head, features).max(-1).values
    head.load_state_dict(start)
    train_last_layer(head, features, lengths, phase(objective="labels", epochs=5))
    labels_kl, labels_conf = kl_to(teacher, head, features), probabilities(head, features).max(-1).values
    # distill moves toward the teacher's probabilities; labels moves away from them, to confidence
    assert distilled_kl < 0.3 * before, (before, distilled_kl)
    assert labels_kl > distilled_kl * 3
    assert labels_conf.mean() > distilled_conf.mean() + 0.05


def test_block_diagonal_keeps_every_probability_under_the_initial_layer():
    features = clustered()
    head = head_on(features)
    own = own_class_connections(head)
    before = probabilities(head, features)
    with torch.no_grad():
        head.last_layer.weight.copy_(block_diagonal(head.last_layer.weight, own))
    assert (head.last_layer.weight[~own] == 0).all()
    torch.testing.assert_close(probabilities(head, features), before, atol=1e-5, rtol=1e-4)


def test_a_sparse_phase_leaves_few_non_negative_own_class_connections_and_every_class_one():
    features = clustered(per_class=150)
    head = head_on(features, per_class=6)
    with torch.no_grad():
        teacher = head.logits_from_similarities(head.similarities(features.pooled))
    sparse = phase(objective="distill", epochs=10, lr=0.02, sparsity=0.05, refit_epochs=2)
    train_last_layer(head, features, [8] * len(features), sparse, teacher)
    weight, own = head.last_layer.weight.detach(), own_class_connections(head)
    assert (weight[~own] == 0).all() and (weight >= 0).all()
    live = (weight > 0).sum(1)
    assert (live >= 1).all() and int(live.sum()) < head.num_prototypes, live
    assert unconnected(head).tolist() == (weight == 0).all(0).tolist()
    accuracy = float((probabilities(head, features).argmax(-1) == features.labels).float().mean())
    assert accuracy > 0.9  # well-separated clusters stay classified by the few prototypes left


def test_the_phase_reads_its_settings_from_project_and_the_runs_training_settings():
    run = {"optim": {"head_lr": 0.01}, "data": {"batch_size": 24}, "loss": {"task": 0.5}, "seed": 7}
    found = phase_from_run(run, ProjectConfig(last_layer_epochs=2, last_layer_sparsity=0.01))
    assert (found.epochs, found.lr, found.batch_size, found.task_weight, found.seed) == (2, 0.01, 24, 0.5, 7)
    assert (found.objective, found.sparsity, found.refit_epochs) == ("distill", 0.01, 3)


def test_an_unknown_objective_names_the_key_and_the_choices():
    with pytest.raises(ConfigError, match=r"project.last_layer_objective.*labels.*distill"):
        ProjectConfig(last_layer_objective="kl")
    with pytest.raises(ConfigError, match="project.last_layer_sparsity"):
        ProjectConfig(last_layer_sparsity=-1)


def test_retraining_a_sparse_layer_with_keep_zeros_keeps_its_structure():
    features = clustered(per_class=100)
    head = head_on(features, per_class=4)
    with torch.no_grad():
        head.last_layer.weight.copy_(block_diagonal(head.last_layer.weight, own_class_connections(head)))
        head.last_layer.weight[0, 0] = 0.0  # one own-class connection cut as a sparse phase cuts them
        zeros = head.last_layer.weight == 0
        teacher = head.logits_from_similarities(head.similarities(features.pooled)) / 2
    train_last_layer(head, features, [8] * len(features), phase(objective="distill", keep_zeros=True), teacher)
    weight = head.last_layer.weight.detach()
    assert (weight[zeros] == 0).all() and not torch.equal(weight[~zeros], torch.zeros_like(weight[~zeros]))


def test_a_penalty_strong_enough_to_cut_every_connection_still_leaves_each_class_its_own_prototype():
    features = clustered(per_class=60)
    head = head_on(features, per_class=3)
    with torch.no_grad():
        teacher = head.logits_from_similarities(head.similarities(features.pooled))
    harsh = phase(epochs=3, lr=0.5, sparsity=50.0, refit_epochs=1)
    train_last_layer(head, features, [8] * len(features), harsh, teacher)
    weight, own = head.last_layer.weight.detach(), own_class_connections(head)
    for c in range(head.num_classes):
        assert ((weight[c] != 0) & own[c]).any() and (weight[c][~own[c]] == 0).all()
    assert not unconnected(head).all()
