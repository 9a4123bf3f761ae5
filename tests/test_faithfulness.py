"""Faithfulness metrics on models whose answer is known, and evaluate.py end to end."""

import json
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from protolm.config import read_settings
from protolm.data.datamodule import Split
from protolm.explanations.prototype_faithfulness import prototype_level
from protolm.explanations.token_faithfulness import token_level
from protolm.modeling.configuration_protolm import ProtoLMConfig
from protolm.modeling.inference import forward
from protolm.modeling.modeling_protolm import ProtoLMForSequenceClassification
from protolm.training.assemble import build_model, configured_head
from tests.support import run_here

KEYWORD = "excellent"


class KeywordEncoder(nn.Module):
    """Hidden state v = 3 e_0 on the keyword token, 0 on every other token."""

    def __init__(self, keyword_id: int, hidden: int = 8):
        super().__init__()
        self.config = SimpleNamespace(hidden_size=hidden)
        self.keyword_id = keyword_id
        self.register_buffer("v", 3.0 * torch.nn.functional.one_hot(torch.tensor(0), hidden).float())

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        return SimpleNamespace(last_hidden_state=(input_ids == self.keyword_id).float()[..., None] * self.v)


@pytest.fixture
def keyword_model(make_config, minilm_tokenizer):
    """Class 1 if and only if the keyword is present; attention peaks on the keyword."""
    # inv_l2: the known answers below are worked out from distances to the two prototypes.
    settings = read_settings(
        make_config("backbone=tiny", "head.num_prototypes=2", "head.prototype_init=random", "head.similarity=inv_l2")
    )
    encoder = KeywordEncoder(minilm_tokenizer.convert_tokens_to_ids(KEYWORD))
    head = configured_head(settings, encoder.config.hidden_size)
    labels = {"id2label": {0: "no", 1: "yes"}, "label2id": {"no": 0, "yes": 1}}
    config = ProtoLMConfig(encoder={}, head=head.architecture(), task="toy", **labels)
    model = ProtoLMForSequenceClassification(config, encoder=encoder, head=head).eval()
    with torch.no_grad():
        head = model.head
        head.pooling.proj.weight.copy_(torch.eye(8))
        head.pooling.proj.bias.zero_()
        head.pooling.context.weight.copy_(10 * torch.nn.functional.one_hot(torch.tensor(0), 8).float()[None])
        head.prototypes.copy_(torch.stack([torch.zeros(8), encoder.v]))
    return model


def split_of(texts, labels):
    return Split.from_lists("toy", "in memory", texts, None, labels, list(range(len(texts))))


SENTENCES = [
    f"the food was {KEYWORD} and the service friendly",
    f"{KEYWORD} value for a small family hotel",
    "the room was small and noisy at night",
    "nothing about the stay was memorable",
]


def loader(model, tokenizer, texts, labels):
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    return [
        {
            "input_ids": enc["input_ids"],
            "attention_mask": enc["attention_mask"],
            "labels": torch.tensor(labels),
            "index": torch.arange(len(texts)),
        }
    ]


def test_the_keyword_model_behaves_as_designed(keyword_model, minilm_tokenizer):
    batch = loader(keyword_model, minilm_tokenizer, SENTENCES, [1, 1, 0, 0])[0]
    with torch.no_grad():
        out = forward(keyword_model, batch)
    assert out["logits"].argmax(-1).tolist() == [1, 1, 0, 0]
    keyword_id = minilm_tokenizer.convert_tokens_to_ids(KEYWORD)
    top = out["attention"][:2].argmax(-1)
    assert batch["input_ids"][torch.arange(2), top].tolist() == [keyword_id, keyword_id]


def test_token_level_on_a_model_that_depends_on_one_known_token(keyword_model, minilm_tokenizer):
    result = token_level(
        keyword_model, minilm_tokenizer, split_of(SENTENCES[:2], [1, 1]), bins=[0.01, 0.5], removal="delete", seed=0
    )
    attention, random = result["by_rationale"]["attention"], result["by_rationale"]["random"]
    # The top token by attention is the keyword: deleting it flips the decision, keeping it suffices.
    assert attention["0.01"]["comprehensiveness"] > 0.99
    assert abs(attention["0.01"]["sufficiency"]) < 1e-3
    assert random["0.01"]["comprehensiveness"] < 0.5  # a random single token is rarely the keyword
    assert attention["aopc"]["comprehensiveness"] > random["aopc"]["comprehensiveness"]
    assert attention["aopc"]["sufficiency"] < random["aopc"]["sufficiency"]
    masked = token_level(keyword_model, minilm_tokenizer, split_of(SENTENCES[:2], [1, 1]), bins=[0.01], removal="mask")
    assert masked["by_rationale"]["attention"]["0.01"]["comprehensiveness"] > 0.99


def test_contribution_is_the_pooled_gradient_times_input_and_finds_the_keyword(keyword_model, minilm_tokenizer):
    from protolm.explanations.rationales import contribution_ranking

    batch = loader(keyword_model, minilm_tokenizer, SENTENCES, [1, 1, 0, 0])[0]
    targets = torch.tensor([1, 1, 0, 0])
    scores = contribution_ranking(keyword_model.eval(), batch, targets)
    # Its definition: d log p(target) / d s_t at s = 1, where token t's pooling weight is scaled by s_t.
    with torch.no_grad():
        hidden = keyword_model.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        pooled, alpha = keyword_model.head.pooling(hidden.last_hidden_state, batch["attention_mask"])
    scale = torch.ones_like(alpha, requires_grad=True)
    pooled = torch.einsum("bl,blh->bh", alpha * scale, hidden.last_hidden_state)
    logits = keyword_model.head.logits_from_similarities(keyword_model.head.similarities(pooled))
    torch.log_softmax(logits, -1).gather(1, targets[:, None]).sum().backward()
    torch.testing.assert_close(scores, scale.grad, rtol=1e-4, atol=1e-6)
    # Deleting the tokens it ranks first removes more of the decision than deleting random ones.
    result = token_level(
        keyword_model, minilm_tokenizer, split_of(SENTENCES, [1, 1, 0, 0]), bins=[0.1, 0.5], seed=0,
        rationales=("contribution", "random"),
    )  # fmt: skip
    contribution, random = result["by_rationale"]["contribution"], result["by_rationale"]["random"]
    assert contribution["aopc"]["comprehensiveness"] > random["aopc"]["comprehensiveness"]
    assert contribution["aopc"]["sufficiency"] < random["aopc"]["sufficiency"]


def test_prototype_level_known_answers(keyword_model, minilm_tokenizer):
    data = loader(keyword_model, minilm_tokenizer, SENTENCES, [1, 1, 0, 0])
    with torch.no_grad():
        full = torch.softmax(forward(keyword_model, data[0])["logits"], -1).max(-1).values
    result = prototype_level(keyword_model, data, ks=[1, 2], random_draws=5)
    everything = result["by_k"]["2"]  # k = all prototypes
    # Removing every prototype leaves all-zero logits (no bias): a uniform distribution.
    assert everything["comprehensiveness"] == pytest.approx(float((full - 0.5).mean()), abs=1e-6)
    assert everything["sufficiency"] == pytest.approx(0.0, abs=1e-7)  # keeping all changes nothing
    assert everything["random_sufficiency"] == pytest.approx(0.0, abs=1e-7)
    # Removing the one prototype that carries the decision leaves only the other one at distance
    # |v| = 3 (similarity 1/3, weights +1 / -0.5): the target probability becomes sigmoid(-0.5).
    one = result["by_k"]["1"]
    expected = float(full.mean()) - 1 / (1 + torch.exp(torch.tensor(0.5)).item())
    assert one["comprehensiveness"] == pytest.approx(expected, abs=2e-3)
    assert (
        one["random_comprehensiveness"] < one["comprehensiveness"]
    )  # a random prototype is the right one half the time


def test_evaluate_cli_writes_every_setting(tiny_run, tmp_path, capsys, monkeypatch):
    ckpt = tiny_run / "checkpoints" / "projected.ckpt"
    result = run_here(
        "protolm",
        "evaluate",
        f"model={ckpt}",
        "data.max_eval_samples=12",
        "faithfulness.random_draws=2",
        "faithfulness.prototype_ks=[1,2,5,8]",
        f"hydra.run.dir={tmp_path}",
        capsys=capsys,
        monkeypatch=monkeypatch,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads((tmp_path / "faithfulness.json").read_text())
    assert out["examples"] == 12 and out["split"] == "validation"
    assert out["settings"]["token_bins"] == [0.01, 0.05, 0.1, 0.2, 0.5] and out["settings"]["token_removal"] == "delete"
    # k = 8 is every prototype: removing them all measures nothing, so it is left out.
    assert out["settings"]["prototype_ks"] == [1, 2, 5] and out["settings"]["target"] == "predicted"
    assert set(out["token_level"]["by_rationale"]) == {"greedy_gates", "attention", "contribution", "random"}
    by_k = out["prototype_level"]["by_k"]
    assert set(by_k) == {"1", "2", "5"} and out["prototype_level"]["smallest_class_block"] == 4
    for k in ("1", "2"):
        assert isinstance(by_k[k]["random_same_class_comprehensiveness"], float)
        assert isinstance(by_k[k]["random_same_class_sufficiency"], float)
    # Five prototypes of one class do not exist (4 per class): no same-class baseline.
    assert by_k["5"]["random_same_class_comprehensiveness"] is None
    assert by_k["5"]["random_same_class_sufficiency"] is None
    table = (tmp_path / "faithfulness.md").read_text()
    assert "| attention |" in table
    assert "random k, same class" in table and "| 8 |" not in table
    assert any(line.startswith("| 5 |") and "n/a" in line for line in table.splitlines())


def test_integrated_gradients_rationale_when_captum_is_installed(tiny_loaded, tiny_run):
    pytest.importorskip("captum")
    dm = tiny_loaded.datamodule({"max_eval_samples": 4})
    result = token_level(
        tiny_loaded.model,
        tiny_loaded.tokenizer,
        dm.role_split("test"),
        bins=[0.1, 0.5],
        rationales=("attention", "random", "integrated_gradients"),
    )
    assert set(result["by_rationale"]) == {"attention", "random", "integrated_gradients"}


# ------------------------------------------------------------ same-class prototype baseline
class GivenSimilarities(nn.Module):
    """A model whose similarities come with the batch; the head's own last layer makes the logits."""

    device = torch.device("cpu")

    def __init__(self, head):
        super().__init__()
        self.head = head

    def forward(self, batch):
        sims = batch["similarities"].float()
        return {"similarities": sims, "logits": self.head.logits_from_similarities(sims)}


def given(rows, labels):
    """One batch of fixed similarities (4 prototypes: 0, 1 of class 0; 2, 3 of class 1)."""
    return [{"similarities": torch.tensor(rows, dtype=torch.float), "labels": torch.tensor(labels)}]


def sigmoid(x: float) -> float:
    return float(torch.sigmoid(torch.tensor(x, dtype=torch.float64)))


@pytest.mark.no_data
def test_same_class_baseline_shows_that_top_k_is_just_the_class_block():
    from protolm.modeling.head import PrototypeHead

    model = GivenSimilarities(PrototypeHead(4, 4, 2)).eval()  # weights +1 own class, -0.5 other
    # Both class-1 prototypes equally similar: logits (0, 3), the prediction is class 1.
    result = prototype_level(model, given([[1, 1, 2, 2]], [1]), ks=[1, 2, 3], random_draws=20)
    full = sigmoid(3)
    one, two, three = (result["by_k"][k] for k in ("1", "2", "3"))
    # Removing either class-1 prototype gives logits (1, 1): a random one of the class is exactly as
    # "important" as the top one, which the all-class baseline (that may remove a class-0 one) hides.
    assert one["comprehensiveness"] == pytest.approx(full - 0.5, abs=1e-6)
    assert one["random_same_class_comprehensiveness"] == pytest.approx(full - 0.5, abs=1e-6)
    assert one["random_same_class_sufficiency"] == pytest.approx(one["sufficiency"], abs=1e-6)
    assert one["random_comprehensiveness"] < one["comprehensiveness"]
    # k = the class block: top-k and the same-class draw both remove (keep) the whole block.
    assert two["comprehensiveness"] == pytest.approx(full - sigmoid(-3), abs=1e-6)
    assert two["random_same_class_comprehensiveness"] == pytest.approx(full - sigmoid(-3), abs=1e-6)
    assert two["sufficiency"] == pytest.approx(full - sigmoid(6), abs=1e-6)
    assert two["random_same_class_sufficiency"] == pytest.approx(full - sigmoid(6), abs=1e-6)
    # More prototypes than the class has: no same-class draw exists.
    assert three["random_same_class_comprehensiveness"] is None and three["random_same_class_sufficiency"] is None
    assert three["random_comprehensiveness"] is not None


@pytest.mark.no_data
def test_same_class_baseline_draws_from_the_target_class_only():
    from protolm.modeling.head import PrototypeHead

    model = GivenSimilarities(PrototypeHead(4, 4, 2)).eval()
    # Logits (0, 3): predicted class 1; removing prototype 2 gives (1.5, 0), prototype 3 gives (0.5, 2).
    rows, full = [[1, 1, 3, 1]] * 100, sigmoid(3)
    result = prototype_level(model, given(rows, [0] * 100), ks=[1], random_draws=20)["by_k"]["1"]
    expected = full - (sigmoid(-1.5) + sigmoid(1.5)) / 2  # the mean over the class's two prototypes
    assert result["comprehensiveness"] == pytest.approx(full - sigmoid(-1.5), abs=1e-6)
    assert result["random_same_class_comprehensiveness"] == pytest.approx(
        expected, abs=0.03
    )  # 2000 draws: 4 standard errors
    # target=true: the label, class 0, whose block is prototypes 0 and 1 (equal: either gives the same).
    true = prototype_level(model, given([[1, 1, 3, 1]], [0]), ks=[1], random_draws=5, target="true")["by_k"]["1"]
    # Class 0's probability sigmoid(-3); without prototype 0 or 1 the logits are (-1, 3.5).
    assert true["random_same_class_comprehensiveness"] == pytest.approx(sigmoid(-3) - sigmoid(-4.5), abs=1e-6)
    assert true["comprehensiveness"] == pytest.approx(sigmoid(-3) - sigmoid(-4.5), abs=1e-6)


# ---------------------------------------------------------------------- token bin sizes
class CountingModel(nn.Module):
    """P(class 1) = sigmoid(0.3 x the number of content tokens left); attention favours early tokens."""

    device = torch.device("cpu")

    def __init__(self, tokenizer):
        super().__init__()
        specials = [tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id, tokenizer.mask_token_id]
        self.register_buffer("specials", torch.tensor(specials))

    def forward(self, batch):
        ids, mask = batch["input_ids"], batch["attention_mask"].bool()
        content = mask & ~torch.isin(ids, self.specials)
        n = content.sum(-1).float()
        attention = content.float() / torch.arange(1, ids.shape[1] + 1)
        return {"logits": torch.stack([torch.zeros_like(n), 0.3 * n], -1), "attention": attention}


@pytest.mark.no_data
@pytest.mark.parametrize("removal", ["delete", "mask"])
def test_token_aopc_counts_each_distinct_bin_size_once(minilm_tokenizer, removal):
    text = "one two three four five six seven eight nine ten"
    assert len(minilm_tokenizer(text)["input_ids"]) == 12  # ten content tokens
    model = CountingModel(minilm_tokenizer).eval()
    result = token_level(model, minilm_tokenizer, split_of([text], [1]), bins=[0.01, 0.05, 0.5], removal=removal)
    by_bin = result["by_rationale"]["attention"]
    p = {n: sigmoid(0.3 * n) for n in range(11)}
    # 1 % and 5 % of ten tokens both round up to one token: the per-bin columns report it for each q...
    for q in ("0.01", "0.05"):
        assert by_bin[q]["comprehensiveness"] == pytest.approx(p[10] - p[9], abs=1e-6)
        assert by_bin[q]["sufficiency"] == pytest.approx(p[10] - p[1], abs=1e-6)
    assert by_bin["0.5"]["comprehensiveness"] == pytest.approx(p[10] - p[5], abs=1e-6)
    # ...but the AOPC averages over the distinct sizes {1, 5}, counting the top-1 token once.
    assert by_bin["aopc"]["comprehensiveness"] == pytest.approx(((p[10] - p[9]) + (p[10] - p[5])) / 2, abs=1e-6)
    assert by_bin["aopc"]["sufficiency"] == pytest.approx(((p[10] - p[1]) + (p[10] - p[5])) / 2, abs=1e-6)
    # ERASER's AOPC is the mean of the three bins' columns: the top-1 token counted for 1 % and 5 % alike.
    eraser = by_bin["aopc_eraser"]
    assert eraser["comprehensiveness"] == pytest.approx((2 * (p[10] - p[9]) + (p[10] - p[5])) / 3, abs=1e-6)
    assert eraser["sufficiency"] == pytest.approx((2 * (p[10] - p[1]) + (p[10] - p[5])) / 3, abs=1e-6)


def test_own_rationales_need_the_prototype_head(make_config, minilm_tokenizer):
    linear = build_model(read_settings(make_config("backbone=tiny", "head=linear"))).model
    for own in ("attention", "contribution"):
        with pytest.raises(ValueError, match=rf"rationale\(s\) \['{own}'\] need the prototype head"):
            token_level(linear, minilm_tokenizer, split_of(SENTENCES[:1], [1]), bins=[0.5], rationales=(own, "random"))


def test_top_share_is_the_top_three_contributions_over_the_positive_ones():
    from protolm import PrototypeHead
    from protolm.explanations.prototype_faithfulness import top_share

    head = PrototypeHead(4, 6, 2)  # prototypes 0-2 of class 0, 3-5 of class 1; weights +1 / -0.5
    sims = torch.tensor([[0.9, 0.5, 0.1, 0.2, 0.0, 0.4], [0.0, 0.0, 0.0, 0.6, 0.3, 0.1]])
    logits = head.logits_from_similarities(sims)
    # example 0 (class 0): contributions 0.9, 0.5, 0.1 and -0.1, 0, -0.2: top 3 = all the positive
    # example 1 (class 1): 0.6, 0.3, 0.1 positive, others 0: top 3 = all -> both 1.0
    assert top_share(head, sims, logits, 3) == pytest.approx(1.0)
    # top 1: 0.9 / 1.5 and 0.6 / 1.0
    assert top_share(head, sims, logits, 1) == pytest.approx((0.9 / 1.5 + 0.6 / 1.0) / 2)
