"""ProtoLMConfig: a trained protolm model's architecture as a Hugging Face config (``config.json``).

This file and ``modeling_protolm.py`` (with ``head.py``) are copied verbatim into every exported
model directory, so that a user without protolm installed loads it with
``trust_remote_code=True``. They import only torch, transformers and each other (relatively).
"""

from __future__ import annotations

from transformers import AutoConfig, PretrainedConfig

HEAD_TYPES = ("prototype", "linear")


class ProtoLMConfig(PretrainedConfig):
    """An encoder's own config (nested, as a dict with its ``model_type``) plus the head on top.

    ``head_type``: ``prototype`` or ``linear``; ``head``: the head's architecture, as the head's
    ``architecture()`` gives it (prototype count and classes, similarity, ...); ``task``: the task
    it was trained on; ``text_pair``: whether it classifies pairs of texts; ``max_seq_length``: the
    token length it was trained at (inputs are truncated to it). Labels are the usual
    ``id2label`` / ``label2id``; a regression has one label and ``problem_type="regression"``.
    """

    model_type = "protolm"

    def __init__(
        self,
        encoder: dict | PretrainedConfig | None = None,
        head_type: str = "prototype",
        head: dict | None = None,
        task: str | None = None,
        text_pair: bool = False,
        max_seq_length: int | None = None,
        **kwargs,
    ):
        if head_type not in HEAD_TYPES:
            raise ValueError(f"head_type={head_type!r} is not one of {', '.join(HEAD_TYPES)}")
        if isinstance(encoder, PretrainedConfig):
            encoder = encoder.to_dict()
        self.encoder = dict(encoder or {})
        self.head_type = head_type
        self.head = dict(head or {})
        self.task = task
        self.text_pair = bool(text_pair)
        self.max_seq_length = max_seq_length
        super().__init__(**kwargs)

    @property
    def regression(self) -> bool:
        return self.problem_type == "regression"

    @property
    def is_prototype(self) -> bool:
        return self.head_type == "prototype"

    def class_names(self) -> list[str] | None:
        """The label names in class order (None for a regression)."""
        if self.regression:
            return None
        return [self.id2label[c] for c in range(self.num_labels)]

    def class_name(self, index: int) -> str | int:
        """The label name of a class index (the index itself for a regression's single block)."""
        return index if self.regression else self.id2label[index]

    def encoder_config(self) -> PretrainedConfig:
        """The nested encoder's config as its own class (BertConfig, ...)."""
        if "model_type" not in self.encoder:
            raise ValueError("ProtoLMConfig.encoder needs the encoder's config with its model_type")
        values = {k: v for k, v in self.encoder.items() if k not in ("model_type", "transformers_version")}
        return AutoConfig.for_model(self.encoder["model_type"], **values)
