"""Run directories: where a run writes, and which run and checkpoint ``ckpt_path`` resumes."""

from __future__ import annotations

from pathlib import Path

import yaml
from omegaconf import DictConfig

from protolm.errors import ConfigError

LAST = "last.ckpt"


def check_run_dir(run_dir: Path, overwrite: bool) -> None:
    """Never write over a finished or checkpointed run unless asked."""
    taken = [p.name for p in (run_dir / "results.json", run_dir / "checkpoints") if p.exists()]
    if taken and not overwrite:
        raise ConfigError(
            f"run directory {run_dir} already holds {', '.join(taken)}; resume it with ckpt_path=last, "
            "or pass overwrite=true to start again there"
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
    if str(wanted) == "last":
        own = run_dir / "checkpoints" / LAST
        if own.exists():
            return run_dir, str(own)
        overrides = _hydra_overrides()
        found = find_previous_run(Path(cfg.paths.log_dir), overrides, run_dir) if overrides is not None else None
        if found is None:
            raise ConfigError(
                f"ckpt_path=last: no earlier run with the same overrides has checkpoints/{LAST} under "
                f"{cfg.paths.log_dir}; pass ckpt_path=<run directory or .ckpt file>, or drop ckpt_path to start afresh"
            )
        (run_dir / "RESUMED_INTO").write_text(f"{found}\n")
        return found, str(found / "checkpoints" / LAST)
    # Imported here: the Hydra callbacks import this module, and the checkpoint code brings in Lightning.
    from protolm.checkpoint_io import check_checkpoint_file

    path = Path(str(wanted)).expanduser()
    if path.is_dir():
        path = path / "checkpoints" / LAST if (path / "checkpoints").is_dir() else path / LAST
    check_checkpoint_file(path)
    owner = path.parent.parent if path.parent.name == "checkpoints" else run_dir
    return owner, str(path)
