"""Faithfulness metrics on models whose answer is known, and evaluate.py end to end."""

import json
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from protolm.assemble import build_head, build_objective
from protolm.config import read_settings
from protolm.data.datamodule import Split
from protolm.faithfulness import prototype_level, token_level
from protolm.model import ProtoLM, TaskInfo
from tests.support import run_cli

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
    settings = read_settings(make_config("backbone=tiny", "head.num_prototypes=2", "head.prototype_init=random"))
    encoder = KeywordEncoder(minilm_tokenizer.convert_tokens_to_ids(KEYWORD))
    head = build_head(settings, encoder.config.hidden_size)
    model = ProtoLM(
        encoder,
        head,
        build_objective(settings, head),
        settings.optim,
        TaskInfo(name="toy", num_classes=2, regression=False, labels=["no", "yes"], pair=False),
    ).eval()
    with torch.no_grad():
        head = model.head
        head.pooling.proj.weight.copy_(torch.eye(8))
        head.pooling.proj.bias.zero_()
        head.pooling.context.weight.copy_(10 * torch.nn.functional.one_hot(torch.tensor(0), 8).float()[None])
        head.prototypes.copy_(torch.stack([torch.zeros(8), encoder.v]))
    return model


def split_of(texts, labels):
    return Split("toy", "in memory", texts, None, labels, list(range(len(texts))))


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
        out = keyword_model(batch)
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


def test_prototype_level_known_answers(keyword_model, minilm_tokenizer):
    data = loader(keyword_model, minilm_tokenizer, SENTENCES, [1, 1, 0, 0])
    with torch.no_grad():
        full = torch.softmax(keyword_model(data[0])["logits"], -1).max(-1).values
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


def test_evaluate_cli_writes_every_setting(tiny_run, tmp_path):
    ckpt = tiny_run / "checkpoints" / "projected.ckpt"
    result = run_cli(
        "evaluate.py",
        f"ckpt_path={ckpt}",
        "data.max_eval_samples=12",
        "faithfulness.random_draws=2",
        "faithfulness.prototype_ks=[1,2]",
        f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr
    out = json.loads((tmp_path / "faithfulness.json").read_text())
    assert out["examples"] == 12 and out["split"] == "validation"
    assert out["settings"]["token_bins"] == [0.01, 0.05, 0.1, 0.2, 0.5] and out["settings"]["token_removal"] == "delete"
    assert out["settings"]["prototype_ks"] == [1, 2, 8] and out["settings"]["target"] == "predicted"
    assert set(out["token_level"]["by_rationale"]) == {"attention", "random"}
    assert "| attention |" in (tmp_path / "faithfulness.md").read_text()


def test_integrated_gradients_rationale_when_captum_is_installed(tiny_loaded, tiny_run):
    pytest.importorskip("captum")
    from protolm.cli.tool import datamodule_for

    dm = datamodule_for(tiny_loaded, OmegaConf.create({"data": {"max_eval_samples": 4}}))
    result = token_level(
        tiny_loaded.model,
        tiny_loaded.tokenizer,
        dm.role_split("test"),
        bins=[0.1, 0.5],
        rationales=("attention", "random", "integrated_gradients"),
    )
    assert set(result["by_rationale"]) == {"attention", "random", "integrated_gradients"}
