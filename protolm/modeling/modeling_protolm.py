"""ProtoLMForSequenceClassification: a protolm model as a Hugging Face model.

The model is an encoder's last hidden states through a head (:func:`encode_and_classify`). The
Lightning module that trains it (protolm.training.module.ProtoLM) runs the same function on the same
modules, and its state dict has the same keys (``encoder.*``, ``head.*``), so an export is a
change of wrapper, not a conversion. Copied verbatim into exported model directories with
``configuration_protolm.py`` and ``head.py``: torch, transformers and relative imports only.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from .configuration_protolm import ProtoLMConfig
from .head import LinearHead, PrototypeHead

PROTOTYPES_FILE = "prototypes.json"  # each prototype's class and its nearest training examples


# Decoder-only families: their positions count from the first token, padding included.
DECODER_TYPES = ("gpt2", "llama", "qwen2", "qwen3", "mistral", "gemma", "gemma2", "gemma3_text", "phi3", "gpt_neox")


def encode_and_classify(encoder, head, input_ids, attention_mask, token_type_ids=None) -> dict:
    """The model: the encoder's last hidden states through the head (a dict with ``logits``,
    ``attention`` over tokens, ``pooled`` and, for the prototype head, ``similarities``)."""
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if token_type_ids is not None:
        inputs["token_type_ids"] = token_type_ids
    if getattr(encoder.config, "model_type", None) in DECODER_TYPES:
        # Number each text's tokens from 0 whatever the padding side, so that left padding gives
        # the states right padding gives (under right padding these are the default positions).
        inputs["position_ids"] = (attention_mask.long().cumsum(-1) - 1).clamp_min(0)
    return head(encoder(**inputs).last_hidden_state, attention_mask)


def build_head(head_type: str, hidden_size: int, num_classes: int, architecture: dict) -> nn.Module:
    """A head from its type and ``architecture()`` record (fresh weights)."""
    if head_type == "prototype":
        return PrototypeHead(hidden_size, num_classes=num_classes, **architecture)
    return LinearHead(hidden_size, num_classes, **architecture)


def drop_pooler(encoder) -> None:
    """BERT-style poolers are unused by both heads: dropped, so that DDP finds no parameters without
    gradients and no weights are dead or missing in checkpoints."""
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None


@dataclass
class ProtoLMOutput(SequenceClassifierOutput):
    """``logits`` (and ``loss`` given labels), plus what explains them: ``similarities`` to each
    prototype (B x P; prototype head only), ``token_attention`` (B x L, zero on padding) and the
    ``pooled`` embedding (B x H)."""

    similarities: torch.FloatTensor | None = None
    token_attention: torch.FloatTensor | None = None
    pooled: torch.FloatTensor | None = None


class ProtoLMForSequenceClassification(PreTrainedModel):
    """An encoder (any ``AutoModel``, built from ``config.encoder``) and protolm's prototype head
    or the linear baseline head. ``prototypes`` holds the projection record (``prototypes.json``:
    each prototype's nearest training examples) when the model was loaded from a directory that
    has one."""

    config_class = ProtoLMConfig
    base_model_prefix = "protolm"
    main_input_name = "input_ids"

    def __init__(self, config: ProtoLMConfig, encoder: nn.Module | None = None, head: nn.Module | None = None):
        super().__init__(config)
        # Given modules are used as they are (the training module's, shared, not copied).
        self.encoder = encoder if encoder is not None else AutoModel.from_config(config.encoder_config())
        drop_pooler(self.encoder)
        hidden_size = self.encoder.config.hidden_size
        if head is None:
            head = build_head(config.head_type, hidden_size, config.num_labels, config.head)
        self.head = head
        self.prototypes: dict | None = None
        self.post_init()

    # The encoder and the head initialise themselves when built; weights loaded from a file replace
    # both. Transformers' own pass would re-draw a pre-trained encoder handed to the constructor.
    def init_weights(self):
        pass

    def _init_weights(self, module):
        pass

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **unused,
    ) -> ProtoLMOutput | tuple:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        out = encode_and_classify(self.encoder, self.head, input_ids, attention_mask, token_type_ids)
        logits = out["logits"]
        loss = None
        if labels is not None:  # the task loss alone; protolm's training adds cohesion and separation
            if self.config.problem_type == "regression":
                loss = nn.functional.mse_loss(logits.squeeze(-1).float(), labels.float())
            else:
                loss = nn.functional.cross_entropy(logits.float(), labels.long())
        output = ProtoLMOutput(
            loss=loss,
            logits=logits,
            similarities=out.get("similarities"),
            token_attention=out["attention"],
            pooled=out["pooled"],
        )
        return output if return_dict is not False else output.to_tuple()

    def refresh_config(self) -> None:
        """``config.head`` as the head is now (pruning and edits change its prototypes)."""
        self.config.head = self.head.architecture()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        model.prototypes = read_prototypes(pretrained_model_name_or_path, kwargs)
        return model


def read_prototypes(source, kwargs: dict) -> dict | None:
    """The directory's (or hub repository's) prototypes.json, None when it has none."""
    source = str(source)
    if os.path.isdir(source):
        path = os.path.join(source, kwargs.get("subfolder") or "", PROTOTYPES_FILE)
        path = path if os.path.isfile(path) else None
    else:
        from transformers.utils import cached_file

        hub = {k: kwargs[k] for k in ("revision", "cache_dir", "token", "local_files_only", "subfolder") if k in kwargs}
        path = cached_file(source, PROTOTYPES_FILE, _raise_exceptions_for_missing_entries=False, **hub)
    if path is None:
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)
