"""User-facing errors: one clear message, no traceback (unless PROTOLM_DEBUG=1 or traceback=true)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ProtoLMError(Exception):
    """An error the user can fix: bad config, bad data, missing files. Printed without traceback."""


class ConfigError(ProtoLMError):
    pass


class DataError(ProtoLMError):
    pass


class CheckpointError(ProtoLMError):
    pass


class TrainingDiverged(ProtoLMError):
    pass


class EditError(ProtoLMError):
    """An edit to a model's prototypes that cannot be made; the model is left as it was."""


def unknown_keys_message(where: str, unknown: Iterable[str], valid: Iterable[str]) -> str:
    """'<where>: unknown key(s) x (did you mean y?); valid keys: a, b, c'."""
    valid = sorted(valid)
    parts = []
    for key in sorted(unknown):
        close = difflib.get_close_matches(key, valid, n=1)
        parts.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return f"{where}: unknown key{'s' if len(parts) > 1 else ''} {', '.join(parts)}; valid keys: {', '.join(valid)}"


def check_keys(where: str, given: Iterable[str], valid: Iterable[str]) -> None:
    valid = set(valid)
    unknown = [k for k in given if k not in valid]
    if unknown:
        raise ConfigError(unknown_keys_message(where, unknown, valid))


def check_choice(key: str, value, choices: Iterable) -> None:
    choices = list(choices)
    if value not in choices:
        raise ConfigError(f"{key}={value!r} is not one of: {', '.join(map(str, choices))}")


def check_number(
    key: str, value, low=None, high=None, integer=False, low_open=False, high_open=False, allow_none=False
):
    """``value`` is a number in the range, else a one-line error naming the key and the range."""
    if value is None and allow_none:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok and integer:
        ok = float(value).is_integer()
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        lo = "-inf" if low is None else str(low)
        hi = "inf" if high is None else str(high)
        kind = "a whole number" if integer else "a number"
        span = f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"
        shown = f"{value:g}" if isinstance(value, float) else repr(value)  # as typed: -1, not -1.0
        raise ConfigError(f"{key}={shown} must be {kind} in {span}" + (" or null" if allow_none else ""))


def check_device(key: str, value) -> None:
    """``value`` names a device this machine has: cpu, cuda, cuda:<index> or mps (torch is imported
    only for an accelerator)."""
    name = str(value)
    kind, _, index = name.partition(":")
    if kind == "cpu" and not index:
        return
    if kind not in ("cuda", "mps") or (index and not (kind == "cuda" and index.isdigit())):
        raise ConfigError(f"{key}={name!r} is not a device: use cpu, cuda, cuda:<index> or mps")
    import torch

    if kind == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{key}=mps: this machine has no MPS (Apple GPU) device; use {key}=cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA device is visible"
            raise ConfigError(f"{key}={name}: {why} on this machine; use {key}=cpu")
        if index and int(index) >= torch.cuda.device_count():
            raise ConfigError(f"{key}={name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
