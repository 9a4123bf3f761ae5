"""protolm: prototype-based built-in interpretability for transformer text classifiers.

protolm models are registered with transformers (``AutoConfig``, ``AutoModelForSequenceClassification``
and the ``prototype-text-classification`` pipeline) as soon as both ``protolm`` and
``transformers`` are imported, in either order, so an exported model loads like any other;
``import protolm`` alone stays light (no torch: a command's ``--help`` answers at once). Every
piece loads on first use: ``from protolm import PrototypeHead`` imports torch, ``from protolm
import ProtoLM`` Lightning, and ``protolm.load(path)`` does not need Lightning.
"""

import wrapt

__version__ = "0.1.0"


def _register_with_transformers(transformers_module=None) -> None:
    import sys

    if "transformers" not in sys.modules or any(
        getattr(getattr(m, "__spec__", None), "_initializing", False)
        for n, m in list(sys.modules.items())
        if n.startswith("protolm.")
    ):
        return  # transformers is imported by protolm's own modules: registered once they are (__getattr__)
    from protolm.serving.registry import register

    register()


# Runs now if transformers is already imported, else right after its import: the registration
# needs transformers' model classes, seconds to import, which a `--help` should not pay for.
wrapt.register_post_import_hook(_register_with_transformers, "transformers")

_LAZY = {
    "PrototypeHead": "protolm.modeling.head",
    "LinearHead": "protolm.modeling.head",
    "cohesion_separation": "protolm.modeling.losses",
    "PrototypeObjective": "protolm.modeling.losses",
    "TaskObjective": "protolm.modeling.losses",
    "ProtoLM": "protolm.training.module",
    "TaskDataModule": "protolm.data.datamodule",
    "TaskSpec": "protolm.config.task",
    "load": "protolm.serving.classifier",  # protolm.load(path) -> Classifier: predict, explain
    "Classifier": "protolm.serving.classifier",
    "ProtoLMConfig": "protolm.modeling.configuration_protolm",
    "ProtoLMForSequenceClassification": "protolm.modeling.modeling_protolm",
}

__all__ = [*_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        _register_with_transformers()  # what was imported may have imported transformers
        return value
    raise AttributeError(f"module 'protolm' has no attribute {name!r}")
