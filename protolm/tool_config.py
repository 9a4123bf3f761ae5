"""The typed configs of the checkpoint tools and serving commands (explain.py, project.py, health.py,
evaluate.py, export.py, predict.py, serve.py): every key, its type, default and allowed range.

Each tool's YAML (conf/<tool>.yaml) lists its schema first, so Hydra refuses an unknown key or a
value of the wrong type while composing; :func:`check_tool_config` then checks the ranges (the
``__post_init__`` of each dataclass) before the tool does anything. Reading these needs no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

from protolm.config import HealthConfig, PruneConfig, section
from protolm.errors import check_choice, check_device, check_number

# faithfulness: how tokens are removed from a text, and whose probability is measured
TOKEN_REMOVALS = ("delete", "mask")
FAITHFULNESS_TARGETS = ("predicted", "true")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


@dataclass
class ToolConfig:
    """What every tool shares (conf/_tool.yaml)."""

    device: str = "cpu"  # cpu | cuda | cuda:<index> | mps
    output_dir: str = "${hydra:runtime.output_dir}"
    traceback: bool = False
    overwrite: bool = False  # allow writing into an output directory that already holds this tool's outputs

    def __post_init__(self):
        check_device("device", self.device)


@dataclass
class ToolDataConfig:
    """data.* of a tool: null keeps the training run's value."""

    data_dir: str | None = None


@dataclass
class EvaluateDataConfig(ToolDataConfig):
    max_eval_samples: int | None = None

    def __post_init__(self):
        check_number("data.max_eval_samples", self.max_eval_samples, low=1, integer=True, allow_none=True)


@dataclass
class ExplainConfig(ToolConfig):
    ckpt_path: str = MISSING  # a finished run's directory or a .ckpt
    text: str | None = None
    text_pair: str | None = None  # the second text, for pair tasks (rte, mnli, ...)
    input_file: str | None = None  # one input per line; pair tasks: text<TAB>text_pair
    split: str | None = None  # or examples of a split of the training task: train | val | test | <split name>
    max_inputs: int = 50  # at most this many inputs from input_file / split (more: said, not silent)
    top_k: int = 3  # prototypes shown per input, by contribution to the predicted class
    nearest: int = 3  # nearest training examples shown per prototype
    max_length: int | None = None  # null: the training run's data.max_length
    data: ToolDataConfig = field(default_factory=ToolDataConfig)

    def __post_init__(self):
        super().__post_init__()
        for key in ("max_inputs", "top_k", "nearest"):
            check_number(key, getattr(self, key), low=1, integer=True)
        check_number("max_length", self.max_length, low=2, integer=True, allow_none=True)


@dataclass
class ProjectToolConfig(ToolConfig):
    ckpt_path: str = MISSING
    mode: str = "replace"  # replace: move prototypes onto their nearest example | link: only record them
    top_k: int = 5  # nearest examples stored per prototype
    data: ToolDataConfig = field(default_factory=ToolDataConfig)

    def __post_init__(self):
        from protolm.config import PROJECTION_MODES

        super().__post_init__()
        check_choice("mode", self.mode, PROJECTION_MODES)
        check_number("top_k", self.top_k, low=1, integer=True)


@dataclass
class HealthToolConfig(ToolConfig):
    ckpt_path: str = MISSING
    health: HealthConfig = field(default_factory=HealthConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    data: ToolDataConfig = field(default_factory=ToolDataConfig)


@dataclass
class FaithfulnessConfig:
    prototype_ks: list[int] = field(default_factory=lambda: [1, 3, 5, 10])  # k removed / kept; k >= P is left out
    random_draws: int = 10  # random-prototype baselines (any class, same class): draws per example
    token_bins: list[float] = field(default_factory=lambda: [0.01, 0.05, 0.1, 0.2, 0.5])  # rationale sizes
    token_removal: str = "delete"  # delete | mask (replace by the tokenizer's mask token)
    target: str = "predicted"  # whose probability: the predicted class | the true label
    integrated_gradients: bool = False  # also a Captum integrated-gradients rationale (slow on CPU)
    seed: int = 0

    def __post_init__(self):
        for k in self.prototype_ks:
            check_number("faithfulness.prototype_ks[]", k, low=1, integer=True)
        check_number("faithfulness.random_draws", self.random_draws, low=1, integer=True)
        for share in self.token_bins:
            check_number("faithfulness.token_bins[]", share, low=0, high=1, low_open=True)
        check_choice("faithfulness.token_removal", self.token_removal, TOKEN_REMOVALS)
        check_choice("faithfulness.target", self.target, FAITHFULNESS_TARGETS)


@dataclass
class EvaluateConfig(ToolConfig):
    ckpt_path: str = MISSING
    split: str = "test"  # train | val | test | a split name of the task
    faithfulness: FaithfulnessConfig = field(default_factory=FaithfulnessConfig)
    data: EvaluateDataConfig = field(default_factory=EvaluateDataConfig)
    batch_size: int = 32

    def __post_init__(self):
        super().__post_init__()
        check_number("batch_size", self.batch_size, low=1, integer=True)


@dataclass
class ExportConfig(ToolConfig):
    ckpt_path: str = MISSING  # a finished run's directory (the checkpoint it shipped) or a .ckpt file
    out: str = MISSING  # the model directory to write; an existing one only if an earlier export (overwrite=true)
    onnx: bool = False  # also write model.onnx (logits, similarities, token attention)
    push_to_hub: bool = False  # upload `out` to the Hugging Face hub as repo_id
    repo_id: str | None = None
    private: bool = True  # a new hub repository is private unless private=false
    hub_timeout_s: float = 5.0  # how long to wait for the hub before failing

    def __post_init__(self):
        super().__post_init__()
        check_number("hub_timeout_s", self.hub_timeout_s, low=0, low_open=True)


@dataclass
class PredictConfig(ToolConfig):
    model: str = MISSING  # a run directory, a .ckpt, an exported directory or a hub id
    input_file: str = MISSING  # .txt: one text per line (pairs: text<TAB>text_pair); .csv: a header row; .jsonl
    output: str = MISSING  # .jsonl: row, text, prediction, probs (+ explanation fields); .csv: prob_<label> columns
    text_field: str = "text"  # the text's column (.csv) or key (.jsonl)
    text_pair_field: str = "text_pair"
    batch_size: int = 32
    chunk_size: int = 1024  # rows read at a time and sorted by length inside (bounds memory)
    explain: bool = False  # add the explanation of each prediction (prototype models)
    top_k: int = 3  # with explain: prototypes per row
    nearest: int = 3  # with explain: training examples per prototype
    progress: bool = True  # a progress bar on stderr

    def __post_init__(self):
        super().__post_init__()
        for key in ("batch_size", "chunk_size", "top_k", "nearest"):
            check_number(key, getattr(self, key), low=1, integer=True)


@dataclass
class ServeConfig(ToolConfig):
    model: str = MISSING
    # loopback only; 0.0.0.0 listens on every interface (no authentication: mind who can reach it)
    host: str = "127.0.0.1"
    port: int = 8000
    max_texts: int = 64  # texts per request (more: 422)
    max_chars: int = 10000  # characters per text (more: 422)
    max_body_bytes: int = 1000000  # request body (more: 413)
    max_waiting: int = 32  # model requests queued at once (more: 503); /health never waits
    log_level: str = "info"  # uvicorn's

    def __post_init__(self):
        super().__post_init__()
        for key in ("max_texts", "max_chars", "max_body_bytes", "max_waiting"):
            check_number(key, getattr(self, key), low=1, integer=True)
        check_number("port", self.port, low=0, high=65535, integer=True)
        check_choice("log_level", self.log_level, LOG_LEVELS)


TOOL_SCHEMAS = {
    "explain": ExplainConfig,
    "project": ProjectToolConfig,
    "health": HealthToolConfig,
    "evaluate": EvaluateConfig,
    "export": ExportConfig,
    "predict": PredictConfig,
    "serve": ServeConfig,
}


def register_tool_schemas() -> None:
    """``<tool>_schema`` for the tools' YAMLs to list first in their defaults."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for name, schema in TOOL_SCHEMAS.items():
        store.store(name=f"{name}_schema", node=schema)


def check_tool_config(config_name: str, cfg) -> None:
    """Every range of the tool's config (Hydra has checked the names and types)."""
    section(cfg, TOOL_SCHEMAS[config_name], "")


register_tool_schemas()
