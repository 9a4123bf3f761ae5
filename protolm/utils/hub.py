"""Whether the Hugging Face hub may be reached from this process (models and datasets alike).

Offline machines must get a clear error quickly, not a hang inside ``from_pretrained`` or
``load_dataset``: the hub counts as reachable only when HF_HUB_OFFLINE / HF_DATASETS_OFFLINE are
unset and it answers a TCP connection within the caller's timeout.
"""

from __future__ import annotations

import os
import socket
from functools import lru_cache

HUB_HOST = "huggingface.co"


def offline_by_env() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


@lru_cache(maxsize=1)
def hub_reachable(timeout_s: float) -> bool:
    """Whether the hub answers within ``timeout_s`` (``data.hub_timeout_s``).

    The answer is kept for the last timeout asked: callers that all pass ``data.hub_timeout_s``
    (the data and the backbone loaders) probe the network once per process.
    """
    if offline_by_env():
        return False
    try:
        with socket.create_connection((HUB_HOST, 443), timeout=timeout_s):
            return True
    except OSError:
        return False
