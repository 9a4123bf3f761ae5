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


def _register_with_transformers(transformers_module) -> None:
    import sys

    if any(
        getattr(getattr(m, "__spec__", None), "_initializing", False)
        for n, m in list(sys.modules.items())
        if n.startswith("protolm.")
    ):
        return  # transformers is being imported by protolm's own modules: protolm.hf registers when done
    from protolm.hf import register

    register()


# Runs now if transformers is already imported, else right after its import: the registration
# needs transformers' model classes, seconds to import, which a `--help` should not pay for.
wrapt.register_post_import_hook(_register_with_transformers, "transformers")

_LAZY = {
    "PrototypeHead": "protolm.head",
    "LinearHead": "protolm.head",
    "cohesion_separation": "protolm.losses",
    "PrototypeObjective": "protolm.losses",
    "TaskObjective": "protolm.losses",
    "ProtoLM": "protolm.model",
    "TaskDataModule": "protolm.data.datamodule",
    "TaskSpec": "protolm.data.task",
    "load": "protolm.api",  # protolm.load(path) -> Classifier: predict, explain
    "Classifier": "protolm.api",
    "ProtoLMConfig": "protolm.hf",  # through protolm.hf: importing it registers them with transformers
    "ProtoLMForSequenceClassification": "protolm.hf",
}

__all__ = [*_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'protolm' has no attribute {name!r}")
