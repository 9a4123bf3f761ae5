"""Run directories: where a run writes, and which run and checkpoint ``ckpt_path`` resumes."""

from __future__ import annotations

import logging
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import yaml
from omegaconf import DictConfig

from protolm.utils.errors import ConfigError

LAST = "last.ckpt"


def check_run_dir(run_dir: Path, overwrite: bool) -> None:
    """Never write over a finished or checkpointed run unless asked."""
    if overwrite:
        return
    if (run_dir / "results.json").exists():
        raise ConfigError(
            f"run directory {run_dir} holds a finished run (results.json); choose another hydra.run.dir, "
            "or pass overwrite=true to start again there"
        )
    if (run_dir / "checkpoints").exists():
        raise ConfigError(
            f"run directory {run_dir} already holds checkpoints/ of an unfinished run; resume it with "
            "ckpt_path=last, or pass overwrite=true to start again there"
        )


def _hydra_overrides() -> list[str] | None:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    return [o for o in HydraConfig.get().overrides.task if not o.startswith(("ckpt_path=", "overwrite="))]


def first_overrides(run: Path) -> list[str] | None:
    """The overrides of the command that started ``run`` (its oldest .hydra/<time>/ record)."""
    records = sorted(run.glob(".hydra/*/overrides.yaml"))
    if not records:
        return None
    return yaml.safe_load(records[0].read_text()) or []


def find_previous_run(log_dir: Path, overrides: list[str], exclude: Path) -> Path | None:
    """The newest run under ``log_dir`` started with the same overrides that has a last.ckpt."""
    candidates = []
    for last in log_dir.glob(f"**/checkpoints/{LAST}"):
        run = last.parent.parent
        started_with = first_overrides(run)
        if run.resolve() == exclude.resolve() or started_with is None:
            continue
        previous = [o for o in started_with if not o.startswith(("ckpt_path=", "overwrite="))]
        if sorted(previous) == sorted(overrides):
            candidates.append((last.stat().st_mtime, run))
    return max(candidates)[1] if candidates else None


def resolve_resume(cfg: DictConfig) -> tuple[Path, str | None]:
    """(run directory to write into, checkpoint to resume from or None).

    ``ckpt_path``: null (fresh run), ``last`` (this run directory's last.ckpt, else the newest run
    started with the same overrides), a run directory, or a .ckpt file. Resuming continues in the
    run directory the checkpoint belongs to, so checkpoints and results stay together.
    """
    run_dir = Path(cfg.paths.output_dir)
    wanted = cfg.get("ckpt_path")
    if wanted is None:
        check_run_dir(run_dir, cfg.get("overwrite", False))
        return run_dir, None
    overwrite = cfg.get("overwrite", False)
    if str(wanted) == "last":
        own = run_dir / "checkpoints" / LAST
        if own.exists():
            return refuse_finished(run_dir, overwrite), str(own)
        overrides = _hydra_overrides()
        found = find_previous_run(Path(cfg.paths.log_dir), overrides, run_dir) if overrides is not None else None
        if found is None:
            raise ConfigError(
                f"ckpt_path=last: no earlier run with the same overrides has checkpoints/{LAST} under "
                f"{cfg.paths.log_dir}; pass ckpt_path=<run directory or .ckpt file>, or drop ckpt_path to start afresh"
            )
        refuse_finished(found, overwrite)
        (run_dir / "RESUMED_INTO").write_text(f"{found}\n")
        return found, str(found / "checkpoints" / LAST)
    # Imported here: the Hydra callbacks import this module, and the checkpoint code brings in Lightning.
    from protolm.modeling.saved import check_checkpoint_file

    path = Path(str(wanted)).expanduser()
    if path.is_dir():
        path = path / "checkpoints" / LAST if (path / "checkpoints").is_dir() else path / LAST
    check_checkpoint_file(path)
    owner = path.parent.parent if path.parent.name == "checkpoints" else run_dir
    return refuse_finished(owner, overwrite), str(path)


def refuse_finished(run: Path, overwrite: bool) -> Path:
    """``run``, unless it is finished (results.json) and ``overwrite`` is false: resuming it would
    train it again and rewrite its results."""
    if (run / "results.json").exists() and not overwrite:
        raise ConfigError(
            f"run {run} is finished (it has results.json): to start a new run, drop ckpt_path; to train this one "
            "further on purpose, raise trainer.max_epochs or trainer.max_steps and pass overwrite=true "
            "(its results.json is then rewritten)"
        )
    return run


# ----------------------------------------------------------------------------- one process per directory
LOCK = ".lock"
_held: set[Path] = set()  # directories this process holds (a nested hold, e.g. the two-stage recipe's, is free)


@contextmanager
def holding(directory: Path, what: str = "run directory"):
    """Hold ``directory`` for this process while the block runs; a second process is refused.

    An advisory lock on ``<directory>/.lock`` (released by the OS if the process dies, so a killed
    run never leaves its directory locked). On DDP only rank 0 holds it: the other ranks are its own.
    """
    from filelock import FileLock, Timeout

    directory = directory.resolve()
    if directory in _held or not launched_as_rank_zero():
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    lock = FileLock(directory / LOCK, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise ConfigError(
            f"{what} {directory} is in use by another running protolm process; wait for it to end, "
            "or write elsewhere (a new run directory, or another output_dir)"
        ) from None
    _held.add(directory)
    try:
        yield
    finally:
        _held.discard(directory)
        lock.release()


def launched_as_rank_zero() -> bool:
    """Whether this process is rank 0 of its job, from the variables DDP launchers set (Lightning,
    torchrun, SLURM), before any process group exists; a process on its own is rank 0."""
    return all(os.environ.get(name, "0") == "0" for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


def in_use(directory: Path) -> bool:
    """Whether another process holds ``directory`` now (a running run)."""
    from filelock import FileLock, Timeout

    directory = directory.resolve()
    if directory in _held or not (directory / LOCK).exists():
        return False
    lock = FileLock(directory / LOCK, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return True
    lock.release()
    return False


# ----------------------------------------------------------------------------- refused commands leave nothing
_new_dirs: dict[Path, Path] = {}  # a command's output directory -> the topmost folder it had to create


def note_new_dir(directory: Path) -> None:
    """Before Hydra creates ``directory`` (a Hydra callback calls this): remember what will be new."""
    directory = directory.absolute()
    top = None
    for folder in (directory, *directory.parents):
        if folder.exists():
            break
        top = folder
    if top is not None:
        _new_dirs[directory] = top


def _release_logs(directory: Path) -> None:
    """Detach and close this process's log files inside ``directory`` (Hydra's ``<job>.log``): a
    later log line must not reopen a file in a removed folder, nor fail for want of it."""
    for logger in [logging.getLogger(), *logging.root.manager.loggerDict.values()]:
        for handler in list(getattr(logger, "handlers", [])):  # a placeholder has none
            name = getattr(handler, "baseFilename", None)
            if name and Path(name).absolute().is_relative_to(directory):
                logger.removeHandler(handler)
                handler.close()


def discard_if_untouched(directory: Path) -> bool:
    """Remove ``directory`` (and the folders created for it) if this command created it and nothing
    but its own Hydra record and log are in it: a refused command leaves nothing behind. (A second
    record in .hydra/ would be another command's, started into the same new directory.)"""
    directory = directory.absolute()
    top = _new_dirs.get(directory)
    if top is None or not directory.is_dir():
        return False
    others = [p.name for p in directory.iterdir() if p.name not in (".hydra", LOCK) and p.suffix != ".log"]
    records = [p.name for p in (directory / ".hydra").iterdir()] if (directory / ".hydra").is_dir() else []
    if others or len(records) > 1 or in_use(directory):
        return False
    _release_logs(directory)
    shutil.rmtree(directory)
    for folder in directory.parents:
        if not folder.is_relative_to(top) or any(folder.iterdir()):
            break
        folder.rmdir()
    return True


# ----------------------------------------------------------------------------- what a finished run keeps
def finish_checkpoints(ckpt_dir: Path, shipped: Path, keep_intermediate: bool) -> Path:
    """Remove what a finished run no longer needs; the shipped checkpoint's path afterwards.

    Kept: last.ckpt (the full training state) and the shipped model. The checkpoints before it (the
    selected one before projection or pruning) go unless ``keep_intermediate``. A shipped best
    checkpoint saved at the same step as last.ckpt holds the same weights: it goes, and last.ckpt
    is the shipped model.
    """
    import torch

    last = ckpt_dir / LAST
    if not keep_intermediate:
        for path in ckpt_dir.glob("*.ckpt"):
            if path not in (shipped, last):
                path.unlink()

    def step(path: Path) -> int | None:
        return torch.load(path, map_location="cpu", mmap=True, weights_only=True).get("global_step")

    if shipped != last and shipped.name.startswith("best-") and last.exists() and step(shipped) == step(last):
        shipped.unlink()
        return last
    return shipped
