"""A trained model as a transformers model: export.py, from_pretrained, pipelines, protolm.load."""

from __future__ import annotations

import json

import pytest
import torch

from protolm.serving.classifier import load as load_classifier
from protolm.serving.export import export_model
from protolm.utils.errors import ConfigError, DataError
from tests.support import PROTOLM, TINY, assert_clean_failure, compose_config, data_dir, run_cli, run_here

SENTENCES = ["a gripping , beautifully acted film", "dull and far too long", "it is what it is", "not bad at all"]


@pytest.fixture(scope="module")
def export_command(tiny_run, tmp_path_factory):
    """tiny_run exported through the command line with model.onnx, as a user would: (directory, what it said)."""
    out = tmp_path_factory.mktemp("export") / "model"
    args = [f"model={tiny_run}", f"out={out}", "onnx=true", f"hydra.run.dir={out.parent / 'log'}"]
    result = run_cli(*PROTOLM, "export", *args, env={"COLUMNS": "400"})  # long paths on one line each
    assert result.returncode == 0, result.stdout + result.stderr
    return out, result.stdout + result.stderr


@pytest.fixture(scope="module")
def exported(export_command):
    return export_command[0]


def sst2_train_texts() -> set[str]:
    lines = (data_dir() / "sst2" / "train.tsv").read_text().splitlines()[1:]
    return {line.split("\t")[0].strip() for line in lines}


def test_export_writes_a_transformers_model_directory(exported, tiny_loaded):
    names = {p.name for p in exported.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "prototypes.json", "README.md"} <= names
    assert {"modeling_protolm.py", "configuration_protolm.py", "head.py"} <= names
    config = json.loads((exported / "config.json").read_text())
    assert config["model_type"] == "protolm" and config["head_type"] == "prototype"
    assert config["id2label"] == {"0": "negative", "1": "positive"} and config["task"] == "sst2"
    assert (
        config["auto_map"]["AutoModelForSequenceClassification"] == "modeling_protolm.ProtoLMForSequenceClassification"
    )
    assert config["encoder"]["_name_or_path"] == tiny_loaded.training["config"]["backbone"]["pretrained"]  # not local
    prototypes = json.loads((exported / "prototypes.json").read_text())["prototypes"]
    assert len(prototypes) == tiny_loaded.model.head.num_prototypes
    card = (exported / "README.md").read_text()
    assert "sst2" in card and "test/acc" in card and "prototype 0" in card


def test_a_fresh_process_loads_the_export_with_the_checkpoints_logits(exported, tiny_run):
    """import protolm; AutoModelForSequenceClassification / pipeline / protolm.load on the directory."""
    script = f"""
import json, sys, torch, protolm
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline
from protolm.serving.classifier import load
texts = {SENTENCES!r}
model = AutoModelForSequenceClassification.from_pretrained({str(exported)!r})
enc = AutoTokenizer.from_pretrained({str(exported)!r})(texts, padding=True, return_tensors="pt")
reference = load({str(tiny_run / "checkpoints" / "projected.ckpt")!r})
with torch.no_grad():
    logits = model.eval()(**enc).logits
    expected = reference.model(**enc).logits
labels = [r["label"] for r in pipeline("text-classification", model={str(exported)!r})(texts)]
explained = protolm.load({str(exported)!r}).explain(texts[:2], top_k=2)
proto = pipeline("prototype-text-classification", model={str(exported)!r})(texts[0])
print(json.dumps({{
    "type": type(model).__name__,
    "max_diff": float((logits - expected).abs().max()),
    "labels": labels,
    "expected_labels": [reference.labels[i] for i in expected.argmax(-1).tolist()],
    "nearest": [n["text"] for e in explained for p in e["prototypes"] for n in p["nearest_examples"]],
    "pipeline": {{k: proto[k] for k in ("label", "score")}},
    "pipeline_prototypes": len(proto["prototypes"]), "pipeline_tokens": proto["tokens"],
}}))
"""
    result = run_cli("-c", script)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["type"] == "ProtoLMForSequenceClassification"
    assert found["max_diff"] <= 1e-5
    assert found["labels"] == found["expected_labels"]
    assert found["nearest"] and set(t.strip() for t in found["nearest"]) <= sst2_train_texts()
    assert found["pipeline"]["label"] == found["expected_labels"][0] and 0.5 <= found["pipeline"]["score"] <= 1
    assert found["pipeline_prototypes"] == 3 and found["pipeline_tokens"] == SENTENCES[0].split()


def test_remote_code_loads_the_export_without_protolm(exported, tmp_path):
    """trust_remote_code=True runs the exported modeling_protolm.py; protolm itself cannot be imported."""
    script = f"""
import sys; sys.modules["protolm"] = None  # as if protolm were not installed
import json, torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
model = AutoModelForSequenceClassification.from_pretrained({str(exported)!r}, trust_remote_code=True)
tokenizer = AutoTokenizer.from_pretrained({str(exported)!r}, trust_remote_code=True)
enc = tokenizer({SENTENCES!r}, padding=True, return_tensors="pt")
with torch.no_grad():
    print(json.dumps({{"module": type(model).__module__, "logits": model.eval()(**enc).logits.tolist()}}))
"""
    result = run_cli("-c", script, env={"HF_MODULES_CACHE": str(tmp_path / "modules")})
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["module"].startswith("transformers_modules.")
    here = load_classifier(exported)
    enc = here.tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = here.model(**enc).logits
    assert torch.allclose(torch.tensor(found["logits"]), expected, atol=1e-5)


def test_load_accepts_a_run_a_checkpoint_and_an_export_alike(exported, tiny_run):
    by_source = [load_classifier(p) for p in (tiny_run, tiny_run / "checkpoints" / "projected.ckpt", exported)]
    predictions = [clf.predict(SENTENCES, batch_size=3) for clf in by_source]
    assert predictions[0] == predictions[1]
    for row, other in zip(predictions[0], predictions[2]):
        assert row["prediction"] == other["prediction"]
        assert all(abs(row["probs"][k] - other["probs"][k]) < 1e-5 for k in row["probs"])
    row = predictions[0][0]
    assert set(row) == {"prediction", "probs", "truncated"} and set(row["probs"]) == {"negative", "positive"}
    assert abs(sum(row["probs"].values()) - 1) < 1e-6 and row["prediction"] == max(row["probs"], key=row["probs"].get)
    explanation = by_source[2].explain(SENTENCES[:1], top_k=2, nearest=1)[0]
    assert set(explanation) >= {"prediction", "probs", "tokens", "attention", "prototypes", "text", "text_pair"}
    assert len(explanation["prototypes"]) == 2 and len(explanation["prototypes"][0]["nearest_examples"]) == 1


def test_classifier_refuses_inputs_that_do_not_fit_the_model(exported, tmp_path):
    from protolm.utils.errors import CheckpointError

    for missing in (tmp_path / "nowhere", "./nowhere", "runs/x.ckpt"):
        with pytest.raises(CheckpointError):
            load_classifier(missing)
    with pytest.raises(CheckpointError, match="no such file or directory"):
        load_classifier(tmp_path / "nowhere")
    clf = load_classifier(exported)
    with pytest.raises(DataError, match="a list of strings"):
        clf.predict("one string")
    with pytest.raises(DataError, match="single texts: drop text_pairs"):
        clf.predict(["a"], text_pairs=["b"])
    for texts, index in ((["a", " \t\n"], 1), ([""], 0)):  # no words: no prediction worth giving
        for method in (clf.predict, clf.explain):
            with pytest.raises(DataError, match=rf"texts\[{index}\] is empty or only whitespace: there is nothing"):
                method(texts)
    with pytest.raises(DataError, match=r"texts\[0\] is NoneType, not a string"):
        clf.predict([None])
    clf.model.config.text_pair = True  # as a pair task's model would be
    with pytest.raises(DataError, match="give text_pairs"):
        clf.explain(["a"])
    with pytest.raises(DataError, match="2 texts but 1 text_pairs"):
        clf.predict(["a", "b"], text_pairs=["c"])
    with pytest.raises(DataError, match=r"text_pairs\[0\] is empty or only whitespace"):
        clf.predict(["a"], text_pairs=[" "])


def test_explaining_leaves_every_module_in_the_mode_it_had(tiny_loaded):
    """A training module mid-epoch (its encoder frozen in eval mode) explained, then training on."""
    from protolm.explanations.describe import explain

    model = tiny_loaded.model
    model.train()
    model.encoder.eval()
    try:
        modes = {name: m.training for name, m in model.named_modules()}
        explain(model, tiny_loaded.tokenizer, SENTENCES[:1])
        assert {name: m.training for name, m in model.named_modules()} == modes
    finally:
        model.eval()


@pytest.mark.no_data
def test_import_protolm_stays_light_and_registers_once_transformers_is_imported():
    script = """
import sys, protolm
light = "transformers.modeling_utils" not in sys.modules
from transformers import AutoConfig, AutoModelForSequenceClassification
from transformers.pipelines import PIPELINE_REGISTRY
tasks = PIPELINE_REGISTRY.get_supported_tasks()
print(light, AutoConfig.for_model("protolm").model_type, "prototype-text-classification" in tasks)
"""
    result = run_cli("-c", script)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["True", "protolm", "True"]


def test_training_module_and_transformers_model_are_one_model(tiny_loaded):
    """The training module holds the transformers model itself (no copy), so both compute the same thing."""
    from protolm.config import OptimConfig
    from protolm.training.module import ProtoLM

    net = tiny_loaded.model
    model = ProtoLM(net, objective=None, optim=OptimConfig())
    assert model.model is net and model.head is net.head and model.encoder is net.encoder
    assert {k.removeprefix("model.") for k in model.state_dict() if k.startswith("model.")} == set(net.state_dict())
    enc = tiny_loaded.tokenizer(SENTENCES, padding=True, return_tensors="pt")
    net.eval()
    with torch.no_grad():
        out, expected = net(**enc), model(dict(enc))
    assert torch.equal(out.logits, expected["logits"]) and torch.equal(out.similarities, expected["similarities"])
    assert torch.equal(out.token_attention, expected["attention"])
    labels = torch.tensor([0, 1, 0, 1])
    assert torch.isclose(net(**enc, labels=labels).loss, torch.nn.functional.cross_entropy(out.logits, labels))


def test_export_replaces_only_an_earlier_export_and_only_when_asked(tiny_loaded, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    for overwrite in (False, True):  # a directory that is not an export is never deleted
        with pytest.raises(ConfigError, match="not empty and holds no exported model"):
            export_model(tiny_loaded, out, overwrite=overwrite)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    earlier = export_model(tiny_loaded, tmp_path / "model")
    with pytest.raises(ConfigError, match="already holds an exported model; .* pass overwrite=true"):
        export_model(tiny_loaded, earlier)
    assert export_model(tiny_loaded, earlier, overwrite=True) == earlier and (earlier / "config.json").is_file()
    assert not list(tmp_path.glob(".*.tmp-*"))


def test_push_to_hub_without_the_hub_fails_fast_and_writes_nothing(tiny_run, tmp_path, capsys, monkeypatch):
    out = tmp_path / "model"
    args = [f"model={tiny_run}", f"out={out}", "push_to_hub=true", "repo_id=someone/model"]
    here = {"capsys": capsys, "monkeypatch": monkeypatch, "env": {"HF_HUB_OFFLINE": "1"}}
    result = run_here("protolm", "export", *args, f"hydra.run.dir={tmp_path / 'log'}", **here)
    assert_clean_failure(result, "hub cannot be reached", "nothing was uploaded")
    assert len((result.stdout + result.stderr).strip().splitlines()) == 1
    assert not out.exists()


def test_a_linear_model_exports_and_predicts_but_does_not_explain(tmp_path):
    from protolm.training.train import train
    from protolm.utils.errors import CheckpointError

    run = tmp_path / "linear"
    train(compose_config(run, [*TINY, "head=linear", "trainer.max_epochs=1"]))
    out = export_model(load_classifier(run), tmp_path / "model")
    assert not (out / "prototypes.json").exists()
    clf = load_classifier(out)
    assert clf.model.config.head_type == "linear" and len(clf.predict(SENTENCES)) == len(SENTENCES)
    with pytest.raises(CheckpointError, match="linear head"):
        clf.explain(SENTENCES)


@pytest.mark.no_data
def test_meta_device_construction_needs_no_tensor_values():
    """transformers builds models on the meta device before loading weights: the head must build there."""
    from protolm.modeling.head import PrototypeHead

    with torch.device("meta"):
        head = PrototypeHead(8, num_prototypes=4, num_classes=2, prototype_class=[0, 1, 1, 0])
    assert head.prototypes.is_meta and head.num_prototypes == 4
    assert PrototypeHead(8, num_prototypes=4, num_classes=2).prototype_class.tolist() == [0, 0, 1, 1]


def test_onnx_export_says_one_line_and_asks_nothing(export_command):
    """The exporter's ~150 lines of passes and rewrites are turned down; loading the exported tokenizer
    does not ask whether to trust the directory's code (protolm's own loaders need none of it)."""
    out, said = export_command
    lines = [line for line in said.splitlines() if line.strip() and not line.startswith("Writing model shards")]
    size = (out / "model.onnx").stat().st_size / 1e6
    assert len(lines) == 2 and lines[0].startswith("exported ") and lines[0].endswith(f" to {out}"), said
    assert lines[1] == f"wrote {out / 'model.onnx'} ({size:.1f} MB; run it with onnxruntime)"
    assert "custom code" not in said and "[torch.onnx]" not in said and "onnx_ir" not in said


def test_commands_load_an_export_without_asking_to_trust_its_code(exported, tmp_path):
    result = run_cli(*PROTOLM, "explain", f"model={exported}", "text=a fine film", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-2000:]
    said = result.stdout + result.stderr
    assert "custom code" not in said and "trust_remote_code" not in said and "model of type" not in said


def test_an_export_without_prototypes_json_warns_once_when_it_loads(exported, tmp_path, caplog):
    import shutil

    model_dir = shutil.copytree(exported, tmp_path / "model")
    (model_dir / "prototypes.json").unlink()
    with caplog.at_level("WARNING"):
        clf = load_classifier(model_dir)
        explained = clf.explain(SENTENCES[:2], top_k=2)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"{model_dir} has no prototypes.json, so its 8 prototypes have no training examples")
    assert all(p["nearest_examples"] == [] for e in explained for p in e["prototypes"])  # what the warning said


def test_onnx_export_matches_pytorch_on_real_inputs(exported):
    """model.onnx (logits, similarities, token attention) under onnxruntime, against the torch model,
    on dev sentences of several lengths in one padded batch."""
    import numpy as np
    import onnxruntime

    model_dir, path = exported, exported / "model.onnx"
    clf = load_classifier(model_dir)
    lines = (data_dir() / "sst2" / "dev.tsv").read_text().splitlines()[1:9]
    texts = [line.split("\t")[0] for line in lines]
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    enc = clf.tokenizer(texts, padding=True, truncation=True, max_length=clf.max_length, return_tensors="np")
    found = session.run(None, {i.name: enc[i.name] for i in session.get_inputs()})
    with torch.no_grad():
        out = clf.model(
            **clf.tokenizer(texts, padding=True, truncation=True, max_length=clf.max_length, return_tensors="pt")
        )
    assert [o.name for o in session.get_outputs()] == ["logits", "similarities", "token_attention"]
    for got, expected in zip(found, (out.logits, out.similarities, out.token_attention)):
        assert got.shape == tuple(expected.shape)
        assert np.abs(got - expected.numpy()).max() <= 1e-4
