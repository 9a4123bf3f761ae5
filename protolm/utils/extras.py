"""Optional dependencies: a clear error naming the extra to install, before any work is done."""

from __future__ import annotations

import importlib.util

from protolm.utils.errors import ConfigError

EXTRAS = {
    "serve": ("fastapi", "uvicorn"),
    "onnx": ("onnx", "onnxscript", "onnxruntime"),
}


def require(extra: str, why: str) -> None:
    missing = [m for m in EXTRAS[extra] if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"{why} needs {', '.join(missing)}: pip install 'protolm[{extra}]'")
