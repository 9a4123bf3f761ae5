"""Fallback to the Hugging Face dataset hub, for splits whose local files are absent.

Offline machines must get a clear error quickly, not a hang inside ``load_dataset``: the hub
is used only when it is allowed (``data.hub``), not disabled by HF_HUB_OFFLINE /
HF_DATASETS_OFFLINE, and answers a TCP connection within ``data.hub_timeout_s`` seconds.
"""

from __future__ import annotations

import os
import socket
from functools import lru_cache

from protolm.data.task import HubSpec

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


def hub_unavailable_reason(mode: str, timeout_s: float) -> str | None:
    """Why the hub may not be used under ``data.hub=mode`` (one of config.HUB_MODES), or None when it may."""
    if mode == "never":
        return "data.hub=never"
    if offline_by_env():
        return "HF_HUB_OFFLINE / HF_DATASETS_OFFLINE is set"
    if not hub_reachable(timeout_s):
        return f"{HUB_HOST} did not answer within {timeout_s:g} s"
    return None


def load_hub_split(hub: HubSpec, split: str, streaming: bool = False):
    """The split as the hub's ``datasets.Dataset`` (cached by ``datasets`` itself), or as a stream."""
    import datasets

    return datasets.load_dataset(hub.path, hub.name, split=hub.splits[split], streaming=streaming)
