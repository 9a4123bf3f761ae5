"""The training sections of a run config: optimisation, data, checkpoints and callbacks."""

from __future__ import annotations

from dataclasses import dataclass

from protolm.config.fields import group, option
from protolm.utils.errors import ConfigError, check_choice, check_number
from protolm.utils.progress import LINE_EVERY_S, MAX_LINE_EVERY_S

SCHEDULERS = ("linear", "cosine", "constant")
# torch.optim.AdamW's implementations: one fused kernel over all parameters, one multi-tensor
# kernel per operation, or a Python loop over the parameters (torch's default on a CPU).
OPTIMIZER_IMPLEMENTATIONS = ("fused", "foreach", "for_loop")
HUB_MODES = ("auto", "never")
PROGRESS_BARS = ("rich", "tqdm", "none")
PROGRESS_EVERY_HELP = (
    f"off a terminal (a file, nohup, a cluster job, CI): seconds between progress lines, in (0, {MAX_LINE_EVERY_S}]"
)


def check_progress_every(key: str, seconds) -> None:
    """A progress interval: more than 0 s, at most an hour."""
    check_number(key, seconds, low=0, low_open=True, high=MAX_LINE_EVERY_S)


@dataclass
class OptimConfig:
    """AdamW with separate learning rates for the encoder and the head, warm-up and decay."""

    backbone_lr: float = option("${backbone.lr}", "the encoder's learning rate (default: the backbone's lr)")
    head_lr: float = option(3.0e-3, "the head's learning rate (prototypes, attention, last layer)")
    weight_decay: float = option(0.01, "AdamW weight decay (never on prototypes, biases or norms)")
    warmup_ratio: float = option(0.1, "linear warm-up over this fraction of the steps, then the decay")
    scheduler: str = option("linear", "the decay after warm-up: linear | cosine | constant")
    adam_eps: float = option(1.0e-8, "AdamW's epsilon")
    betas: list[float] = option([0.9, 0.999], "AdamW's betas")
    implementation: str = option(
        "fused", "how AdamW is computed, the same update: fused (one kernel; 7x faster on a CPU) | foreach | for_loop"
    )
    freeze_backbone: bool = option(False, "train the head only")
    freeze_layers: int = option(0, "freeze the embeddings and the lowest N transformer layers")

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
    """Where the task's files are and how examples are batched."""

    data_dir: str = option("${protolm_data_dir:}", "task files: PROTOLM_DATA_DIR, else ../shared/data beside the repo")
    max_length: int = option(128, "tokens per example (longer texts are truncated and counted)")
    batch_size: int = option(32, "training batch size")
    eval_batch_size: int | None = option(None, "evaluation batch size; null: 2 x batch_size")
    max_train_samples: int | None = option(None, "a seeded subset of the training split")
    max_eval_samples: int | None = option(None, "a seeded subset of both the selection (val) and reported (test) split")
    num_workers: int = option(0, "DataLoader worker processes")
    split_seed: int = option(0, "seeds carved slices and subsets; fixed across run seeds")
    length_grouping: bool = option(True, "batch examples of similar length together")
    dynamic_padding: bool = option(True, "pad each batch to its longest sequence (false: to max_length)")
    hub: str = option("auto", "auto: the Hugging Face hub for missing local splits when reachable | never")
    hub_timeout_s: float = option(5.0, "seconds to wait for the hub before using local files only")
    cache: bool = option(True, "keep tokenized splits as Arrow files for later runs (false: a temporary folder)")
    cache_dir: str | None = option(None, "where the cache lives; null: PROTOLM_CACHE_DIR, else ~/.cache/protolm/data")
    streaming: bool = option(False, "read the training split as a stream each epoch (for corpora larger than disk)")
    shuffle_buffer: int = option(10_000, "the stream's seeded shuffle buffer, in examples")
    shortcut_token: str | None = option(None, "a study's planted shortcut: this token inserted into train and val")
    shortcut_class: int = option(1, "with shortcut_token: the class whose examples get it")
    shortcut_share: float = option(0.5, "with shortcut_token: the share of that class's examples that get it")

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
        check_number("data.shortcut_class", self.shortcut_class, low=0, integer=True)
        check_number("data.shortcut_share", self.shortcut_share, low=0, high=1, low_open=True)

    @property
    def eval_batch(self) -> int:
        return self.eval_batch_size or 2 * self.batch_size


@dataclass
class CheckpointConfig:
    """Which checkpoints a run writes and keeps."""

    save_top_k: int = option(1, "best checkpoints kept on the selection metric")
    save_last: bool = option(True, "last.ckpt (the full training state) at every epoch end")
    every_n_train_steps: int | None = option(None, "also save last.ckpt every N optimizer steps (long epochs)")
    save_on_sigterm: bool = option(True, "a cluster's SIGTERM (or Ctrl-C) saves last.ckpt, then exits")
    keep_intermediate: bool = option(
        False, "also keep the checkpoints before the shipped one (the selected one before projection, ...)"
    )


@dataclass
class EarlyStoppingConfig:
    enabled: bool = option(False, "stop when the selection metric stops improving")
    patience: int = option(3, "validations without improvement before stopping")


@dataclass
class CallbacksConfig:
    checkpoint: CheckpointConfig = group(CheckpointConfig, "checkpoint writing")
    early_stopping: EarlyStoppingConfig = group(EarlyStoppingConfig, "early stopping")
    progress_bar: str = option("rich", "the bar on a terminal: rich | tqdm | none (none: progress lines there too)")
    progress_every_s: float = option(LINE_EVERY_S, PROGRESS_EVERY_HELP)

    def __post_init__(self):
        check_choice("callbacks.progress_bar", self.progress_bar, PROGRESS_BARS)
        check_progress_every("callbacks.progress_every_s", self.progress_every_s)
        check_number("callbacks.checkpoint.save_top_k", self.checkpoint.save_top_k, low=-1, integer=True)
        check_number(
            "callbacks.checkpoint.every_n_train_steps",
            self.checkpoint.every_n_train_steps,
            low=1,
            integer=True,
            allow_none=True,
        )
        check_number("callbacks.early_stopping.patience", self.early_stopping.patience, low=1, integer=True)
