"""Shared behaviour of the command-line entry points: clean errors, exit codes, multirun safety,
and the ``main`` of every root script (run.py's error handling; the tools' whole entry point)."""

from __future__ import annotations

import errno
import importlib
import logging
import os
import sys
import tempfile
import traceback
import warnings
from pathlib import Path

from omegaconf import DictConfig

from protolm.utils.errors import ProtoLMError

log = logging.getLogger("protolm")
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # no space, over quota, over the file-size limit


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

    A refused command leaves nothing behind: the run directory Hydra created for it is removed if
    nothing but its own record and log is in it. In a multirun the failure is recorded in the
    job's ``error.txt`` and the sweep goes on: one bad job must not lose the others.
    """
    tidy_logging()
    show_traceback = bool(cfg.get("traceback")) or os.environ.get("PROTOLM_DEBUG") == "1"
    try:
        return fn(cfg)
    except SystemExit as err:
        resume = sys.modules.get("protolm.training.resume")
        if resume is not None and resume.stopped_by_ctrl_c:  # raised as Lightning's SIGTERMException
            print(
                "error: stopped by Ctrl-C; checkpoints/last.ckpt was saved: rerun with ckpt_path=last to resume",
                file=sys.stderr,
            )
            sys.exit(130)
        if type(err).__name__ == "SIGTERMException":  # Lightning's, a SystemExit that would exit 0
            print(
                "error: stopped by SIGTERM; checkpoints/last.ckpt was saved: rerun with ckpt_path=last to resume",
                file=sys.stderr,
            )
            sys.exit(143)
        raise
    except Exception as err:  # noqa: BLE001 - every failure gets the same clean report
        message = user_message(err)
        user_error = message is not None
        message = message or f"{type(err).__name__}: {err}"
        detail = traceback.format_exc()
        kept = _keep_or_discard(_output_dir(), f"{message}\n\n{detail}")
        if show_traceback:
            print(detail, file=sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        if not user_error and not show_traceback:
            print(
                f"(unexpected error: the full traceback is in {kept}; "
                "rerun with traceback=true or PROTOLM_DEBUG=1 to print it)",
                file=sys.stderr,
            )
        if _in_multirun():
            log.error("job failed: %s", message)
            return None
        sys.exit(1 if user_error else 2)


def user_message(err: Exception) -> str | None:
    """The one-line message of an error the user can fix (bad config, data, checkpoint), else None."""
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(err, ProtoLMError):
        return str(err)
    if isinstance(err, OmegaConfBaseException):  # e.g. a key removed with ~key, read later
        key = getattr(err, "full_key", None)
        return str(err).splitlines()[0] + (f" (config key {key})" if key else "")
    if type(err).__name__ == "MisconfigurationException":  # Lightning's word for a Trainer setting it refuses
        return " ".join(str(err).split())
    full = next((e for e in _chain(err) if isinstance(e, OSError) and e.errno in DISK_FULL), None)
    if full is not None:  # checkpoints are written to a temporary file and renamed: the previous one is intact
        return (
            f"the disk is full ({os.strerror(full.errno)}{': ' + full.filename if full.filename else ''}); "
            "files written before are intact: free space, then resume with ckpt_path=last"
        )
    return None


def _chain(err: BaseException):
    """``err`` and the exceptions it was raised from or during."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def _keep_or_discard(out: Path | None, report: str) -> Path:
    """Where the failure's report went: the run directory's error.txt, or, when the command created
    that directory and wrote nothing in it (it was refused), a temporary file, the directory removed."""
    from protolm.training.runs import discard_if_untouched, in_use

    # Never into a finished run, nor into a directory another process is running in.
    foreign = out is not None and ((out / "results.json").exists() or in_use(out))
    if out is None or foreign or (not _in_multirun() and discard_if_untouched(out)):
        with tempfile.NamedTemporaryFile("w", prefix="protolm-error-", suffix=".txt", delete=False) as f:
            f.write(report)
        return Path(f.name)
    out.mkdir(parents=True, exist_ok=True)
    (out / "error.txt").write_text(report)
    return out / "error.txt"


def print_plan(cfg: DictConfig) -> None:
    """``plan=true``: the run's estimated accelerator memory, printed; nothing trained, nothing left behind."""
    from protolm.config import read_settings
    from protolm.training.plan import report
    from protolm.training.runs import discard_if_untouched

    print(report(read_settings(cfg, check_trainer=False)))
    out = _output_dir()
    if out is not None and not _in_multirun():
        discard_if_untouched(out)


def answer_help(config_name: str) -> None:
    """``--help``/``-h`` answered from the config files at once (Hydra's would compose for seconds)."""
    if any(arg in ("--help", "-h") for arg in sys.argv[1:]):
        from protolm.cli.help import help_text
        from protolm.config import CONF_DIR

        print(help_text(CONF_DIR, config_name, sys.argv[0]))
        sys.exit(0)


def one_line_config_errors(hydra_main):
    """``hydra_main`` (a ``@hydra.main`` function) with Hydra's composition errors as one line each.

    Hydra prints its own multi-line report unless ``HYDRA_FULL_ERROR`` is set, in which case it
    raises; it is set here so that :func:`protolm.cli.hydra_errors.one_line` can word the error.
    A user who set ``HYDRA_FULL_ERROR=1`` gets Hydra's full traceback, as Hydra documents.
    """

    def main():
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException

        from protolm.cli.hydra_errors import one_line

        before = os.environ.get("HYDRA_FULL_ERROR")
        os.environ["HYDRA_FULL_ERROR"] = "1"
        try:
            return hydra_main()
        except (HydraException, OmegaConfBaseException) as err:
            if before == "1":
                raise
            print(f"error: {one_line(err, sys.argv[1:])}", file=sys.stderr)
            sys.exit(1)
        finally:
            if before is None:
                del os.environ["HYDRA_FULL_ERROR"]
            else:
                os.environ["HYDRA_FULL_ERROR"] = before

    return main


def entry_point(config_name: str, command: str, free_text: tuple[str, ...] = ()):
    """The ``main`` of a command that uses a trained model (``protolm explain``, ``protolm project``, ...).

    Hydra composes ``conf/<config_name>.yaml`` with the command line, exactly as
    ``@hydra.main(config_path="conf", config_name=config_name)`` would; ``command``
    ("module:function") is imported only then, so ``--help`` and config errors stay fast, and runs
    under :func:`run_main` with the config as its checked dataclass. Arguments named in
    ``free_text`` are quoted first (:func:`quote_free_text`). The command's Hydra job name (its log
    file's name) is set in its config.
    """
    import hydra

    from protolm.config import CONF_DIR
    from protolm.config.tools import check_tool_config

    def checked_command(cfg: DictConfig):
        from protolm.training.runs import holding
        from protolm.utils.progress import lines_every

        checked = check_tool_config(config_name, cfg)  # every range, before the command loads anything
        module, _, name = command.partition(":")
        # one process per output directory; progress lines (off a terminal) at the command's interval
        with holding(Path(checked.output_dir), "output directory"), lines_every(checked.progress_every_s):
            return getattr(importlib.import_module(module), name)(checked)

    def task(cfg: DictConfig):
        return run_main(checked_command, cfg)

    hydra_main = hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=config_name)(task)

    def main():
        answer_help(config_name)
        if free_text:
            sys.argv = quote_free_text(sys.argv, free_text)
        return one_line_config_errors(hydra_main)()

    return main
