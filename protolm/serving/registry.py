"""protolm in the Hugging Face ecosystem: ``AutoConfig``, ``AutoModelForSequenceClassification`` and
``pipeline("prototype-text-classification")`` know protolm models once protolm and transformers
are both imported (``import protolm`` sets up the hook that calls :func:`register`)."""

from __future__ import annotations

PIPELINE_TASK = "prototype-text-classification"
_registered = False


def register() -> None:
    """Make ``AutoConfig``, ``AutoModelForSequenceClassification`` and ``pipeline`` know protolm (idempotent)."""
    global _registered
    if _registered:
        return
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from protolm.modeling.configuration_protolm import ProtoLMConfig
    from protolm.modeling.modeling_protolm import ProtoLMForSequenceClassification
    from protolm.serving.pipeline import register_pipeline

    AutoConfig.register(ProtoLMConfig.model_type, ProtoLMConfig, exist_ok=True)
    AutoModelForSequenceClassification.register(ProtoLMConfig, ProtoLMForSequenceClassification, exist_ok=True)
    register_pipeline(PIPELINE_TASK)
    _registered = True
