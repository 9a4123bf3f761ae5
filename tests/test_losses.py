"""The loss terms move prototypes the way docs/method.md ("Losses") says, for every similarity."""

import pytest
import torch

from protolm import PrototypeHead
from protolm.config import LossConfig
from protolm.modeling.head import SIMILARITIES
from protolm.modeling.losses import cohesion_separation
from protolm.utils.errors import ConfigError

# Pure tensor and config checks: they run without the task data.
pytestmark = pytest.mark.no_data


def setup(similarity, seed=0):
    torch.manual_seed(seed)
    head = PrototypeHead(8, 6, 2, similarity=similarity)  # 3 prototypes per class
    pooled = torch.randn(5, 8)
    labels = torch.tensor([0, 1, 0, 1, 1])
    return head, pooled, labels


def step_on(term: str, head, pooled, labels, k, reference_signs=False, lr=1e-2):
    """Similarities before and after one gradient step on the prototypes for one loss term."""
    before = head.similarities(pooled).detach()
    coh, sep = cohesion_separation(head.similarities(pooled), labels, head.prototype_class, k, reference_signs)
    (coh if term == "cohesion" else sep).backward()
    grad = head.prototypes.grad.clone()
    with torch.no_grad():
        head.prototypes -= lr * grad / grad.norm()
    return before, head.similarities(pooled).detach(), grad


def chosen(before, labels, prototype_class, k, term):
    """Mask of the (example, prototype) pairs each term acts on."""
    own = prototype_class[None, :] == labels[:, None]
    mask = torch.zeros_like(own)
    for i in range(len(labels)):
        if term == "cohesion":
            idx = torch.where(own[i])[0][before[i, own[i]].argsort()[:k]]
        else:
            idx = torch.where(~own[i])[0][before[i, ~own[i]].argsort(descending=True)[:k]]
        mask[i, idx] = True
    return mask


@pytest.mark.parametrize("similarity", SIMILARITIES)
def test_cohesion_raises_similarity_to_least_similar_own_class_prototypes(similarity):
    head, pooled, labels = setup(similarity)
    k = 1
    before, after, grad = step_on("cohesion", head, pooled, labels, k)
    mask = chosen(before, labels, head.prototype_class, k, "cohesion")
    gain = (after - before)[mask].sum()
    assert gain > 0, f"cohesion lowered the targeted similarities by {gain}"
    # Only prototypes chosen for some example receive gradient.
    touched = mask.any(0)
    assert torch.all(grad[~touched] == 0)


@pytest.mark.parametrize("similarity", SIMILARITIES)
def test_separation_lowers_similarity_to_most_similar_other_class_prototypes(similarity):
    head, pooled, labels = setup(similarity)
    k = 1
    before, after, grad = step_on("separation", head, pooled, labels, k)
    mask = chosen(before, labels, head.prototype_class, k, "separation")
    change = (after - before)[mask].sum()
    assert change < 0, f"separation raised the targeted similarities by {change}"
    assert torch.all(grad[~mask.any(0)] == 0)


@pytest.mark.parametrize("term", ["cohesion", "separation"])
def test_reference_signs_flip_the_direction(term):
    """The reference code's signs do the opposite of the stated intent (kept for comparison)."""
    head, pooled, labels = setup("inv_l2")
    before, after, _ = step_on(term, head, pooled, labels, 1, reference_signs=True)
    mask = chosen(before, labels, head.prototype_class, 1, term)
    change = (after - before)[mask].sum()
    assert (change < 0) if term == "cohesion" else (change > 0)


def test_terms_average_the_k_chosen_similarities():
    sims = torch.tensor([[0.9, 0.1, 0.5, 0.7], [0.2, 0.3, 0.8, 0.4]])
    classes = torch.tensor([0, 0, 1, 1])
    labels = torch.tensor([0, 1])
    coh, sep = cohesion_separation(sims, labels, classes, k=1)
    # example 0: least similar own = 0.1, most similar other = 0.7; example 1: 0.4 and 0.3
    assert coh.item() == pytest.approx(-(0.1 + 0.4) / 2)
    assert sep.item() == pytest.approx((0.7 + 0.3) / 2)
    coh2, sep2 = cohesion_separation(sims, labels, classes, k=2)
    assert coh2.item() == pytest.approx(-(0.9 + 0.1 + 0.8 + 0.4) / 4)
    assert sep2.item() == pytest.approx((0.5 + 0.7 + 0.2 + 0.3) / 4)


def test_regression_has_no_separation_term():
    sims = torch.rand(3, 4, requires_grad=True)
    coh, sep = cohesion_separation(
        sims, torch.zeros(3, dtype=torch.long), torch.zeros(4, dtype=torch.long), 2, with_separation=False
    )
    assert sep.item() == 0 and coh.item() < 0


@pytest.mark.parametrize(
    "given,per_class,k",
    [
        ({"k_fraction": 0.5}, 10, 5),
        ({"k_fraction": 0.05}, 10, 1),
        ({"k_fraction": 0.99}, 4, 3),
        ({"k_fraction": 1.0}, 10, 10),  # a fraction of 1 is every prototype of the class, never K = 1
        ({"k": 1}, 10, 1),
        ({"k": 3, "k_fraction": 0.9}, 10, 3),  # a count wins over the fraction
    ],
)
def test_k_from_a_count_or_a_fraction(given, per_class, k):
    assert LossConfig(**given).k_for(per_class) == k


@pytest.mark.parametrize(
    "given,key",
    [
        ({"k_fraction": 0}, "loss.k_fraction"),
        ({"k_fraction": -0.5}, "loss.k_fraction"),
        ({"k_fraction": 1.5}, "loss.k_fraction"),
        ({"k": 0}, "loss.k"),
        ({"k": 2.5}, "loss.k"),
    ],
)
def test_bad_k_is_refused_naming_the_key(given, key):
    with pytest.raises(ConfigError, match=key):
        LossConfig(**given)


def test_k_above_the_prototypes_per_class_is_refused():
    with pytest.raises(ConfigError, match=r"loss.k=11 must be at most the 10 prototypes per class"):
        LossConfig(k=11).k_for(10)


def test_model_objective_combines_terms_with_the_configured_weights(make_config):
    """Through ProtoLM.losses: weights multiply the terms, and cohesion alone pulls prototypes in."""
    from protolm.config import read_settings
    from protolm.training.assemble import build_model

    cfg = make_config("backbone=tiny", "loss.task=0", "loss.cohesion=1", "loss.separation=0")
    model = build_model(read_settings(cfg))
    pooled = torch.randn(4, model.head.hidden_size)
    sims = model.head.similarities(pooled)
    out = {"logits": model.head.logits_from_similarities(sims), "similarities": sims}
    terms = model.losses(out, torch.tensor([0, 1, 0, 1]))
    assert terms["loss"].item() == pytest.approx(terms["cohesion"].item())
    terms["loss"].backward()
    before = sims.detach()
    with torch.no_grad():
        model.head.prototypes -= 1e-2 * model.head.prototypes.grad
    after = model.head.similarities(pooled).detach()
    own = model.head.prototype_class[None, :] == torch.tensor([0, 1, 0, 1])[:, None]
    assert (after - before)[own].sum() > 0
