"""Where things are (the package, the repository, the configs) and the ``${protolm_*:}`` resolvers
the YAML files use; registered when :mod:`protolm.config` is imported."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

PACKAGE_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = PACKAGE_DIR.parent
CONF_DIR = REPO_ROOT / "conf"


def default_data_dir() -> str:
    """PROTOLM_DATA_DIR, else ``../shared/data`` beside the repository."""
    return os.environ.get("PROTOLM_DATA_DIR") or str((REPO_ROOT.parent / "shared" / "data").resolve())


def asset(name: str) -> str:
    """``${protolm_asset:name}``: a file or folder shipped inside the package (protolm/assets/)."""
    return str(PACKAGE_DIR / "assets" / name)


def repo_path(name: str) -> str:
    """``${protolm_repo:name}``: a path inside the repository (e.g. the study configs under experiments/)."""
    return str(REPO_ROOT / name)


def make_dir(path: str) -> str:
    """``${protolm_mkdir:path}``: the path, created if absent (e.g. for an SQLite file)."""
    Path(path).mkdir(parents=True, exist_ok=True)
    return str(Path(path).resolve())


def sweep_root(experiment: str | None) -> str:
    """``${protolm_sweep_root:${hydra.runtime.choices.experiment}}``: where a sweep's folders go,
    ``experiments/<name>`` for an experiment's, else ``multirun``."""
    return f"experiments/{experiment}" if experiment else "multirun"


def sweep_group() -> str | None:
    """``${protolm_sweep_group:}``: the sweep directory's name in a multirun (groups W&B runs), else None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return Path(HydraConfig.get().sweep.dir).as_posix().replace("/", "_").strip("._") or None


def register_resolvers() -> None:
    for name, function in (
        ("protolm_sweep_group", sweep_group),
        ("protolm_data_dir", default_data_dir),
        ("protolm_mkdir", make_dir),
        ("protolm_asset", asset),
        ("protolm_repo", repo_path),
        ("protolm_sweep_root", sweep_root),
    ):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, function)
