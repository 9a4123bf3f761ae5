"""Fallback to the Hugging Face dataset hub, for splits whose local files are absent.

The hub is used only when it is allowed (``data.hub``), not disabled by HF_HUB_OFFLINE /
HF_DATASETS_OFFLINE, and answers within ``data.hub_timeout_s`` seconds (:mod:`protolm.utils.hub`).
"""

from __future__ import annotations

from protolm.config.task import HubSpec
from protolm.utils.hub import HUB_HOST, hub_reachable, offline_by_env


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
