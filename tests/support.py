"""Helpers shared by the tests: compose configs exactly as run.py does, run the entry points as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
TASKS = sorted(p.stem for p in (CONF / "task").glob("*.yaml") if not p.stem.startswith("_"))
BACKBONES = sorted(p.stem for p in (CONF / "backbone").glob("*.yaml") if not p.stem.startswith("_"))

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


def data_dir() -> Path:
    from protolm.config import default_data_dir

    return Path(default_data_dir())


def has_task_data() -> bool:
    return (data_dir() / "sst2").is_dir()


# Tests that read the task files skip, with the reason, where the data is absent.
needs_data = pytest.mark.skipif(
    not has_task_data(),
    reason="task data not found: set PROTOLM_DATA_DIR to the folder holding sst2/, rte/, ...",
)


def compose_config(run_dir: Path, overrides: list[str]):
    """The config run.py would receive for these overrides, writing into ``run_dir``."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    import protolm.config  # noqa: F401  (resolvers and schemas)

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


PROTOLM = ("-m", "protolm")  # run_cli(*PROTOLM, "explain", ...): the protolm command, as `protolm explain ...`


def run_cli(*args: str, cwd: Path = REPO, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a command-line entry point (``run.py``, or ``*PROTOLM, <command>``) as a user would."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env
    )


def run_here(script: str, *args: str, capsys, monkeypatch, env: dict | None = None):
    """``python run.py <args>`` or ``protolm <command> <args>`` (script "protolm") run in this process:
    what ``run_cli`` gives (exit code, stdout, stderr) without a new interpreter's start-up (seconds
    per call). For commands whose process boundary is not under test (kills, imports, exit signals)."""
    from protolm.cli import app

    monkeypatch.chdir(REPO)
    for key, value in (env or {}).items():
        monkeypatch.setenv(key, value)
    argv = ["train", *args] if script == "run.py" else list(args)
    monkeypatch.setattr(sys, "argv", ["protolm", *argv])
    main = app.main
    code = 0
    try:
        main()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    out = capsys.readouterr()
    return subprocess.CompletedProcess([script, *args], code, out.out, out.err)


def assert_clean_failure(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """A failed command: non-zero exit, no traceback, and every fragment in its message."""
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    for fragment in fragments:
        assert fragment in output, output


def toy_task(fmt: str, text_fields: list[str], label_field: str, **changes) -> dict:
    """A two-class task over ``t/train.<fmt>`` and ``t/dev.<fmt>`` (written by the test), selecting on a
    one-example slice carved from train and reporting the dev file; ``changes`` replace any key."""
    task = {
        "name": "toy",
        "text_fields": text_fields,
        "label_field": label_field,
        "labels": ["neg", "pos"],
        "local": {"format": fmt, "train": f"t/train.{fmt}", "validation": f"t/dev.{fmt}"},
        "carve": [{"split": "heldout", "from": "train", "size": 1}],
        "select_on": "heldout",
        "report_on": "validation",
    }
    return task | changes
