"""The model's sections of a run config: backbone (and its LoRA adapters), head, loss, initialisation.

Each dataclass is a Hydra schema: its fields are the keys a user may set, with their defaults and
meanings; ``__post_init__`` checks every range and choice, naming the key and what it allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING

from protolm.config.fields import group, option
from protolm.utils.errors import ConfigError, check_choice, check_number

POOLINGS = ("cls", "mean", "last")
PEFT_METHODS = ("none", "lora")
QUANTIZATIONS = ("none", "4bit")
# The head's own lists (protolm/modeling/head.py, which must import nothing of protolm: it is copied
# into exported models); a test pins that both say the same.
SIMILARITIES = ("inv_l2", "log_l2", "cosine")
ATTENTION_INITS = ("torch", "normal", "uniform")
PROTOTYPE_INITS = ("train_embeddings", "random")


@dataclass
class PackagedConfig:
    """A pip package that carries a backbone's weights offline (used when installed)."""

    module: str = option(MISSING, "the importable package holding the weights under model/")
    provides: str = option(MISSING, "the hub id it stands for: used only while backbone.pretrained is that id")


@dataclass
class LoraConfig:
    """LoRA adapters (through peft) on the encoder's attention and MLP projections."""

    r: int = option(8, "rank of each adapter")
    alpha: float = option(16.0, "scale: the adapter's update is multiplied by alpha / r")
    dropout: float = option(0.05, "dropout on the adapters' input")
    target_modules: list[str] | None = option(
        None,
        "the modules adapted; null: the family's (q/k/v/o and MLP projections for Llama, Qwen2, Mistral, "
        "Gemma; c_attn, c_proj, c_fc for GPT-2; query/key/value/dense for BERT-like encoders)",
    )
    lr: float = option(2.0e-4, "the adapters' learning rate (in place of optim.backbone_lr)")

    def __post_init__(self):
        check_number("backbone.lora.r", self.r, low=1, integer=True)
        check_number("backbone.lora.alpha", self.alpha, low=0, low_open=True)
        check_number("backbone.lora.dropout", self.dropout, low=0, high=1)
        check_number("backbone.lora.lr", self.lr, low=0, low_open=True)


@dataclass
class BackboneConfig:
    """The pretrained encoder (or decoder) under the head, and how it is fine-tuned."""

    name: str = option(MISSING, "the backbone's name in run directories and tables")
    pretrained: str = option(MISSING, "a hub id or a local directory")
    packaged: PackagedConfig | None = option(None, "a pip package carrying these weights offline")
    tokenizer: str | None = option(None, "the tokenizer's hub id or directory; null: the one saved with the model")
    random_init: bool = option(False, "the architecture from its config with fresh weights (test backbones)")
    config_overrides: dict[str, Any] = option({}, "keys of the model's config.json to change (e.g. tiny test sizes)")
    pooling: str = option("cls", "how the linear baseline pools: cls (first token) | mean | last (decoders)")
    lr: float = option(2.0e-5, "this backbone's default optim.backbone_lr")
    gradient_checkpointing: bool = option(False, "recompute activations in backward: less memory, ~30 % more time")
    compile: bool = option(False, "torch.compile the encoder (same results, faster steps once compiled)")
    peft: str = option("none", "none: every encoder weight trains | lora: adapters only (backbone.lora)")
    lora: LoraConfig = group(LoraConfig, "the LoRA adapters of backbone.peft=lora")
    quantization: str = option("none", "none | 4bit: frozen weights in 4 bits under LoRA (QLoRA; CUDA only)")

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

    name: str = option("prototype", "the head: prototype | linear")
    num_prototypes: int | None = option(None, "P, a multiple of the class count C; null: prototypes_per_class x C")
    prototypes_per_class: int = option(
        25, "prototypes per class when num_prototypes is null (chosen by evidence: experiments/results)"
    )
    similarity: str = option(
        "cosine", "cosine | inv_l2 (the paper's 1/(d+eps)) | log_l2 (ProtoPNet); cosine chosen by evidence"
    )
    eps: float = option(1.0e-4, "keeps similarities finite when an embedding sits on a prototype")
    prototype_init: str = option(
        "train_embeddings", "train_embeddings: pooled embeddings of training examples | random: N(0, init_std^2)"
    )
    init_std: float = option(1.0, "standard deviation of random prototypes")
    attention_dim: int | None = option(None, "width of the word-attention projection W; null: the hidden size")
    incorrect_class_weight: float = option(-0.5, "last-layer init from a prototype to the other classes (own: +1)")
    last_layer_bias: bool = option(False, "a bias in the last layer P -> C (the released code has one)")
    attention_init: str = option(
        "torch", "the attention vector w: torch (Linear default) | normal: N(0, 1), as released | uniform: 0"
    )
    encoder_lr_scale: float = option(
        2.0, "the encoder's learning rate under this head, as a multiple of optim.backbone_lr"
    )

    def __post_init__(self):
        check_number("head.num_prototypes", self.num_prototypes, low=1, integer=True, allow_none=True)
        check_number("head.encoder_lr_scale", self.encoder_lr_scale, low=0, low_open=True)
        check_number("head.prototypes_per_class", self.prototypes_per_class, low=1, integer=True)
        check_choice("head.similarity", self.similarity, SIMILARITIES)
        check_choice("head.attention_init", self.attention_init, ATTENTION_INITS)
        check_choice("head.prototype_init", self.prototype_init, PROTOTYPE_INITS)
        check_number("head.eps", self.eps, low=0, low_open=True)
        check_number("head.init_std", self.init_std, low=0, low_open=True)
        check_number("head.attention_dim", self.attention_dim, low=1, integer=True, allow_none=True)


@dataclass
class LinearHeadConfig:
    """The fine-tuning baseline: pool (backbone.pooling), dense + tanh, linear."""

    name: str = option("linear", "the head: prototype | linear")
    dropout: float = option(0.1, "dropout before the dense and the output layer")

    def __post_init__(self):
        check_number("head.dropout", self.dropout, low=0, high=1, high_open=True)


HEADS = {"prototype": PrototypeHeadConfig, "linear": LinearHeadConfig}


@dataclass
class LossConfig:
    """L = task * (cross-entropy, or MSE for a regression) + cohesion * L_coh + separation * L_sep.

    K, the number of prototypes cohesion and separation act on per example, is either a count
    (``k``) or a fraction of the prototypes per class (``k_fraction``, used when ``k`` is null).
    """

    task: float = option(0.5, "weight of the task term (cross-entropy, or MSE for a regression)")
    cohesion: float = option(0.25, "weight of cohesion: raise each example's similarity to its class's K least similar")
    separation: float = option(0.25, "weight of separation: lower its similarity to other classes' K most similar")
    k: int | None = option(None, "K as a count (1 <= K <= P/C); null: from k_fraction")
    k_fraction: float = option(0.5, "K = max(1, floor(k_fraction x P/C)), k_fraction in (0, 1]")
    reference_signs: bool = option(False, "true: the reference code's inverted signs (for comparison only)")

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

    from_checkpoint: str | None = option(
        None, "a finished run's directory, a .ckpt or an exported model: start from its encoder"
    )
    two_stage: bool = option(False, "fine-tune with the linear head first, then this head on that encoder")
