"""Typed configuration: one dataclass per config section, each default and each check once.

The dataclasses are registered with Hydra's ConfigStore as schemas (``conf/config.yaml`` and the
group files extend them), so a composed config carries their types and defaults, and a key that
no section defines is refused at composition. Range and choice checks run in ``__post_init__``,
i.e. whenever a section becomes an object (:func:`section`), and name the key and what it allows.
Checks that need the task (prototypes per class, K) live in :func:`prototype_count` and
:meth:`LossConfig.k_for`.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf, open_dict

from protolm.data.task import TaskSpec
from protolm.errors import ConfigError, check_choice, check_keys, check_number

REPO_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = REPO_ROOT / "conf"

PROTOTYPE_INITS = ("train_embeddings", "random")
SCHEDULERS = ("linear", "cosine", "constant")
# torch.optim.AdamW's implementations: one fused kernel over all parameters, one multi-tensor
# kernel per operation, or a Python loop over the parameters (torch's default on a CPU).
OPTIMIZER_IMPLEMENTATIONS = ("fused", "foreach", "for_loop")
POOLINGS = ("cls", "mean", "last")
PEFT_METHODS = ("none", "lora")
QUANTIZATIONS = ("none", "4bit")
PROJECTION_MODES = ("link", "replace")
HUB_MODES = ("auto", "never")
PROGRESS_BARS = ("rich", "tqdm", "none")


# ------------------------------------------------------------------------------ sections
@dataclass
class PackagedConfig:
    """A pip package that carries a backbone's weights offline (used when installed)."""

    module: str = MISSING
    provides: str = MISSING  # the hub id it stands for: used only while backbone.pretrained is that id


@dataclass
class LoraConfig:
    """LoRA adapters (through peft) on the encoder's attention and MLP projections."""

    r: int = 8  # rank of each adapter
    alpha: float = 16.0  # scale: the adapter's update is multiplied by alpha / r
    dropout: float = 0.05
    # The modules adapted; null: the family's (q/k/v/o and MLP projections for Llama, Qwen2,
    # Mistral, Gemma; c_attn, c_proj, c_fc for GPT-2; query/key/value/dense for BERT-like).
    target_modules: list[str] | None = None
    lr: float = 2.0e-4  # the adapters' learning rate (in place of optim.backbone_lr)

    def __post_init__(self):
        check_number("backbone.lora.r", self.r, low=1, integer=True)
        check_number("backbone.lora.alpha", self.alpha, low=0, low_open=True)
        check_number("backbone.lora.dropout", self.dropout, low=0, high=1)
        check_number("backbone.lora.lr", self.lr, low=0, low_open=True)


@dataclass
class BackboneConfig:
    name: str = MISSING
    pretrained: str = MISSING  # a hub id or a local directory
    packaged: PackagedConfig | None = None
    tokenizer: str | None = None  # null: the tokenizer saved with the model
    random_init: bool = False  # the architecture from its config with fresh weights (test backbones)
    config_overrides: dict[str, Any] = field(default_factory=dict)
    pooling: str = "cls"  # how the linear baseline pools: cls (first token) | mean
    lr: float = 2.0e-5  # this backbone's default optim.backbone_lr
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, ~30 % more time
    compile: bool = False  # torch.compile the encoder (same results, faster steps once compiled)
    # Parameter-efficient fine-tuning: none (every encoder weight trains) | lora (adapters only,
    # backbone.lora); the head always trains in full. quantization=4bit loads the frozen weights in
    # 4 bits (QLoRA, bitsandbytes, CUDA only).
    peft: str = "none"
    lora: LoraConfig = field(default_factory=LoraConfig)
    quantization: str = "none"

    def __post_init__(self):
        check_choice("backbone.pooling", self.pooling, POOLINGS)
        check_number("backbone.lr", self.lr, low=0)
        check_choice("backbone.peft", self.peft, PEFT_METHODS)
        check_choice("backbone.quantization", self.quantization, QUANTIZATIONS)
        if self.quantization != "none" and self.peft == "none":
            raise ConfigError(
                f"backbone.quantization={self.quantization} freezes the encoder's weights in 4 bits: "
                "train adapters on them with backbone.peft=lora (QLoRA)"
            )


@dataclass
class PrototypeHeadConfig:
    """proto-lm's head: attention pooling -> similarity to P prototypes -> linear P -> C."""

    name: str = "prototype"
    num_prototypes: int | None = None  # P, a multiple of the class count C; null: prototypes_per_class x C
    # 25 by evidence (10 until 2026-12-01): at the CPU main table's budget, over 3 seeds, 25 per class
    # gained on QNLI (+0.069: every seed learned the pair task, where 10 left one at chance), MNLI
    # and SST-2, and at the demo's +0.009 over 6 seeds (experiments/results/cpu_main_table, study_demo).
    prototypes_per_class: int = 25
    # cosine | inv_l2 (the paper's 1/(d+eps)) | log_l2 (ProtoPNet). Cosine by evidence: on SST-2 at
    # the demo's budget it beat inv_l2 by 0.010 over 3 seeds, with a third of the spread
    # (experiments/results/study_demo).
    similarity: str = "cosine"
    eps: float = 1.0e-4  # keeps similarities finite when an embedding sits on a prototype
    prototype_init: str = "train_embeddings"  # pooled embeddings of training examples | random: N(0, init_std^2)
    init_std: float = 1.0
    attention_dim: int | None = None  # width of the word-attention projection W; null: the hidden size
    incorrect_class_weight: float = -0.5  # last-layer init from a prototype to the other classes (own: +1)
    last_layer_bias: bool = False  # a bias in the last layer P -> C (the released code has one)
    # The attention vector w: torch (Linear default) | normal: N(0, 1), as released | uniform: 0,
    # so pooling starts as the mean over real tokens.
    attention_init: str = "torch"

    # The encoder's learning rate under this head, as a multiple of optim.backbone_lr. The prototype
    # head gains more than the linear head from a faster encoder: on SST-2 at 2x it gained 0.009,
    # the linear head 0.005 from the same rate (study_demo, where the seeds and spreads are).
    encoder_lr_scale: float = 2.0

    def __post_init__(self):
        check_number("head.num_prototypes", self.num_prototypes, low=1, integer=True, allow_none=True)
        check_number("head.encoder_lr_scale", self.encoder_lr_scale, low=0, low_open=True)
        check_number("head.prototypes_per_class", self.prototypes_per_class, low=1, integer=True)
        from protolm.head import ATTENTION_INITS, SIMILARITIES  # here: reading a config needs no torch

        check_choice("head.similarity", self.similarity, SIMILARITIES)
        check_choice("head.attention_init", self.attention_init, ATTENTION_INITS)
        check_choice("head.prototype_init", self.prototype_init, PROTOTYPE_INITS)
        check_number("head.eps", self.eps, low=0, low_open=True)
        check_number("head.init_std", self.init_std, low=0, low_open=True)
        check_number("head.attention_dim", self.attention_dim, low=1, integer=True, allow_none=True)


@dataclass
class LinearHeadConfig:
    """The fine-tuning baseline: pool (backbone.pooling), dense + tanh, linear."""

    name: str = "linear"
    dropout: float = 0.1

    def __post_init__(self):
        check_number("head.dropout", self.dropout, low=0, high=1, high_open=True)


HEADS = {"prototype": PrototypeHeadConfig, "linear": LinearHeadConfig}


@dataclass
class LossConfig:
    """L = task * (cross-entropy, or MSE for a regression) + cohesion * L_coh + separation * L_sep.

    K, the number of prototypes cohesion and separation act on per example, is either a count
    (``k``) or a fraction of the prototypes per class (``k_fraction``, used when ``k`` is null).
    """

    task: float = 0.5
    cohesion: float = 0.25
    separation: float = 0.25
    k: int | None = None  # K as a count (1 <= K <= P/C); null: from k_fraction
    k_fraction: float = 0.5  # K = max(1, floor(k_fraction x P/C)), k_fraction in (0, 1]
    reference_signs: bool = False  # true: the reference code's inverted signs (for comparison only)

    def __post_init__(self):
        for key in ("task", "cohesion", "separation"):
            check_number(f"loss.{key}", getattr(self, key), low=0)
        check_number("loss.k", self.k, low=1, integer=True, allow_none=True)
        check_number("loss.k_fraction", self.k_fraction, low=0, high=1, low_open=True)

    def k_for(self, prototypes_per_class: int) -> int:
        """K for a head with this many prototypes per class."""
        if self.k is None:
            return max(1, int(self.k_fraction * prototypes_per_class))
        if self.k > prototypes_per_class:
            raise ConfigError(f"loss.k={self.k} must be at most the {prototypes_per_class} prototypes per class")
        return self.k


@dataclass
class InitConfig:
    """Where the encoder starts: its pretrained weights, or an earlier run's fine-tuned encoder.

    The two-stage recipe (the paper's practice: its example starts from an encoder already
    fine-tuned on the task) is ``init.two_stage=true``: one command fine-tunes with the linear
    head (into ``<run>/first_stage``), then trains the configured head on that encoder.
    """

    from_checkpoint: str | None = None  # a finished run's directory or a .ckpt: start from its encoder
    two_stage: bool = False  # fine-tune with the linear head first, then this head on that encoder


@dataclass
class OptimConfig:
    backbone_lr: float = "${backbone.lr}"  # type: ignore[assignment]  (an interpolation until resolved)
    head_lr: float = 3.0e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1  # linear warm-up over this fraction of the steps, then the decay
    scheduler: str = "linear"  # linear | cosine | constant (after warm-up)
    adam_eps: float = 1.0e-8
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    # The same AdamW update, computed differently: fused is 7x faster than the for-loop on a CPU
    # for MiniLM's 22.7 M parameters (19 against 136 ms a step), and the Hugging Face Trainer's default.
    implementation: str = "fused"
    freeze_backbone: bool = False  # train the head only
    freeze_layers: int = 0  # freeze the embeddings and the lowest N transformer layers

    def __post_init__(self):
        if not str(self.backbone_lr).startswith("${"):  # the schema's own default, resolved later
            check_number("optim.backbone_lr", self.backbone_lr, low=0)
        check_number("optim.head_lr", self.head_lr, low=0, low_open=True)
        check_number("optim.weight_decay", self.weight_decay, low=0)
        check_number("optim.warmup_ratio", self.warmup_ratio, low=0, high=1, high_open=True)
        check_number("optim.adam_eps", self.adam_eps, low=0, low_open=True)
        check_number("optim.freeze_layers", self.freeze_layers, low=0, integer=True)
        check_choice("optim.scheduler", self.scheduler, SCHEDULERS)
        check_choice("optim.implementation", self.implementation, OPTIMIZER_IMPLEMENTATIONS)
        if len(self.betas) != 2:
            raise ConfigError(f"optim.betas={list(self.betas)} must be two numbers in [0, 1)")
        for beta in self.betas:
            check_number("optim.betas", beta, low=0, high=1, high_open=True)


@dataclass
class DataConfig:
    data_dir: str = "${protolm_data_dir:}"  # PROTOLM_DATA_DIR, else ../shared/data beside the repository
    max_length: int = 128
    batch_size: int = 32
    eval_batch_size: int | None = None  # null: 2 x batch_size
    max_train_samples: int | None = None
    max_eval_samples: int | None = None  # caps both the selection (val) and the reported (test) split
    num_workers: int = 0
    split_seed: int = 0  # seeds carved validation slices and subsets; fixed across run seeds
    length_grouping: bool = True  # batch examples of similar length together
    dynamic_padding: bool = True  # pad each batch to its longest sequence (false: to max_length)
    hub: str = "auto"  # auto: the Hugging Face hub for missing local splits when reachable | never
    hub_timeout_s: float = 5.0  # how long to wait for the hub to answer before using local files only
    # Tokenized splits are kept as Arrow files and reused by later runs (protolm/data/cache.py).
    cache: bool = True  # false: build into a temporary folder removed at exit
    cache_dir: str | None = None  # null: PROTOLM_CACHE_DIR, else ~/.cache/protolm/data
    # Read the training split as a stream each epoch (corpora larger than memory or disk; what a
    # stream cannot do is refused: check_streaming), shuffled in a seeded buffer of this many examples.
    streaming: bool = False
    shuffle_buffer: int = 10_000

    def __post_init__(self):
        check_number("data.max_length", self.max_length, low=2, integer=True)
        check_number("data.batch_size", self.batch_size, low=1, integer=True)
        check_number("data.eval_batch_size", self.eval_batch_size, low=1, integer=True, allow_none=True)
        check_number("data.max_train_samples", self.max_train_samples, low=1, integer=True, allow_none=True)
        check_number("data.max_eval_samples", self.max_eval_samples, low=1, integer=True, allow_none=True)
        check_number("data.num_workers", self.num_workers, low=0, integer=True)
        check_number("data.hub_timeout_s", self.hub_timeout_s, low=0, low_open=True)
        check_number("data.shuffle_buffer", self.shuffle_buffer, low=1, integer=True)
        check_choice("data.hub", self.hub, HUB_MODES)

    @property
    def eval_batch(self) -> int:
        return self.eval_batch_size or 2 * self.batch_size


@dataclass
class ProjectConfig:
    """Tie prototypes to real training examples of their class (prototype head only)."""

    at_end: bool = True  # after training, on the selected checkpoint
    mode: str = "replace"  # replace: move each prototype onto its nearest example | link: only record them
    top_k: int = 5  # nearest examples stored per prototype
    every_n_epochs: int = 0  # also project at the end of every N-th training epoch (0: never)
    # After a replace, train only the last layer for N epochs (ProtoPNet's last-layer phase). 1 by
    # evidence: on SST-5 the replace cost the shipped model 0.06 without it and nothing with it
    # (experiments/results/cpu_main_table).
    last_layer_epochs: int = 1
    report_unprojected: bool = True  # also test the model before projection ("unprojected/test/*")

    def __post_init__(self):
        check_choice("project.mode", self.mode, PROJECTION_MODES)
        check_number("project.top_k", self.top_k, low=1, integer=True)
        check_number("project.every_n_epochs", self.every_n_epochs, low=0, integer=True)
        check_number("project.last_layer_epochs", self.last_layer_epochs, low=0, integer=True)


@dataclass
class HealthConfig:
    """Prototype health: usage, dead prototypes, duplicates, class purity, a 2-D map."""

    at_end: bool = True  # after training (health.json, prototypes_pca.png in the run directory)
    k: int = 10  # purity: share of the k nearest training examples in its class (its replace anchor excluded)
    usage_split: str = "train"  # examples over which usage (nearest / top contributor) is counted
    duplicate_cosine: float = 0.999  # prototypes this cosine-similar are near-identical
    plot: bool = True  # prototypes_pca.png
    plot_max_examples: int = 2000

    def __post_init__(self):
        check_number("health.k", self.k, low=1, integer=True)
        check_number("health.duplicate_cosine", self.duplicate_cosine, low=-1, high=1)
        check_number("health.plot_max_examples", self.plot_max_examples, low=1, integer=True)


@dataclass
class PruneConfig:
    """Remove prototypes whose purity is below min_purity (every class keeps its purest one)."""

    enabled: bool = False
    k: int = 10  # purity over the k nearest training examples (its replace anchor excluded)
    min_purity: float = 0.5

    def __post_init__(self):
        check_number("prune.k", self.k, low=1, integer=True)
        check_number("prune.min_purity", self.min_purity, low=0, high=1)


@dataclass
class CheckpointConfig:
    save_top_k: int = 1  # best checkpoints kept on the selection metric
    save_last: bool = True  # last.ckpt at every epoch end
    every_n_train_steps: int | None = None  # also save last.ckpt every N optimizer steps (long epochs)
    save_on_sigterm: bool = True  # a cluster's SIGTERM before preemption saves last.ckpt, then exits
    # What a finished run keeps: last.ckpt, the full training state (to extend the run), and the
    # shipped model's weights (the best checkpoint holds weights only); when the shipped model is
    # the last state itself, last.ckpt alone. true: also the checkpoints before the shipped one (the
    # selected one before projection, the projected one before pruning), e.g. to re-project.
    keep_intermediate: bool = False


@dataclass
class EarlyStoppingConfig:
    enabled: bool = False
    patience: int = 3


@dataclass
class CallbacksConfig:
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    progress_bar: str = "rich"  # rich | tqdm | none

    def __post_init__(self):
        check_choice("callbacks.progress_bar", self.progress_bar, PROGRESS_BARS)
        check_number("callbacks.checkpoint.save_top_k", self.checkpoint.save_top_k, low=-1, integer=True)
        check_number(
            "callbacks.checkpoint.every_n_train_steps",
            self.checkpoint.every_n_train_steps,
            low=1,
            integer=True,
            allow_none=True,
        )
        check_number("callbacks.early_stopping.patience", self.early_stopping.patience, low=1, integer=True)


@dataclass
class RunConfig:
    """The schema of ``conf/config.yaml``: what ``python run.py`` accepts."""

    seed: int = 42
    ckpt_path: str | None = None  # resume: a .ckpt, a run directory, or `last` (newest run with the same overrides)
    overwrite: bool = False  # allow writing into a run directory that already holds results/checkpoints
    traceback: bool = False  # print full tracebacks on errors (also PROTOLM_DEBUG=1)
    optimized_metric: str | None = None  # the results.json metric returned to a sweeper (null: the selection one)
    plan: bool = False  # print the estimated accelerator memory of this run (protolm/plan.py) and exit
    task: Any = MISSING  # a task YAML: checked by protolm.data.task.TaskSpec
    backbone: BackboneConfig = MISSING
    head: Any = MISSING  # PrototypeHeadConfig or LinearHeadConfig (conf/head/*.yaml)
    loss: LossConfig = field(default_factory=LossConfig)
    init: InitConfig = field(default_factory=InitConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    project: ProjectConfig = field(default_factory=ProjectConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    data: DataConfig = field(default_factory=DataConfig)
    trainer: dict[str, Any] = field(default_factory=dict)  # lightning.pytorch.Trainer arguments (checked by name)
    logger: Any = None
    callbacks: CallbacksConfig = field(default_factory=CallbacksConfig)
    paths: Any = MISSING


def register_schemas() -> None:
    """Make the schemas available to ``defaults`` lists (``conf/config.yaml``, ``conf/head/*.yaml``)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(name="run_schema", node=RunConfig)
    for name, schema in HEADS.items():
        store.store(group="head", name=f"{name}_schema", node=schema)


# ----------------------------------------------------------------------------- reading
def section(node, schema: type, where: str | None = None):
    """A config section (DictConfig or dict) as its dataclass, checked; unknown keys are refused."""
    if isinstance(node, DictConfig):
        refuse_missing(node)
    values = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    names = {f.name for f in dataclasses.fields(schema)}
    check_keys(where or schema.__name__, values, names)
    hints = typing.get_type_hints(schema)
    for key, value in values.items():
        nested = next((t for t in (hints[key], *typing.get_args(hints[key])) if dataclasses.is_dataclass(t)), None)
        if nested is not None and isinstance(value, dict):
            values[key] = section(value, nested, f"{where}.{key}" if where else None)
    return schema(**values)


def refuse_missing(node: DictConfig) -> None:
    """A config whose required values (``???``) are unset is one error naming them all."""
    missing = sorted(OmegaConf.missing_keys(node))
    if missing:
        given = ", ".join(f"{key}=..." for key in missing)
        raise ConfigError(f"{', '.join(missing)} must be given on the command line ({given})")


def head_section(node) -> PrototypeHeadConfig | LinearHeadConfig:
    name = node["name"]
    check_choice("head.name", name, HEADS)
    return section(node, HEADS[name], "head")


@dataclass
class Settings:
    """A run's configuration as checked objects (what the code reads; the DictConfig is what is saved)."""

    task: TaskSpec
    backbone: BackboneConfig
    head: PrototypeHeadConfig | LinearHeadConfig
    loss: LossConfig
    init: InitConfig
    optim: OptimConfig
    data: DataConfig
    project: ProjectConfig
    health: HealthConfig
    prune: PruneConfig
    callbacks: CallbacksConfig
    trainer: dict
    seed: int

    @property
    def is_prototype(self) -> bool:
        return isinstance(self.head, PrototypeHeadConfig)


def read_settings(cfg: DictConfig | dict, check_trainer: bool = True) -> Settings:
    """Check every section of a run config; fills ``head.num_prototypes`` (in ``cfg`` too) from the task."""
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(cfg)
    check_keys("config", [k for k in cfg if k != "hydra"], {f.name for f in dataclasses.fields(RunConfig)})
    refuse_missing(cfg)
    task = TaskSpec.from_config(OmegaConf.to_container(cfg.task, resolve=True))
    head = head_section(cfg.head)
    schemas = {"backbone": BackboneConfig, "loss": LossConfig, "init": InitConfig, "optim": OptimConfig}
    schemas |= {"data": DataConfig}
    schemas |= {"project": ProjectConfig, "health": HealthConfig, "prune": PruneConfig, "callbacks": CallbacksConfig}
    parts = {name: section(cfg[name], schema, name) for name, schema in schemas.items()}
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    settings = Settings(task=task, head=head, trainer=trainer, seed=cfg.seed, **parts)
    if settings.is_prototype:
        head.num_prototypes = prototype_count(head, task.name, task.num_classes)
        with open_dict(cfg):
            cfg.head.num_prototypes = head.num_prototypes
        settings.loss.k_for(head.num_prototypes // task.num_classes)
    loss = settings.loss
    if loss.task + (loss.cohesion + loss.separation if settings.is_prototype else 0) <= 0:
        raise ConfigError("loss.task, loss.cohesion and loss.separation are all 0: nothing to train")
    if task.metric == "f1" and task.num_classes != 2:
        raise ConfigError(f"task.metric=f1 needs two classes; task {task.name} has {task.num_classes} (use f1_macro)")
    if settings.init.two_stage and (settings.init.from_checkpoint or not settings.is_prototype):
        raise ConfigError(
            "init.two_stage=true fine-tunes with the linear head, then trains head=prototype on that encoder: "
            "use it with head=prototype and without init.from_checkpoint"
        )
    if settings.backbone.peft == "lora" and (settings.optim.freeze_backbone or settings.optim.freeze_layers):
        raise ConfigError(
            "backbone.peft=lora already freezes every encoder weight but the adapters: drop "
            "optim.freeze_backbone / optim.freeze_layers (or backbone.peft=lora to freeze without adapters)"
        )
    if settings.backbone.peft == "lora" and settings.optim.backbone_lr != settings.backbone.lr:
        raise ConfigError(
            f"optim.backbone_lr={settings.optim.backbone_lr} would be ignored: under backbone.peft=lora the "
            f"adapters train at backbone.lora.lr ({settings.backbone.lora.lr}); set that instead"
        )
    check_streaming(settings)
    if check_trainer:
        check_trainer_args(trainer)
    return settings


def check_streaming(s: Settings) -> None:
    """``data.streaming=true`` reads the training split in order, once per epoch: what needs the
    whole split at hand is refused here, each with its fix, rather than done differently."""
    if not s.data.streaming:
        return
    conflicts = []
    if s.data.length_grouping:
        conflicts.append("grouping batches by length over the whole split (set data.length_grouping=false)")
    if s.data.max_train_samples is not None:
        conflicts.append("a seeded subset of the split (set data.max_train_samples=null; cut the file instead)")
    carved = [c.split for c in s.task.carve if "train" in (c.split, c.from_split)]
    if carved:
        conflicts.append(
            f"carving {', '.join(carved)} out of train (give task {s.task.name} a validation file and "
            "task.select_on=validation)"
        )
    if not isinstance(s.trainer.get("max_steps"), int) or s.trainer.get("max_steps", -1) <= 0:
        conflicts.append("knowing the number of steps without reading the stream (set trainer.max_steps)")
    if s.data.num_workers:
        conflicts.append("loader workers (set data.num_workers=0)")
    if s.is_prototype:
        stages = {
            "head.prototype_init=train_embeddings": s.head.prototype_init == "train_embeddings",
            "project.at_end=true": s.project.at_end,
            "project.every_n_epochs": bool(s.project.every_n_epochs),
            "health.at_end=true": s.health.at_end,
            "prune.enabled=true": s.prune.enabled,
        }
        used = [name for name, on in stages.items() if on]
        if used:
            conflicts.append(
                f"random access to the training split, which {', '.join(used)} need (turn them off: "
                "head.prototype_init=random project.at_end=false health.at_end=false; or keep "
                "data.streaming=false, whose memory-mapped Arrow files already hold corpora larger than memory)"
            )
    if conflicts:
        raise ConfigError(
            "data.streaming=true reads the training split as a stream, which rules out " + "; ".join(conflicts)
        )


def prototype_count(head: PrototypeHeadConfig, task_name: str, num_classes: int) -> int:
    """P for this task: head.num_prototypes, else prototypes_per_class x C; a multiple of C."""
    from protolm.head import equal_blocks_error

    count = head.num_prototypes if head.num_prototypes is not None else head.prototypes_per_class * num_classes
    if equal_blocks_error(count, num_classes):
        lower = max(num_classes, count // num_classes * num_classes)
        raise ConfigError(
            f"head.num_prototypes={count} must be a multiple of task {task_name}'s "
            f"{num_classes} class{'es' if num_classes > 1 else ''} (e.g. {lower} or {lower + num_classes})"
        )
    return count


def check_trainer_args(trainer: dict) -> None:
    """``trainer.*`` passes to Lightning's Trainer: every name must be one of its arguments, every
    value of the type its signature declares, and the accelerator one this machine has."""
    from lightning.pytorch import Trainer
    from pydantic import ConfigDict, TypeAdapter
    from pydantic import ValidationError as WrongType

    valid = set(inspect.signature(Trainer.__init__).parameters) - {"self", "callbacks", "logger", "plugins"}
    check_keys("trainer", list(trainer), valid)
    hints = typing.get_type_hints(Trainer.__init__)
    for key, value in trainer.items():
        adapter = TypeAdapter(hints[key], config=ConfigDict(arbitrary_types_allowed=True))
        try:
            adapter.validate_python(value, strict=True)
        except WrongType:
            wanted = hints[key].__name__ if isinstance(hints[key], type) else str(hints[key])
            wanted = wanted.replace("typing.", "").replace("NoneType", "None")
            raise ConfigError(
                f"trainer.{key}={value!r} is not of the type Lightning's Trainer takes: {wanted}"
            ) from None
    accelerator = str(trainer.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda", "mps"):
        import torch

        available = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
        if not (any(available.values()) if accelerator == "gpu" else available[accelerator]):
            raise ConfigError(
                f"trainer.accelerator={accelerator}: torch sees no {'GPU' if accelerator == 'gpu' else accelerator} "
                "device on this machine; use trainer.accelerator=cpu, or auto to take one where there is one"
            )


def to_container(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)


# ----------------------------------------------------------------------------- resolvers
def default_data_dir() -> str:
    """PROTOLM_DATA_DIR, else ``../shared/data`` beside the repository."""
    return os.environ.get("PROTOLM_DATA_DIR") or str((REPO_ROOT.parent / "shared" / "data").resolve())


def asset(name: str) -> str:
    """``${protolm_asset:name}``: a file or folder shipped inside the package (protolm/assets/)."""
    return str(Path(__file__).resolve().parent / "assets" / name)


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
    for name, function in (
        ("protolm_sweep_group", sweep_group),
        ("protolm_data_dir", default_data_dir),
        ("protolm_mkdir", make_dir),
        ("protolm_asset", asset),
    ):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, function)


register_resolvers()
register_schemas()
