"""protolm: prototype-based built-in interpretability for transformer text classifiers.

``import protolm`` registers protolm models with transformers (``AutoConfig``,
``AutoModelForSequenceClassification`` and the ``prototype-text-classification`` pipeline), so an
exported model loads like any other. The training pieces (Lightning) load on first use:
``from protolm import ProtoLM`` imports Lightning, ``protolm.load(path)`` does not.
"""

from protolm.configuration_protolm import ProtoLMConfig
from protolm.head import LinearHead, PrototypeHead
from protolm.hf import register as _register
from protolm.losses import PrototypeObjective, TaskObjective, cohesion_separation
from protolm.modeling_protolm import ProtoLMForSequenceClassification

__version__ = "0.1.0"

_register()

_LAZY = {
    "ProtoLM": "protolm.model",
    "TaskDataModule": "protolm.data.datamodule",
    "TaskSpec": "protolm.data.task",
    "load": "protolm.api",  # protolm.load(path) -> Classifier: predict, explain
    "Classifier": "protolm.api",
}

__all__ = [
    "PrototypeHead",
    "LinearHead",
    "cohesion_separation",
    "PrototypeObjective",
    "TaskObjective",
    "ProtoLMConfig",
    "ProtoLMForSequenceClassification",
    *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'protolm' has no attribute {name!r}")
