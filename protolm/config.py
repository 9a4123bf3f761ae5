"""Config resolvers and the checks that turn a bad value into a one-line error naming the key."""

from __future__ import annotations

import inspect
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from protolm.data.hub import HUB_MODES
from protolm.data.task import TaskSpec
from protolm.errors import ConfigError, check_choice, check_keys
from protolm.head import SIMILARITIES
from protolm.losses import resolve_k

REPO_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = REPO_ROOT / "conf"
HEADS = ("prototype", "linear")
PROTOTYPE_INITS = ("train_embeddings", "random")
SCHEDULERS = ("linear", "cosine", "constant")
DEFAULT_PROTOTYPES_PER_CLASS = 10


def default_data_dir() -> str:
    """PROTOLM_DATA_DIR, else ``../shared/data`` beside the repository."""
    return os.environ.get("PROTOLM_DATA_DIR") or str((REPO_ROOT.parent / "shared" / "data").resolve())


def make_dir(path: str) -> str:
    """``${protolm_mkdir:path}``: the path, created if absent (e.g. for an SQLite file)."""
    Path(path).mkdir(parents=True, exist_ok=True)
    return str(Path(path).resolve())


def sweep_group() -> str | None:
    """``${protolm_sweep_group:}``: the sweep directory's name in a multirun (groups W&B runs), else None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return Path(HydraConfig.get().sweep.dir).as_posix().replace("/", "_").strip("._") or None


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("protolm_sweep_group"):
        OmegaConf.register_new_resolver("protolm_sweep_group", sweep_group)
    if not OmegaConf.has_resolver("protolm_data_dir"):
        OmegaConf.register_new_resolver("protolm_data_dir", default_data_dir)
    if not OmegaConf.has_resolver("protolm_mkdir"):
        OmegaConf.register_new_resolver("protolm_mkdir", make_dir)


register_resolvers()


def _number(key: str, value, low=None, high=None, integer=False, low_open=False, high_open=False, allow_none=False):
    """Check ``value`` is a number in the range; the error names the key and the range."""
    if value is None and allow_none:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok and integer:
        ok = float(value).is_integer()
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        lo = "-inf" if low is None else str(low)
        hi = "inf" if high is None else str(high)
        kind = "a whole number" if integer else "a number"
        span = f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"
        raise ConfigError(f"{key}={value!r} must be {kind} in {span}" + (" or null" if allow_none else ""))


def fill_num_prototypes(cfg: DictConfig, task: TaskSpec) -> None:
    """``head.num_prototypes: null`` means ``head.prototypes_per_class`` per class; resolved once the task is known."""
    if cfg.head.name == "prototype" and cfg.head.num_prototypes is None:
        per_class = cfg.head.get("prototypes_per_class", DEFAULT_PROTOTYPES_PER_CLASS)
        _number("head.prototypes_per_class", per_class, low=1, integer=True)
        cfg.head.num_prototypes = int(per_class) * task.num_classes


def validate(cfg: DictConfig, task: TaskSpec) -> None:
    """Check every research and data knob before anything expensive starts (fills head.num_prototypes)."""
    head, loss, optim, data = cfg.head, cfg.loss, cfg.optim, cfg.data
    check_choice("head", head.name, HEADS)
    if head.name == "prototype":
        c = task.num_classes
        fill_num_prototypes(cfg, task)
        _number("head.num_prototypes", head.num_prototypes, low=1, integer=True)
        if head.num_prototypes % c or head.num_prototypes < c:
            lower = max(c, head.num_prototypes // c * c)
            raise ConfigError(
                f"head.num_prototypes={head.num_prototypes} must be a multiple of task {task.name}'s "
                f"{c} class{'es' if c > 1 else ''} (e.g. {lower} or {lower + c})"
            )
        check_choice("head.similarity", head.similarity, SIMILARITIES)
        check_choice("head.prototype_init", head.prototype_init, PROTOTYPE_INITS)
        _number("head.eps", head.eps, low=0, low_open=True)
        _number("head.init_std", head.init_std, low=0, low_open=True)
        try:
            resolve_k(loss.cohsep_ratio, head.num_prototypes // c)
        except ValueError as err:
            raise ConfigError(str(err)) from None
    for key in ("ce", "cohesion", "separation"):
        _number(f"loss.{key}", loss[key], low=0)
    if loss.ce + (loss.cohesion + loss.separation if head.name == "prototype" else 0) <= 0:
        raise ConfigError("loss.ce, loss.cohesion and loss.separation are all 0: nothing to train")
    _number("optim.backbone_lr", optim.backbone_lr, low=0)
    _number("optim.head_lr", optim.head_lr, low=0, low_open=True)
    _number("optim.weight_decay", optim.weight_decay, low=0)
    _number("optim.warmup_ratio", optim.warmup_ratio, low=0, high=1, high_open=True)
    _number("optim.freeze_layers", optim.freeze_layers, low=0, integer=True)
    check_choice("optim.scheduler", optim.scheduler, SCHEDULERS)
    _number("data.max_length", data.max_length, low=2, integer=True)
    _number("data.batch_size", data.batch_size, low=1, integer=True)
    _number("data.eval_batch_size", data.eval_batch_size, low=1, integer=True, allow_none=True)
    _number("data.max_train_samples", data.max_train_samples, low=1, integer=True, allow_none=True)
    _number("data.max_eval_samples", data.max_eval_samples, low=1, integer=True, allow_none=True)
    _number("data.num_workers", data.num_workers, low=0, integer=True)
    check_choice("data.hub", data.hub, HUB_MODES)
    if task.metric == "f1" and task.num_classes != 2:
        raise ConfigError(f"task.metric=f1 needs two classes; task {task.name} has {task.num_classes} (use f1_macro)")
    _check_trainer_keys(cfg.trainer)


def _check_trainer_keys(trainer_cfg: DictConfig) -> None:
    from lightning.pytorch import Trainer

    valid = set(inspect.signature(Trainer.__init__).parameters) - {"self", "callbacks", "logger", "plugins"}
    check_keys("trainer", [k for k in trainer_cfg if k != "_target_"], valid)


def to_container(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
