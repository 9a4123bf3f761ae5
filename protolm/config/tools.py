"""The typed configs of the commands that use a trained model (explain, project, health, evaluate,
export, predict, serve, edit): every key, its type, default, meaning and allowed range.

Each command's YAML (conf/<command>.yaml) lists its schema first, so Hydra refuses an unknown key or
a value of the wrong type while composing; :func:`check_tool_config` then checks the ranges (the
``__post_init__`` of each dataclass) before the command does anything. Reading these needs no torch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from omegaconf import MISSING

from protolm.config.fields import group, option
from protolm.config.prototypes import (
    LAST_LAYER_OBJECTIVES,
    RATIONALE_NAMES,
    FaithfulnessConfig,
    HealthConfig,
    ProjectConfig,
    PruneConfig,
)
from protolm.config.reading import section
from protolm.config.training import PROGRESS_EVERY_HELP, check_progress_every
from protolm.utils.errors import ConfigError, check_choice, check_device, check_number
from protolm.utils.progress import LINE_EVERY_S

log = logging.getLogger(__name__)
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
MODEL_HELP = "the trained model: a run directory, a checkpoint (.ckpt), an exported model directory or a hub id"


@dataclass
class ToolConfig:
    """What every command shares (conf/_tool.yaml)."""

    device: str = option("cpu", "cpu | cuda | cuda:<index> | mps")
    output_dir: str = option("${hydra:runtime.output_dir}", "where the command writes (a fresh folder per call)")
    traceback: bool = option(False, "print full tracebacks on errors (also PROTOLM_DEBUG=1)")
    overwrite: bool = option(False, "allow writing into an output directory that already holds this command's outputs")
    progress_every_s: float = option(LINE_EVERY_S, PROGRESS_EVERY_HELP)

    def __post_init__(self):
        check_device("device", self.device)
        check_progress_every("progress_every_s", self.progress_every_s)


@dataclass
class ModelToolConfig(ToolConfig):
    """A command that reads a trained model (``model=``; ``ckpt_path=`` is its older name)."""

    model: str | None = option(None, MODEL_HELP)
    ckpt_path: str | None = option(None, "the older name of model= (accepted for one release)")

    def __post_init__(self):
        super().__post_init__()
        if self.model is not None and self.ckpt_path is not None and self.model != self.ckpt_path:
            raise ConfigError("model= and ckpt_path= name two models: give model= only (ckpt_path is its older name)")
        if self.model is None and self.ckpt_path is None:
            raise ConfigError("model must be given on the command line (model=<run dir | .ckpt | exported dir>)")


@dataclass
class ToolDataConfig:
    """data.* of a command: null keeps the training run's value."""

    data_dir: str | None = option(None, "where the training run's task files are now (null: where they were)")


@dataclass
class EvaluateDataConfig(ToolDataConfig):
    max_eval_samples: int | None = option(None, "a seeded subset of the evaluated split")

    def __post_init__(self):
        check_number("data.max_eval_samples", self.max_eval_samples, low=1, integer=True, allow_none=True)


@dataclass
class ExplainConfig(ModelToolConfig):
    text: str | None = option(None, "one text to explain")
    text_pair: str | None = option(None, "its second text, for pair tasks (rte, mnli, ...)")
    input_file: str | None = option(None, "one input per line; pair tasks: text<TAB>text_pair")
    split: str | None = option(None, "or examples of the training task's split: train | val | test | <split name>")
    max_inputs: int = option(50, "at most this many inputs from input_file / split (more: said, not silent)")
    top_k: int = option(3, "prototypes shown per input, by contribution to the predicted class")
    nearest: int = option(3, "nearest training examples shown per prototype")
    max_length: int | None = option(None, "tokens read per input; null: the length the model was trained at")
    rationale: str = option("greedy_gates", "how words are weighed: " + " | ".join(RATIONALE_NAMES))
    data: ToolDataConfig = group(ToolDataConfig, "the training run's data, for split=")

    def __post_init__(self):
        super().__post_init__()
        for key in ("max_inputs", "top_k", "nearest"):
            check_number(key, getattr(self, key), low=1, integer=True)
        check_number("max_length", self.max_length, low=2, integer=True, allow_none=True)
        check_choice("rationale", self.rationale, RATIONALE_NAMES)


@dataclass
class ProjectToolConfig(ModelToolConfig):
    project: ProjectConfig = group(ProjectConfig, "how to project (at_end and every_n_epochs are training's)")
    data: ToolDataConfig = group(ToolDataConfig, "the training run's data")


@dataclass
class HealthToolConfig(ModelToolConfig):
    health: HealthConfig = group(HealthConfig, "what to measure")
    phrases: list[str] = option([], "list the prototypes whose nearest examples contain these words (a shortcut hunt)")
    prune: PruneConfig = group(PruneConfig, "prune.enabled=true writes pruned.ckpt")
    data: ToolDataConfig = group(ToolDataConfig, "the training run's data")


@dataclass
class EvaluateConfig(ModelToolConfig):
    split: str = option("test", "train | val | test | a split name of the task")
    faithfulness: FaithfulnessConfig = group(FaithfulnessConfig, "what to measure")
    data: EvaluateDataConfig = group(EvaluateDataConfig, "the training run's data")
    batch_size: int = option(32, "examples per forward pass")

    def __post_init__(self):
        super().__post_init__()
        check_number("batch_size", self.batch_size, low=1, integer=True)


@dataclass
class ExportConfig(ModelToolConfig):
    out: str = option(
        MISSING, "the model directory to write; an existing one only if an earlier export (overwrite=true)"
    )
    onnx: bool = option(False, "also write model.onnx (logits, similarities, token attention)")
    push_to_hub: bool = option(False, "upload out to the Hugging Face hub as repo_id")
    repo_id: str | None = option(None, "<user or organisation>/<name> on the hub")
    private: bool = option(True, "a new hub repository is private unless private=false")
    hub_timeout_s: float = option(5.0, "how long to wait for the hub before failing")

    def __post_init__(self):
        super().__post_init__()
        check_number("hub_timeout_s", self.hub_timeout_s, low=0, low_open=True)


@dataclass
class PredictConfig(ModelToolConfig):
    input_file: str = option(
        MISSING, ".txt: one text per line (pairs: text<TAB>text_pair); .csv: a header row; .jsonl; each line a row"
    )
    output: str = option(
        MISSING,
        ".jsonl: row, text, prediction, probs, truncated, empty (+ explanation fields); .csv: prob_<label> "
        "columns; never the input; an interrupted run's rows are kept in <output>.partial and the same command "
        "goes on from them",
    )
    text_field: str = option("text", "the text's column (.csv) or key (.jsonl)")
    text_pair_field: str = option("text_pair", "the second text's column or key (pair models)")
    batch_size: int = option(32, "examples per forward pass")
    chunk_size: int = option(
        1024, "rows read at a time and sorted by length inside (bounds memory; an interruption loses at most one)"
    )
    explain: bool = option(False, "add the explanation of each prediction (prototype models)")
    rationale: str = option("greedy_gates", "with explain: how words are weighed: " + " | ".join(RATIONALE_NAMES))
    top_k: int = option(3, "with explain: prototypes per row")
    nearest: int = option(3, "with explain: training examples per prototype")
    progress: bool = option(True, "a progress bar on a terminal, a log line every progress_every_s elsewhere")

    def __post_init__(self):
        super().__post_init__()
        for key in ("batch_size", "chunk_size", "top_k", "nearest"):
            check_number(key, getattr(self, key), low=1, integer=True)
        check_choice("rationale", self.rationale, RATIONALE_NAMES)


@dataclass
class ServeConfig(ModelToolConfig):
    host: str = option("127.0.0.1", "loopback only; 0.0.0.0 listens on every interface (no authentication)")
    port: int = option(8000, "the port to listen on")
    max_texts: int = option(64, "texts per request (more: 422)")
    max_chars: int = option(10000, "characters per text (more: 422)")
    max_body_bytes: int = option(1000000, "request body (more: 413)")
    max_waiting: int = option(32, "model requests queued or running at once (more: 503); /health never waits")
    batch_window_ms: float = option(
        5.0, "how long the model waits for one more request to batch with those it has (0: only those waiting)"
    )
    max_batch_texts: int = option(32, "texts in one model call at most: concurrent requests are batched up to it")
    log_level: str = option("info", "uvicorn's log level")
    edits: bool = option(True, "the page's edit actions and POST /edit (loopback only; edited models in output_dir)")

    def __post_init__(self):
        super().__post_init__()
        for key in ("max_texts", "max_chars", "max_body_bytes", "max_waiting"):
            check_number(key, getattr(self, key), low=1, integer=True)
        check_number("batch_window_ms", self.batch_window_ms, low=0, high=1000)
        check_number("max_batch_texts", self.max_batch_texts, low=1, high=1024, integer=True)
        check_number("port", self.port, low=0, high=65535, integer=True)
        check_choice("log_level", self.log_level, LOG_LEVELS)


@dataclass
class ForbidConfig:
    """forbid.*: a concept the model must stop relying on, and the debugging fine-tune that follows."""

    phrases: list[str] = option([], "words or phrases (whole words, any case) the model must not rely on")
    texts: list[str] = option([], "example texts of the concept")
    min_share: float = option(0.8, "a prototype carries a phrase when this share of its nearest examples has it")
    remove: bool = option(True, "remove the prototypes that carry the concept (allowed ones stay)")
    fine_tune: bool = option(True, "then the debugging fine-tune: counterfactuals and the forgetting term")
    tune_encoder: bool = option(False, "the fine-tune also trains the encoder (where the encoder learned it)")
    epochs: int = option(1, "fine-tune epochs over its examples")
    forgetting: float = option(1.0, "the forgetting term's weight (prototypes pushed from the concept)")
    max_examples: int = option(2000, "examples with a phrase used (and as many with it inserted)")

    def __post_init__(self):
        check_number("forbid.min_share", self.min_share, low=0, high=1, low_open=True)
        check_number("forbid.epochs", self.epochs, low=1, integer=True)
        check_number("forbid.forgetting", self.forgetting, low=0)
        check_number("forbid.max_examples", self.max_examples, low=1, integer=True)


@dataclass
class RetrainConfig:
    """retrain.*: the last-layer phase after an edit (on the training split's cached embeddings)."""

    epochs: int = option(3, "last-layer epochs after the edit (0: none)")
    objective: str = option("distill", "distill (the answers before the edit) | labels")

    def __post_init__(self):
        check_number("retrain.epochs", self.epochs, low=0, integer=True)
        check_choice("retrain.objective", self.objective, LAST_LAYER_OBJECTIVES)


@dataclass
class EditToolConfig(ModelToolConfig):
    """One edit round: one of remove, replace, add, forbid; allow= alone or beside it."""

    remove: list[int] = option([], "prototype ids to remove, e.g. remove=[3,17]")
    replace: int | None = option(None, "a prototype to move onto a training example (example= or example_text=)")
    example: int | None = option(None, "with replace: the example's position in the training split")
    example_text: str | None = option(None, "with replace: the example's text, exactly as in the training split")
    add: list[str] = option([], "texts to add as new prototypes of add_class")
    add_class: str | None = option(None, "with add: the class name (or index) of the new prototypes")
    forbid: ForbidConfig = group(ForbidConfig, "a concept to stop relying on")
    allow: list[int] = option([], "prototype ids to keep as they are in this and later edits")
    retrain: RetrainConfig = group(RetrainConfig, "the last-layer phase after the edit")
    max_flipped: int = option(20, "flipped predictions explained in the report")
    data: ToolDataConfig = group(ToolDataConfig, "the training run's data")

    def __post_init__(self):
        super().__post_init__()
        check_number("max_flipped", self.max_flipped, low=0, integer=True)
        asked = [name for name, given in self.edits_asked().items() if given]
        if len(asked) > 1 or not (asked or self.allow):
            which = f"got {', '.join(asked)}" if asked else "got none"
            raise ConfigError(f"edit: give one of remove=, replace=, add=, forbid.phrases=/texts=, or allow= ({which})")
        if self.replace is not None and (self.example is None) == (self.example_text is None):
            raise ConfigError("replace= needs exactly one of example=<position> or example_text=<text>")
        if self.add and self.add_class is None:
            raise ConfigError("add= needs add_class=<class name>")

    def edits_asked(self) -> dict[str, bool]:
        """Which edit the command asks for (allow= is not one: it marks what later edits keep)."""
        return {
            "remove": bool(self.remove),
            "replace": self.replace is not None,
            "add": bool(self.add),
            "forbid": bool(self.forbid.phrases or self.forbid.texts),
        }


TOOL_SCHEMAS = {
    "explain": ExplainConfig,
    "project": ProjectToolConfig,
    "health": HealthToolConfig,
    "evaluate": EvaluateConfig,
    "export": ExportConfig,
    "predict": PredictConfig,
    "serve": ServeConfig,
    "edit": EditToolConfig,
}


def check_tool_config(config_name: str, cfg):
    """Every range of the command's config (Hydra has checked the names and types), as its dataclass."""
    checked = section(cfg, TOOL_SCHEMAS[config_name], "")
    if isinstance(checked, ModelToolConfig) and checked.model is None:
        log.warning("ckpt_path= is the older name of model=; it is accepted for one release")
        checked.model = checked.ckpt_path
    return checked
