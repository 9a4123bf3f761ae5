"""Shared fixtures: compose configs exactly as run.py does, on a temporary run directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Tests never reach the network: the packaged MiniLM and ../shared/data are all they use.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
TASKS = sorted(p.stem for p in (CONF / "task").glob("*.yaml"))
BACKBONES = sorted(p.stem for p in (CONF / "backbone").glob("*.yaml"))

# Fast plumbing runs: the random tiny BERT, a handful of examples, no progress bar.
TINY = [
    "backbone=tiny",
    "data.max_train_samples=48",
    "data.max_eval_samples=32",
    "data.batch_size=16",
    "data.max_length=48",
    "trainer.enable_progress_bar=false",
    "trainer.accelerator=cpu",
    "logger=none",
]


def compose_config(run_dir: Path, overrides: list[str]):
    """The config run.py would receive for these overrides, writing into ``run_dir``."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    import protolm.config  # noqa: F401  (resolvers)

    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
        cfg.hydra.job.num = 0
        HydraConfig.instance().set_config(cfg)
        cfg.paths.output_dir = str(run_dir)
        cfg.paths.log_dir = str(run_dir.parent)
        del cfg["hydra"]
    return cfg


def pytest_configure(config):
    from protolm.config import default_data_dir

    data = Path(default_data_dir())
    if not (data / "sst2").is_dir():
        pytest.exit(
            f"task data not found at {data}: set PROTOLM_DATA_DIR to the folder holding sst2/, rte/, ...", returncode=4
        )


@pytest.fixture
def make_config(tmp_path):
    def make(*overrides: str, run_dir: Path | None = None):
        return compose_config(run_dir or tmp_path / "run", list(overrides))

    return make


def run_cli(*args: str, cwd: Path = REPO, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a command-line entry point (run.py, explain.py, ...) as a user would."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env
    )


def assert_clean_failure(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """A failed command: non-zero exit, no traceback, and every fragment in its message."""
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    for fragment in fragments:
        assert fragment in output, output


@pytest.fixture(scope="session")
def minilm_tokenizer():
    from omegaconf import OmegaConf

    from protolm.backbone import load_tokenizer

    return load_tokenizer(OmegaConf.to_container(OmegaConf.load(CONF / "backbone" / "minilm.yaml")))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """One trained tiny prototype model (sst2, projected by replacement, health checked), shared by tests."""
    from protolm.train import train

    run = tmp_path_factory.mktemp("tiny") / "run"
    cfg = compose_config(
        run,
        TINY
        + [
            "head.num_prototypes=8",
            "trainer.max_epochs=2",
            "data.max_train_samples=160",
            "health.plot_max_examples=100",
        ],
    )
    train(cfg)
    return run


@pytest.fixture(scope="session")
def tiny_loaded(tiny_run):
    from protolm.checkpoint import load

    return load(tiny_run / "checkpoints" / "projected.ckpt")
