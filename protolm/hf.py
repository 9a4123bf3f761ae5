"""protolm in the Hugging Face ecosystem: the trained module as a ``ProtoLMForSequenceClassification``,
and the registrations that let ``AutoConfig``, ``AutoModelForSequenceClassification`` and
``pipeline`` find protolm models."""

from __future__ import annotations

from pathlib import Path

import transformers  # noqa: F401  (first: its import hook then finds this module mid-import, and defers)

from protolm.configuration_protolm import ProtoLMConfig
from protolm.modeling_protolm import PROTOTYPES_FILE, ProtoLMForSequenceClassification, encode_and_classify

# protolm's own code imports the model's pieces from here, so that they are registered when used.
__all__ = ["ProtoLMConfig", "ProtoLMForSequenceClassification", "encode_and_classify", "PROTOTYPES_FILE"]

# The files that let `trust_remote_code=True` load an exported model without protolm installed.
REMOTE_CODE_FILES = ("configuration_protolm.py", "modeling_protolm.py", "head.py")
AUTO_MAP = {
    "AutoConfig": "configuration_protolm.ProtoLMConfig",
    "AutoModelForSequenceClassification": "modeling_protolm.ProtoLMForSequenceClassification",
}
PIPELINE_TASK = "prototype-text-classification"


def config_of(model, max_length: int | None = None, encoder_source: str | None = None) -> ProtoLMConfig:
    """The transformers config of a trained protolm module (protolm.model.ProtoLM) as it is now
    (after pruning too: the head's architecture is read from the head). ``encoder_source``: where
    the encoder came from (a hub id), recorded instead of the local path it was loaded from."""
    task = model.task_info
    encoder = model.encoder.config.to_dict()
    if encoder_source:
        encoder["_name_or_path"] = encoder_source
    if task.regression:
        labels = {"num_labels": 1, "problem_type": "regression"}
    else:
        names = task.labels or [str(c) for c in range(task.num_classes)]
        labels = {
            "id2label": dict(enumerate(names)),
            "label2id": {name: c for c, name in enumerate(names)},
            "problem_type": "single_label_classification",
        }
    return ProtoLMConfig(
        encoder=encoder,
        head_type="prototype" if model.is_prototype else "linear",
        head=model.head.architecture(),
        task=task.name,
        text_pair=task.pair,
        max_seq_length=max_length,
        **labels,
    )


def transformers_model(model) -> ProtoLMForSequenceClassification:
    """``model`` (a ProtoLM) as a ProtoLMForSequenceClassification on the same encoder and head."""
    run = getattr(model, "artifacts", {}).get("config") or {}
    max_length, source = (run.get("data") or {}).get("max_length"), (run.get("backbone") or {}).get("pretrained")
    config = config_of(model, max_length, source)
    net = ProtoLMForSequenceClassification(config, encoder=plain_encoder(model.encoder), head=model.head)
    if model.projection is not None:
        net.prototypes = model.projection.to_dict()
    net.training = model.training  # the flag only: train() would reset every shared module's mode
    return net


def plain_encoder(encoder):
    """The encoder as a plain transformers model: LoRA adapters (peft) merged into a copy of its
    weights, so that an export loads with ``AutoModel`` alone and runs at the base model's speed."""
    if hasattr(encoder, "merge_and_unload"):
        import copy

        return copy.deepcopy(encoder).merge_and_unload()
    return encoder


def copy_remote_code(directory: Path) -> None:
    """Write the model's code beside its weights, and point config.json's auto_map at it."""
    package = Path(__file__).parent
    for name in REMOTE_CODE_FILES:
        (directory / name).write_text((package / name).read_text(encoding="utf-8"), encoding="utf-8")


_registered = False


def register() -> None:
    """Make ``AutoConfig``, ``AutoModelForSequenceClassification`` and ``pipeline`` know protolm
    (idempotent; ``import protolm`` calls it)."""
    global _registered
    if _registered:
        return
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from protolm.prototype_pipeline import register_pipeline

    AutoConfig.register(ProtoLMConfig.model_type, ProtoLMConfig, exist_ok=True)
    AutoModelForSequenceClassification.register(ProtoLMConfig, ProtoLMForSequenceClassification, exist_ok=True)
    register_pipeline(PIPELINE_TASK)
    _registered = True


register()  # importing this module means transformers is imported: protolm's classes are known from here on
