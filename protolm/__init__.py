"""protolm: prototype-based built-in interpretability for transformer text classifiers.

The head and losses import light; the training pieces (Lightning, transformers) load on first use:
``from protolm import PrototypeHead`` is instant, ``from protolm import ProtoLM`` imports Lightning.
"""

from protolm.head import LinearHead, PrototypeHead
from protolm.losses import PrototypeObjective, TaskObjective, cohesion_separation

__version__ = "0.1.0"

_LAZY = {
    "ProtoLM": "protolm.model",
    "TaskDataModule": "protolm.data.datamodule",
    "TaskSpec": "protolm.data.task",
    "load": "protolm.checkpoint",  # protolm.load(path) -> model, tokenizer, config of a checkpoint
}

__all__ = ["PrototypeHead", "LinearHead", "cohesion_separation", "PrototypeObjective", "TaskObjective", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'protolm' has no attribute {name!r}")
