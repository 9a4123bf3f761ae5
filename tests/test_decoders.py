"""Decoder-only backbones (tiny randomly initialised Llama, Qwen2 and GPT-2 on a shipped 1,000-token
BPE tokenizer), with and without LoRA adapters, through the real entry points."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch
from torch import nn

from protolm.config import read_settings
from protolm.data.collate import PadCollator
from protolm.modeling.backbone import LORA_TARGETS, load_tokenizer
from protolm.serving.classifier import load
from protolm.training.assemble import build_model
from protolm.utils.errors import CheckpointError, ConfigError
from tests.support import BACKBONES, PROTOLM, run_cli

DECODERS = ["tiny-llama", "tiny-qwen2", "tiny-gpt2"]
SMALL = [
    "data.max_train_samples=64",
    "data.max_eval_samples=32",
    "data.batch_size=16",
    "data.max_length=48",
    "trainer.max_epochs=1",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
    "logger=none",
    "health.plot=false",
]


@pytest.fixture(scope="module")
def pretrained_llama(tmp_path_factory):
    """tiny-llama's architecture saved with weights, as a downloaded model directory would be."""
    from transformers import AutoConfig, AutoModel

    from protolm.config import asset

    L.seed_everything(11, verbose=False)
    folder = tmp_path_factory.mktemp("pretrained") / "tiny-llama"
    AutoModel.from_config(AutoConfig.from_pretrained(asset("tiny-decoders/llama"))).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, pretrained_llama):
    """LoRA on pretrained (not randomly initialised) weights: what a user of a hub model trains."""
    from protolm.training.train import train
    from tests.support import compose_config

    run = tmp_path_factory.mktemp("lora") / "run"
    pretrained = [f"backbone.pretrained={pretrained_llama}", "backbone.random_init=false"]
    train(compose_config(run, ["backbone=tiny-llama", "backbone.peft=lora", *pretrained, *SMALL]))
    return run


def settings_of(run) -> tuple[dict, object]:
    results = json.loads((run / "results.json").read_text())
    return results, read_settings(results["config"], check_trainer=False)


def test_lora_trains_only_the_adapters_and_the_head(lora_run):
    results, settings = settings_of(lora_run)
    L.seed_everything(settings.seed, verbose=False)  # as run.py does before building the model
    initial = build_model(settings)
    base = initial.encoder.get_base_model()
    targets = LORA_TARGETS["llama"]
    r = settings.backbone.lora.r
    # peft wraps each target Linear, keeping it as base_layer
    adapted = [m.base_layer for name, m in base.named_modules() if name.split(".")[-1] in targets]
    assert all(isinstance(m, nn.Linear) for m in adapted)
    adapters = sum(r * (m.in_features + m.out_features) for m in adapted)  # A: r x in, B: out x r
    head = sum(p.numel() for p in initial.head.parameters())
    assert len(adapted) == 2 * len(targets)  # every target in both layers
    assert results["parameters"]["trainable"] == adapters + head
    assert results["parameters"]["total"] == sum(p.numel() for p in initial.parameters())

    saved = torch.load(results["shipped_checkpoint"], weights_only=True)
    before = initial.state_dict()
    encoder_keys = [k for k in before if k.startswith("model.encoder.")]
    frozen = [k for k in encoder_keys if "lora_" not in k]
    # The checkpoint holds the adapters and the head; the frozen weights are read from backbone.pretrained.
    assert frozen and not set(frozen) & set(saved["state_dict"])
    assert saved["protolm"]["encoder"]["weights_from"] == settings.backbone.pretrained
    trained = {f"model.{k}": v for k, v in load(results["shipped_checkpoint"]).model.state_dict().items()}
    assert all(torch.equal(trained[k], before[k]) for k in frozen)
    lora_b = [k for k in encoder_keys if "lora_B" in k]
    assert lora_b and all(not torch.equal(trained[k], before[k]) for k in lora_b)  # B starts at 0, then learns
    assert all(torch.equal(saved["state_dict"][k], trained[k]) for k in lora_b)


def test_a_lora_checkpoint_without_its_pretrained_weights_says_where_it_looked(lora_run, pretrained_llama, tmp_path):
    results, _ = settings_of(lora_run)
    moved = pretrained_llama.with_name("moved")
    pretrained_llama.rename(moved)
    try:
        with pytest.raises(CheckpointError, match=f"read from {pretrained_llama}, which failed"):
            load(results["shipped_checkpoint"])
    finally:
        moved.rename(pretrained_llama)


@pytest.mark.slow  # two or more commands' start-ups; the default suite trains and loads LoRA already
def test_a_lora_run_explains_and_evaluates_from_its_checkpoint(lora_run, tmp_path):
    explained = run_cli(
        *PROTOLM, "explain", f"model={lora_run}", "text=a gorgeous film", f"hydra.run.dir={tmp_path / 'e'}"
    )
    assert explained.returncode == 0, explained.stderr[-2000:]
    record = json.loads((tmp_path / "e" / "explanations.jsonl").read_text().splitlines()[0])
    assert record["tokens"] == ["a", " gorgeous", " film"]  # byte-level BPE shown as the text's words
    evaluated = run_cli(*PROTOLM, "evaluate", f"model={lora_run}", f"hydra.run.dir={tmp_path / 'v'}")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]


@pytest.mark.slow  # two or more commands' start-ups; the default suite trains and loads LoRA already
def test_an_exported_lora_model_has_its_adapters_merged(lora_run, tmp_path):
    from safetensors import safe_open
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    import protolm  # noqa: F401  (registers the Auto classes)

    out = tmp_path / "model"
    result = run_cli(*PROTOLM, "export", f"model={lora_run}", f"out={out}", f"hydra.run.dir={tmp_path / 'log'}")
    assert result.returncode == 0, result.stderr[-2000:]
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert not [k for k in f.keys() if "lora_" in k or "base_model" in k]  # a plain Llama's weights
    texts = ["a gorgeous film", "dull and long", "the acting carries a thin plot"]
    exported = AutoModelForSequenceClassification.from_pretrained(out).eval()
    batch = AutoTokenizer.from_pretrained(out)(texts, padding=True, return_tensors="pt")
    reference = load(json.loads((lora_run / "results.json").read_text())["shipped_checkpoint"]).model
    with torch.no_grad():
        torch.testing.assert_close(exported(**batch).logits, reference(**batch).logits, atol=1e-5, rtol=1e-4)


def test_plan_counts_what_the_run_trains_and_leaves_nothing_behind(lora_run, tmp_path):
    results, _ = settings_of(lora_run)
    out = tmp_path / "plan"
    printed = run_cli("run.py", "backbone=tiny-llama", "backbone.peft=lora", "plan=true", f"hydra.run.dir={out}")
    assert printed.returncode == 0, printed.stderr[-2000:]
    rows = {line[:17].strip(): line[17:].split() for line in printed.stdout.splitlines()[2:5]}
    parameters, trainable = (int(v.replace(",", "")) for v in rows["LoRA"][:2])
    assert (parameters, trainable) == (results["parameters"]["total"], results["parameters"]["trainable"])
    assert rows["LoRA"][-1] == "run" and int(rows["full fine-tuning"][1].replace(",", "")) < parameters
    assert not out.exists()


@pytest.mark.parametrize("checkpointing", [False, True])
def test_every_adapter_gets_a_gradient_with_or_without_gradient_checkpointing(checkpointing, make_config):
    overrides = ["backbone=tiny-qwen2", "backbone.peft=lora", f"backbone.gradient_checkpointing={checkpointing}"]
    settings = read_settings(make_config(*overrides, "head.num_prototypes=4"))
    model = build_model(settings).train()
    tokenizer = load_tokenizer(settings.backbone)
    examples = [{"input_ids": tokenizer(t)["input_ids"]} for t in ("a good film", "bad")]
    batch = PadCollator(tokenizer.pad_token_id)(examples)
    model(batch)["logits"].sum().backward()
    adapters = [(n, p) for n, p in model.encoder.named_parameters() if "lora_B" in n]
    assert adapters and all(p.grad is not None and p.grad.abs().sum() > 0 for _, p in adapters)
    assert all(p.grad is None for n, p in model.encoder.named_parameters() if "lora_" not in n)


@pytest.mark.parametrize("backbone", DECODERS)
@pytest.mark.parametrize("head", ["prototype", "linear"])
def test_left_and_right_padding_give_the_same_logits(backbone, head, make_config):
    extra = ["head.num_prototypes=4"] if head == "prototype" else []
    settings = read_settings(make_config(f"backbone={backbone}", f"head={head}", *extra))
    L.seed_everything(0, verbose=False)
    model = build_model(settings).eval()
    tokenizer = load_tokenizer(settings.backbone)
    texts = ["a gorgeous , moving film", "dull", "the plot is thin but the acting carries it"]
    examples = [{"input_ids": tokenizer(t)["input_ids"]} for t in texts]
    right = PadCollator(tokenizer.pad_token_id)(examples)
    width = right["input_ids"].shape[1]
    pads = [width - len(e["input_ids"]) for e in examples]
    left = {
        "input_ids": torch.tensor([[tokenizer.pad_token_id] * p + e["input_ids"] for p, e in zip(pads, examples)]),
        "attention_mask": torch.tensor([[0] * p + [1] * len(e["input_ids"]) for p, e in zip(pads, examples)]),
    }
    assert pads != [0, 0, 0]
    with torch.no_grad():
        a, b = model(right)["logits"], model(left)["logits"]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.slow  # two or more commands' start-ups; the default suite trains and loads LoRA already
def test_a_tiny_decoder_fine_tunes_in_full_without_lora(tmp_path):
    result = run_cli("run.py", "backbone=tiny-qwen2", "head=linear", *SMALL, f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-2000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["parameters"]["trainable"] == results["parameters"]["total"]
    assert results["config"]["backbone"]["pooling"] == "last" and 0 <= results["metrics"]["test/acc"] <= 1


def test_decoders_pad_with_end_of_text(make_config):
    settings = read_settings(make_config("backbone=tiny-gpt2"))
    tokenizer = load_tokenizer(settings.backbone)
    assert tokenizer.pad_token == tokenizer.eos_token == "<|endoftext|>"
    assert build_model(settings).encoder.config.pad_token_id == tokenizer.pad_token_id


def test_the_real_decoder_configs_compose_and_fail_fast_offline(tmp_path):
    for name in ["gpt2", "llama-3.2-1b", "qwen2.5-0.5b", "qwen2.5-1.5b", "mistral-7b"]:
        assert name in BACKBONES
    result = run_cli("run.py", "backbone=qwen2.5-0.5b", "backbone.peft=lora", f"hydra.run.dir={tmp_path / 'r'}")
    assert result.returncode == 1
    assert "backbone qwen2.5-0.5b: cannot load 'Qwen/Qwen2.5-0.5B'" in result.stderr
    assert "backbone.pretrained=<local directory" in result.stderr


def test_qlora_without_cuda_is_one_line_that_says_why(make_config):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        build_model(
            read_settings(make_config("backbone=tiny-llama", "backbone.peft=lora", "backbone.quantization=4bit"))
        )
    with pytest.raises(ConfigError, match="backbone.peft=lora"):
        read_settings(make_config("backbone=tiny-llama", "backbone.quantization=4bit"))


def test_lora_with_frozen_layers_is_refused_not_ignored(make_config):
    with pytest.raises(ConfigError, match="already freezes every encoder weight"):
        read_settings(make_config("backbone=tiny-llama", "backbone.peft=lora", "optim.freeze_layers=1"))
    with pytest.raises(ConfigError, match="adapters train at backbone.lora.lr"):
        read_settings(make_config("backbone=tiny-llama", "backbone.peft=lora", "optim.backbone_lr=1e-4"))


# ------------------------------------------------------------------------- slow: learns, resumes
KEYWORD_TASK = """\
name: keyword
text_fields: [sentence]
label_field: label
labels: ["0", "1"]
local: {format: tsv, train: keyword/train.tsv, validation: keyword/dev.tsv, test: keyword/test.tsv}
select_on: validation
report_on: test
"""
FILLER = "the a film story plot actor scene music it was is and but with of this that some very movie script".split()


def keyword_task(root) -> list[str]:
    """A task a tiny random decoder can learn: 4-12 filler words with "good" (label 1) or "bad"
    (label 0) put in at a random place; 600 training, 200 selection and 200 test sentences. The
    overrides that point run.py at it."""
    import random

    rng = random.Random(0)
    (root / "data" / "keyword").mkdir(parents=True)
    for name, n in (("train", 600), ("dev", 200), ("test", 200)):
        lines = ["sentence\tlabel"]
        for _ in range(n):
            label = rng.randint(0, 1)
            words = [rng.choice(FILLER) for _ in range(rng.randint(4, 12))]
            words.insert(rng.randint(0, len(words)), "good" if label else "bad")
            lines.append(f"{' '.join(words)}\t{label}")
        (root / "data" / "keyword" / f"{name}.tsv").write_text("\n".join(lines) + "\n")
    (root / "conf" / "task").mkdir(parents=True)
    (root / "conf" / "task" / "keyword.yaml").write_text(KEYWORD_TASK)
    return ["task=keyword", f"data.data_dir={root / 'data'}", f"hydra.searchpath=[file://{root / 'conf'}]"]


LORA_KEYWORD = ["backbone=tiny-llama", "backbone.peft=lora", "data.batch_size=16", "logger=none"]
LORA_KEYWORD += ["trainer.accelerator=cpu", "trainer.enable_progress_bar=false", "health.plot=false"]


@pytest.mark.slow
def test_a_tiny_llama_with_lora_learns_the_keyword_task(tmp_path):
    task = keyword_task(tmp_path)
    result = run_cli("run.py", *LORA_KEYWORD, *task, "trainer.max_epochs=2", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tmp_path / "run" / "results.json").read_text())["metrics"]
    assert metrics["test/acc"] >= 0.9  # 1.0 after 3 epochs when this test was written; chance is 0.5


@pytest.mark.slow
def test_a_lora_run_stopped_mid_epoch_resumes_to_the_uninterrupted_result(tmp_path):
    task = keyword_task(tmp_path)
    exact = [*LORA_KEYWORD, *task, "trainer.max_epochs=2", "trainer.deterministic=true", "seed=5"]
    whole = run_cli("run.py", *exact, f"hydra.run.dir={tmp_path / 'whole'}")
    assert whole.returncode == 0, whole.stderr[-2000:]
    cut = run_cli(
        "tests/interrupt_at.py", *exact, f"hydra.run.dir={tmp_path / 'cut'}", env={"PROTOLM_TEST_SIGINT_AT_STEP": "20"}
    )
    assert cut.returncode == 130, cut.stderr[-2000:]
    resumed = run_cli("run.py", *exact, "ckpt_path=last", f"hydra.run.dir={tmp_path / 'cut'}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = (json.loads((tmp_path / run / "results.json").read_text()) for run in ("whole", "cut"))
    assert a["global_step"] == b["global_step"] and a["metrics"] == b["metrics"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "setting",
    [
        ["backbone=tiny-llama", "trainer.precision=bf16-mixed", "backbone.gradient_checkpointing=true"],
        ["backbone=tiny-gpt2", "trainer.strategy=ddp_spawn", "trainer.devices=2", "data.max_eval_samples=40"],
    ],
    ids=["bf16-checkpointing", "ddp"],
)
def test_lora_trains_under_bf16_with_gradient_checkpointing_and_under_ddp(setting, tmp_path):
    result = run_cli("run.py", *SMALL, "backbone.peft=lora", *setting, f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-2000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert 0 < results["parameters"]["trainable"] < results["parameters"]["total"] / 2
    assert 0 <= results["metrics"]["test/acc"] <= 1
