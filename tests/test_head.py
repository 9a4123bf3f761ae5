"""PrototypeHead: masking, equality with a naive per-example computation, finiteness, shapes."""

import pytest
import torch

from protolm import PrototypeHead
from protolm.modeling.head import SIMILARITIES, LinearHead

# Pure tensor and config checks: they run without the task data.
pytestmark = pytest.mark.no_data


def batch(b=4, length=7, h=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(b, length, h, generator=g)
    lengths = torch.tensor([length, 3, 5, 1][:b])
    mask = (torch.arange(length)[None, :] < lengths[:, None]).long()
    return hidden, mask


def naive(head: PrototypeHead, hidden, mask):
    """The reference code's loops, one example and one prototype at a time."""
    pooled, attention, sims = [], [], []
    for x, m in zip(hidden, mask):
        x = x[m.bool()]
        u = torch.tanh(head.pooling.proj(x))
        a = torch.softmax(head.pooling.context(u).squeeze(-1), dim=0)
        s = (a[:, None] * x).sum(0)
        row = []
        for p in head.prototypes:
            d = torch.sqrt(((s - p) ** 2).sum())
            if head.similarity_kind == "inv_l2":
                row.append(1 / (d + head.eps))
            elif head.similarity_kind == "log_l2":
                row.append(torch.log((d**2 + 1) / (d**2 + head.eps)))
            else:
                row.append(torch.dot(s, p) / (s.norm() * p.norm()))
        full = torch.zeros(m.shape[0])
        full[: len(a)] = a
        pooled.append(s), attention.append(full), sims.append(torch.stack(row))
    return torch.stack(pooled), torch.stack(attention), torch.stack(sims)


@pytest.mark.parametrize("similarity", SIMILARITIES)
def test_vectorised_head_equals_naive_loops(similarity):
    # Not seed 0: batch() draws from a generator seeded 0 too, and the head's prototypes would then
    # be the same numbers as a one-token example, a coincidence where the two computations are
    # meant to differ (the clamped square root, pinned by the test of an embedding on a prototype).
    torch.manual_seed(1)
    head = PrototypeHead(16, 6, 3, similarity=similarity)
    hidden, mask = batch()
    out = head(hidden, mask)
    pooled, attention, sims = naive(head, hidden, mask)
    torch.testing.assert_close(out["pooled"], pooled, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["attention"], attention, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out["similarities"], sims, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out["logits"], sims @ head.last_layer.weight.t(), atol=1e-4, rtol=1e-4)


def test_shapes_and_attention_masks_padding():
    head = PrototypeHead(16, 6, 2)
    hidden, mask = batch()
    out = head(hidden, mask)
    assert out["logits"].shape == (4, 2)
    assert out["similarities"].shape == (4, 6)
    assert out["pooled"].shape == (4, 16)
    assert out["attention"].shape == (4, 7)
    assert torch.all(out["attention"][mask == 0] == 0)
    torch.testing.assert_close(out["attention"].sum(-1), torch.ones(4))


def test_padding_does_not_change_the_result():
    """The same sentence padded to two widths gives the same pooled vector and logits."""
    head = PrototypeHead(16, 4, 2)
    hidden, mask = batch(b=2, length=7)
    garbage = hidden.clone()
    garbage[mask == 0] = 1e3  # whatever sits in padding positions must not leak in
    a, b = head(hidden, mask), head(garbage, mask)
    torch.testing.assert_close(a["pooled"], b["pooled"])
    short = head(hidden[:, :3], mask[:, :3])  # row 1 has length 3: cut the padding off
    torch.testing.assert_close(short["logits"][1], a["logits"][1])


@pytest.mark.parametrize("similarity", SIMILARITIES)
def test_similarity_finite_with_finite_gradient_when_embedding_sits_on_a_prototype(similarity):
    head = PrototypeHead(8, 2, 2, similarity=similarity)
    hidden = torch.randn(1, 1, 8)
    mask = torch.ones(1, 1, dtype=torch.long)
    with torch.no_grad():  # one token -> pooled == that token; put prototype 0 exactly there
        head.prototypes[0] = head(hidden, mask)["pooled"][0]
    out = head(hidden, mask)
    assert torch.isfinite(out["similarities"]).all()
    out["logits"].sum().backward()
    assert torch.isfinite(head.prototypes.grad).all()
    assert torch.isfinite(head.pooling.proj.weight.grad).all()
    if similarity != "cosine":  # the coincident prototype is the most similar one
        assert out["similarities"][0, 0] > out["similarities"][0, 1]


def test_last_layer_init_and_class_blocks():
    head = PrototypeHead(8, 6, 3, incorrect_class_weight=-0.5)
    assert head.prototype_class.tolist() == [0, 0, 1, 1, 2, 2]
    w = head.last_layer.weight
    assert w.shape == (3, 6)
    assert w[1, 2] == 1 and w[1, 3] == 1 and w[1, 0] == -0.5 and w[0, 5] == -0.5
    assert head.last_layer.bias is None


def test_prototypes_and_classes_travel_in_the_state_dict():
    head = PrototypeHead(8, 4, 2)
    state = head.state_dict()
    assert {"prototypes", "prototype_class", "prototypes_initialized"} <= set(state)
    other = PrototypeHead(8, 4, 2)
    other.load_state_dict(state)
    torch.testing.assert_close(other.prototypes, head.prototypes)


def test_removing_prototypes_changes_logits_only_through_them():
    head = PrototypeHead(8, 4, 2)
    sims = torch.rand(3, 4)
    keep = torch.tensor([True, False, True, True])
    expected = (sims * keep) @ head.last_layer.weight.t()
    torch.testing.assert_close(head.logits_from_similarities(sims, keep), expected)


def test_bad_arguments_name_the_key():
    with pytest.raises(ValueError, match="head.num_prototypes=5"):
        PrototypeHead(8, 5, 2)
    with pytest.raises(ValueError, match="head.similarity='dot'"):
        PrototypeHead(8, 4, 2, similarity="dot")


def test_regression_head_has_one_output_and_a_bias():
    head = PrototypeHead(8, 4, 1)
    hidden, mask = batch(h=8)
    assert head(hidden, mask)["logits"].shape == (4, 1)
    assert head.last_layer.bias is not None


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_linear_head_pools_as_configured(pooling):
    head = LinearHead(16, 2, pooling=pooling).eval()
    hidden, mask = batch()
    out = head(hidden, mask)
    if pooling == "cls":
        torch.testing.assert_close(out["pooled"], hidden[:, 0])
    else:
        expected = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        torch.testing.assert_close(out["pooled"], expected)
    assert out["logits"].shape == (4, 2)


def test_uniform_attention_init_starts_as_mean_pooling():
    """head.attention_init=uniform (w = 0): every real token weighs the same, padding nothing."""
    head = PrototypeHead(16, 4, 2, attention_init="uniform")
    hidden, mask = batch()
    out = head(hidden, mask)
    m = mask.float()
    torch.testing.assert_close(out["attention"], m / m.sum(-1, keepdim=True))
    torch.testing.assert_close(out["pooled"], (hidden * m[..., None]).sum(1) / m.sum(-1, keepdim=True))
    # The other initialisations do not pool by the mean.
    default = PrototypeHead(16, 4, 2, attention_init="torch")(hidden, mask)
    assert not torch.allclose(default["attention"], out["attention"])


@pytest.mark.no_data
def test_the_public_head_defaults_to_the_frameworks_choices():
    """PrototypeHead, used on its own, is the head a run builds by default (and the config's
    choices are the head's: head.py carries its own lists, as exported model code must)."""
    import inspect

    from protolm.config import PrototypeHeadConfig
    from protolm.config.model import ATTENTION_INITS, SIMILARITIES
    from protolm.modeling import head

    parameters = inspect.signature(head.PrototypeHead).parameters
    for name in ("similarity", "eps", "attention_init", "incorrect_class_weight", "last_layer_bias", "init_std"):
        assert parameters[name].default == getattr(PrototypeHeadConfig, name), name
    assert head.SIMILARITIES == SIMILARITIES and head.ATTENTION_INITS == ATTENTION_INITS
