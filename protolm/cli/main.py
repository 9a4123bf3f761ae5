"""Shared behaviour of the command-line entry points: clean errors, exit codes, multirun safety,
and the ``main`` of every root script (run.py's error handling; the tools' whole entry point)."""

from __future__ import annotations

import importlib
import logging
import os
import sys
import traceback
import warnings
from pathlib import Path

from omegaconf import DictConfig

from protolm.errors import ProtoLMError

log = logging.getLogger("protolm")


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _output_dir() -> Path | None:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir) if HydraConfig.initialized() else None


class _DropNoise(logging.Filter):
    """Drops advertising and duplicate-prone messages from third-party loggers."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


def tidy_logging() -> None:
    """One copy of each log line: Lightning's own console handler duplicates Hydra's root handler."""
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logger = logging.getLogger(name)
        logger.handlers = [h for h in logger.handlers if isinstance(h, logging.FileHandler)]
        logger.propagate = True
    for handler in logging.getLogger().handlers:
        handler.addFilter(_DropNoise())


def quote_free_text(argv: list[str], keys: tuple[str, ...] = ("text", "text_pair")) -> list[str]:
    """Let ``text="a, b (c)"`` through Hydra's override grammar as the literal string it is.

    Hydra reads commas, brackets and quotes in values as syntax; free text is quoted and escaped
    here so that users can type a sentence as they would say it.
    """
    out = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key in keys and not (len(value) >= 2 and value[0] == value[-1] and value[0] in "'\""):
            escaped = value.replace("\\", "\\\\").replace("'", "\\'").replace("${", "\\${")
            arg = f"{key}='{escaped}'"
        out.append(arg)
    return out


def run_main(fn, cfg: DictConfig):
    """Run ``fn(cfg)``; a user error prints one line (no traceback) and exits non-zero.

    In a multirun the failure is recorded in the job's ``error.txt`` and the sweep goes on:
    one bad job must not lose the others.
    """
    tidy_logging()
    show_traceback = bool(cfg.get("traceback")) or os.environ.get("PROTOLM_DEBUG") == "1"
    try:
        return fn(cfg)
    except SystemExit as err:
        if type(err).__name__ == "SIGTERMException":  # Lightning's, a SystemExit that would exit 0
            print(
                "error: stopped by SIGTERM; checkpoints/last.ckpt was saved: rerun with ckpt_path=last to resume",
                file=sys.stderr,
            )
            sys.exit(143)
        raise
    except Exception as err:  # noqa: BLE001 - every failure gets the same clean report
        user_error = isinstance(err, ProtoLMError)
        message = f"{type(err).__name__}: {err}" if not user_error else str(err)
        detail = traceback.format_exc()
        out = _output_dir()
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            (out / "error.txt").write_text(f"{message}\n\n{detail}")
        if show_traceback:
            print(detail, file=sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        if not user_error and not show_traceback:
            print(
                "(unexpected error: the full traceback is in error.txt in the run directory; "
                "rerun with traceback=true or PROTOLM_DEBUG=1 to print it)",
                file=sys.stderr,
            )
        if _in_multirun():
            log.error("job failed: %s", message)
            return None
        sys.exit(1 if user_error else 2)


def entry_point(config_name: str, command: str, free_text: tuple[str, ...] = ()):
    """The ``main`` of a checkpoint tool's root script (explain.py, project.py, ...).

    Hydra composes ``conf/<config_name>.yaml`` with the command line, exactly as
    ``@hydra.main(config_path="conf", config_name=config_name)`` in the script would; ``command``
    ("module:function") is imported only then, so ``--help`` and config errors stay fast, and runs
    under :func:`run_main`. Arguments named in ``free_text`` are quoted first (:func:`quote_free_text`).
    The tool's Hydra job name (its log file's name) is set in its config, as the script's name no
    longer provides it.
    """
    import hydra

    from protolm.config import CONF_DIR

    def task(cfg: DictConfig):
        module, _, name = command.partition(":")
        return run_main(getattr(importlib.import_module(module), name), cfg)

    hydra_main = hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=config_name)(task)

    def main():
        if free_text:
            sys.argv = quote_free_text(sys.argv, free_text)
        return hydra_main()

    return main
