"""protolm: prototype-based built-in interpretability for transformer text classifiers."""
from protolm.head import LinearHead, PrototypeHead
from protolm.losses import cohesion_separation, resolve_k

__all__ = ["PrototypeHead", "LinearHead", "cohesion_separation", "resolve_k"]
__version__ = "0.1.0"
