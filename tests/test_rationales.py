"""The token rationales by name: the deletion gates equal the model's own pass and deleting tokens,
rank the token a model decides on first, and every name reaches explain, the command and the server."""

import pytest
import torch

from protolm.config.prototypes import RATIONALE_NAMES
from protolm.explanations.gates import gated_logits, greedy_gates_rationale
from protolm.explanations.rationales import DEFAULT_RATIONALE, RATIONALES, check_rationale
from protolm.modeling.inference import MODEL_INPUTS, forward
from protolm.utils.errors import ConfigError
from tests.test_faithfulness import KEYWORD, SENTENCES, keyword_model  # noqa: F401 - the fixture


def test_the_config_knows_every_rationale_and_the_default_is_the_gates():
    assert RATIONALE_NAMES == tuple(RATIONALES) and DEFAULT_RATIONALE == "greedy_gates"
    with pytest.raises(ConfigError, match="rationale='shap' is not one of: greedy_gates, gates"):
        check_rationale("shap")


def batch_of(clf, texts):
    enc = clf.tokenizer(texts, padding=True, return_tensors="pt", return_special_tokens_mask=True)
    return {k: enc[k] for k in (*MODEL_INPUTS, "special_tokens_mask") if k in enc}


def test_gated_pass_is_the_models_pass_and_a_deleted_suffix_is_a_shorter_input(tiny_loaded):
    net, batch = tiny_loaded.model, batch_of(tiny_loaded, ["a gorgeous , witty film", "dull"])
    with torch.no_grad():
        plain = forward(net, {k: batch[k] for k in MODEL_INPUTS if k in batch})["logits"].float()
        gated = gated_logits(net, batch, torch.zeros(batch["input_ids"].shape))
        torch.testing.assert_close(gated, plain, atol=1e-5, rtol=1e-4)
        # deleting the last three tokens of the first text (gate 0) = giving the text without them
        bias = torch.zeros(batch["input_ids"].shape)
        n = int(batch["attention_mask"][0].sum())
        bias[0, n - 3 : n] = torch.finfo(torch.float32).min
        shorter = {k: v[:1, : n - 3] for k, v in batch.items() if k in MODEL_INPUTS}
        torch.testing.assert_close(
            gated_logits(net, batch, bias)[0], forward(net, shorter)["logits"].float()[0], atol=1e-4, rtol=1e-4
        )


def test_greedy_gates_rank_the_keyword_the_model_decides_on_first(keyword_model, minilm_tokenizer):  # noqa: F811
    enc = minilm_tokenizer(SENTENCES[:2], padding=True, return_tensors="pt", return_special_tokens_mask=True)
    batch = {k: enc[k] for k in ("input_ids", "attention_mask", "special_tokens_mask")}
    scores = greedy_gates_rationale(keyword_model, batch, torch.ones(2, dtype=torch.long))
    keyword = minilm_tokenizer.convert_tokens_to_ids(KEYWORD)
    for i in range(2):
        assert batch["input_ids"][i, scores[i].argmax()] == keyword
        assert (scores[i][batch["special_tokens_mask"][i].bool()] == 0).all()  # special tokens are never ranked


@pytest.mark.parametrize("name", ["greedy_gates", "gates", "contribution", "attention", "occlusion"])
def test_every_rationale_fills_the_words_importance_in_explain(tiny_loaded, name):
    (e,) = tiny_loaded.explain(["a gorgeous , witty film"], rationale=name)
    assert e["rationale"] == name and len(e["importance"]) == len(e["tokens"]) == len(e["attention"])
    assert any(v != 0 for v in e["importance"])
    if name == "attention":
        assert e["importance"] == e["attention"]


def test_explain_defaults_to_the_gates_and_refuses_an_unknown_rationale(tiny_loaded):
    (e,) = tiny_loaded.explain(["a film"])
    assert e["rationale"] == "greedy_gates"
    with pytest.raises(ConfigError, match="rationale='ig' is not one of"):
        tiny_loaded.explain(["a film"], rationale="ig")
