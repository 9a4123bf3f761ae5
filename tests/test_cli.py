"""The command line as users meet it: run.py's errors are one clear message, never a bare traceback."""

import logging

import pytest

from tests.support import BACKBONES, TASKS, assert_clean_failure, run_cli, run_here

HUB_IDS = {
    "bert-base-uncased": "google-bert/bert-base-uncased",
    "bert-large-uncased": "google-bert/bert-large-uncased",
    "roberta-base": "FacebookAI/roberta-base",
    "roberta-large": "FacebookAI/roberta-large",
    "deberta-v3-large": "microsoft/deberta-v3-large",
    "electra-large": "google/electra-large-discriminator",
    "minilm": "sentence-transformers/all-MiniLM-L6-v2",
    "tiny": "sentence-transformers/all-MiniLM-L6-v2",
    # decoder-only (pooling: last)
    "gpt2": "openai-community/gpt2",
    "llama-3.2-1b": "meta-llama/Llama-3.2-1B",
    "qwen2.5-0.5b": "Qwen/Qwen2.5-0.5B",
    "qwen2.5-1.5b": "Qwen/Qwen2.5-1.5B",
    "mistral-7b": "mistralai/Mistral-7B-v0.3",
}


DECODER_ORGS = ("openai-community", "meta-llama", "Qwen", "mistralai")


@pytest.mark.no_data
def test_every_required_option_exists():
    assert {"sst2", "sst5", "imdb", "qnli", "mnli", "rte", "mrpc", "wnli", "pubmedqa", "biosses"} <= set(TASKS)
    assert set(HUB_IDS) <= set(BACKBONES)


@pytest.mark.no_data
@pytest.mark.parametrize("name", sorted(HUB_IDS))
def test_backbone_configs_compose_with_their_hub_ids(name, make_config):
    cfg = make_config(f"backbone={name}", "task=rte")
    assert cfg.backbone.name == name and cfg.backbone.pretrained == HUB_IDS[name]
    assert cfg.optim.backbone_lr == cfg.backbone.lr > 0
    assert cfg.backbone.pooling == ("last" if HUB_IDS[name].split("/")[0] in DECODER_ORGS else cfg.backbone.pooling)
    assert cfg.backbone.pooling in ("cls", "mean", "last")
    from protolm.config import read_settings

    read_settings(make_config(f"backbone={name}", "task=rte", "backbone.peft=lora"), check_trainer=False)


@pytest.mark.no_data
def test_any_hub_encoder_by_pretrained(make_config):
    cfg = make_config("backbone=hf", "backbone.pretrained=google-bert/bert-base-cased")
    from protolm.config import BackboneConfig, section
    from protolm.modeling.backbone import resolve_source

    assert resolve_source(section(cfg.backbone, BackboneConfig)) == "google-bert/bert-base-cased"
    # Overriding pretrained on the packaged MiniLM config must not silently load MiniLM.
    cfg = make_config("backbone.pretrained=google-bert/bert-base-cased")
    assert resolve_source(section(cfg.backbone, BackboneConfig)) == "google-bert/bert-base-cased"


@pytest.mark.no_data
@pytest.mark.parametrize(
    "group,bad,valid",
    [
        ("task", "sst3", "sst2"),
        ("backbone", "roberta-huge", "roberta-large"),
        ("head", "protoype", "prototype"),
    ],
)
def test_unknown_option_names_list_the_valid_ones(group, bad, valid):
    # As a user meets it: a separate process, Hydra's own start-up (tests/test_refusals.py has the rest).
    result = run_cli("run.py", f"{group}={bad}")
    assert_clean_failure(result, f"error: {group}={bad} is not one of: ", valid, "(did you mean ")
    assert len((result.stdout + result.stderr).strip().splitlines()) == 1


@pytest.mark.no_data
def test_bad_value_is_one_line_naming_the_key(capsys, monkeypatch):
    result = run_here("run.py", "backbone=tiny", "head.num_prototypes=25", capsys=capsys, monkeypatch=monkeypatch)
    assert_clean_failure(result, "error: head.num_prototypes=25 must be a multiple of task sst2's 2 classes")
    assert result.returncode == 1


@pytest.mark.no_data
def test_missing_data_names_the_paths_tried_and_the_fix(tmp_path, capsys, monkeypatch):
    args = ["backbone=tiny", f"data.data_dir={tmp_path}", "trainer.fast_dev_run=true", "logger=none"]
    result = run_here("run.py", *args, f"paths.log_dir={tmp_path}/outputs", capsys=capsys, monkeypatch=monkeypatch)
    assert_clean_failure(result, f"{tmp_path}/sst2/train.tsv", "data.data_dir=", "PROTOLM_DATA_DIR")


@pytest.mark.no_data
def test_hub_backbone_offline_fails_fast_with_the_fix(tmp_path, capsys, monkeypatch):
    args = ["backbone=roberta-large", f"paths.log_dir={tmp_path}/outputs"]
    result = run_here("run.py", *args, env={"HF_HUB_OFFLINE": "1"}, capsys=capsys, monkeypatch=monkeypatch)
    assert_clean_failure(
        result, "backbone roberta-large: cannot load 'FacebookAI/roberta-large'", "backbone.pretrained="
    )
    # The refused run's folder is removed, and this process's log file in it with it: a later log
    # line in the same process (a notebook, a test session) must not try to reopen it.
    logs = [
        getattr(h, "baseFilename", "")
        for lg in (logging.getLogger(), logging.getLogger("protolm"))
        for h in lg.handlers
    ]
    assert not any(name.startswith(str(tmp_path)) for name in logs), logs
    logging.getLogger("protolm").info("still logging")


def test_fast_dev_run_from_the_command_line(tmp_path):
    result = run_cli(
        "run.py",
        "backbone=tiny",
        "trainer.fast_dev_run=true",
        "logger=none",
        "data.max_train_samples=32",
        "data.max_eval_samples=32",
        f"hydra.run.dir={tmp_path}/run",
    )
    assert result.returncode == 0, result.stderr
    assert "sst2 / tiny / prototype: " in result.stdout and "test/acc=" in result.stdout
    assert (tmp_path / "run" / "results.json").exists()
    # It says what it is doing after training, and what to run next, as commands that run.
    log = (tmp_path / "run" / "run.log").read_text()
    assert "projecting the 50 prototypes onto 32 training examples" in log and "measuring prototype health" in log
    assert f'explain a prediction: protolm explain model={tmp_path / "run"} text="a sentence"' in result.stdout
    assert f"use the model: protolm predict model={tmp_path / 'run'} input_file=" in result.stdout


HELP_CHECK = """import runpy, sys
sys.argv = {argv!r}
try:
    if sys.argv[0] == "run.py":
        runpy.run_path("run.py", run_name="__main__")
    else:
        from protolm.cli.app import main
        main()
except SystemExit as exit_:
    assert exit_.code in (0, None), exit_.code
print("torch imported:", "torch" in sys.modules)
"""


@pytest.mark.no_data
@pytest.mark.parametrize(
    "command", ["run.py", "train", "explain", "project", "health", "evaluate", "export", "predict", "serve"]
)
def test_help_lists_every_key_without_loading_torch(command):
    argv = [command, "--help"] if command == "run.py" else ["protolm", command, "--help"]
    result = run_cli("-c", HELP_CHECK.format(argv=argv))
    assert result.returncode == 0, result.stderr
    assert "Keys (key=default  (type)  meaning):" in result.stdout
    shown = "python run.py" if command == "run.py" else f"protolm {command}"
    assert f"{shown} --cfg job" in result.stdout or (command == "run.py" and "run.py --cfg job" in result.stdout)
    assert "torch imported: False" in result.stdout  # what makes --help answer at once
    if command in ("run.py", "train"):  # every section's keys, each with its meaning
        assert "Config groups (group=option):" in result.stdout
        assert "  head.similarity=cosine  (str)  cosine | inv_l2" in result.stdout
        assert "  optim.head_lr=0.003  (float)  the head's learning rate" in result.stdout
    else:
        assert "  model=null  (str | None)  the trained model: a run directory" in result.stdout


@pytest.mark.no_data
def test_protolm_lists_its_commands_and_refuses_an_unknown_one():
    listing = run_cli("-m", "protolm", "--help")
    assert listing.returncode == 0 and all(f"  {c} " in listing.stdout for c in ("train", "explain", "serve"))
    result = run_cli("-m", "protolm", "explian")
    assert_clean_failure(result, "unknown command 'explian' (did you mean 'explain'?)")
