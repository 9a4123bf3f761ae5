"""Fixtures shared by the tests; the helpers they use live in tests/support.py."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest

# Tests never reach the network: the packaged MiniLM and the task data directory are all they use.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The tokenized-data cache starts empty for each session, one for all its workers (whose commands
# share it as users' runs do), and is removed at the end; never the user's ~/.cache/protolm.
if "PROTOLM_CACHE_DIR" not in os.environ:
    os.environ["PROTOLM_CACHE_DIR"] = tempfile.mkdtemp(prefix="protolm-test-cache-")
    atexit.register(shutil.rmtree, os.environ["PROTOLM_CACHE_DIR"], True)
# Under pytest-xdist, each worker (and the commands it starts) gets its share of the cores: torch's
# default of one thread per core in every worker oversubscribes them, which slows the suite down.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    share = (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, share)))

from tests.support import CONF, TINY, compose_config, has_task_data  # noqa: E402 - after the offline settings


def pytest_collection_modifyitems(config, items):
    """Tests that train or read task files need the data: without it they skip, saying why."""
    if has_task_data():
        return
    skip = pytest.mark.skip(reason="task data not found: set PROTOLM_DATA_DIR to the folder holding sst2/, rte/, ...")
    for item in items:
        if "no_data" not in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def make_config(tmp_path):
    def make(*overrides: str, run_dir=None):
        return compose_config(run_dir or tmp_path / "run", list(overrides))

    return make


@pytest.fixture(scope="session")
def minilm_tokenizer():
    from omegaconf import OmegaConf

    from protolm.config import BackboneConfig, section
    from protolm.modeling.backbone import load_tokenizer

    return load_tokenizer(section(OmegaConf.load(CONF / "backbone" / "minilm.yaml"), BackboneConfig))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One trained tiny prototype model (sst2, projected by replacement, health checked), shared by tests."""
    from protolm.training.train import train

    run = tmp_path_factory.mktemp("tiny") / "run"
    overrides = [
        "head.num_prototypes=8",
        "trainer.max_epochs=2",
        "data.max_train_samples=160",
        "health.plot_max_examples=100",
    ]
    train(compose_config(run, TINY + overrides))
    return run


@pytest.fixture(scope="session")
def tiny_loaded(tiny_run):
    from protolm.serving.classifier import load

    return load(tiny_run / "checkpoints" / "projected.ckpt")
