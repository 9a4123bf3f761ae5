"""Hydra's composition errors as one line each, with "did you mean" where a name is close.

Hydra reports a misspelled key, a wrong-typed value or an unknown config-group option in five to
twenty lines (its search path, its advice to append with ``+``, which would add the misspelled
key). The entry points let such errors reach :func:`one_line` instead (``HYDRA_FULL_ERROR``), so
every refused command says what is wrong, and what would be right, in one line.
"""

from __future__ import annotations

import difflib
import re

from omegaconf import DictConfig
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

KINDS = {"Integer": "a whole number", "Float": "a number", "Boolean": "true or false", "String": "a string"}


def _did_you_mean(name: str, valid: list[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(name, valid, n=1)
    return f" (did you mean {prefix}{close[0]}?)" if close else ""


def _unknown_key(cause: ConfigKeyError | ConfigAttributeError) -> str:
    full_key = cause.full_key or str(cause.key)
    parent, _, name = full_key.rpartition(".")
    node = cause.parent_node
    valid = sorted(str(k) for k in node.keys() if k != "hydra") if isinstance(node, DictConfig) else []
    message = f"{full_key}: unknown key" + _did_you_mean(name, valid, f"{parent}." if parent else "")
    if valid:
        message += f"; valid keys{' of ' + parent if parent else ''}: {', '.join(valid)}"
    return message


def _bad_value(override: str, cause: ValidationError) -> str:
    first = str(cause).splitlines()[0]
    kind = re.search(r"could not be converted to (\w+)", first)
    if kind and kind.group(1) in KINDS:
        return f"{override}: {cause.full_key} must be {KINDS[kind.group(1)]}, not {cause.value!r}"
    if "is not a valid bool" in first:
        return f"{override}: {cause.full_key} must be true or false, not {cause.value!r}"
    if "is not a ListConfig, list or tuple" in first:
        return f"{override}: {cause.full_key} must be a list, e.g. {cause.full_key}=[1,2]"
    return f"{override}: {first}"


def _missing_option(err) -> str:
    group, _, name = str(err.missing_cfg_file).rpartition("/")
    options = sorted(o for o in (err.options or []) if not o.startswith("_") and not o.endswith("_schema"))
    if not group or not options:
        return str(err).splitlines()[0]
    return f"{group}={name} is not one of: {', '.join(options)}{_did_you_mean(name, options)}"


def _unparsable(argv: list[str]) -> str:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    for arg in argv:
        try:
            parser.parse_override(arg)
        except HydraException:
            return (
                f"cannot read the override {arg!r}: quote a value holding spaces, commas, brackets or '=' "
                f"(e.g. key='a, b'), and escape quotes inside it"
            )
    return "cannot read the command line's overrides"


def one_line(err: BaseException, argv: list[str]) -> str:
    """The message for an error Hydra raised while composing the config from ``argv``."""
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

    cause = err.__cause__
    if isinstance(err, MissingConfigException):
        return _missing_option(err)
    if isinstance(err, OverrideParseException):
        return _unparsable(argv)
    if isinstance(err, ConfigCompositionException) and isinstance(cause, (ConfigKeyError, ConfigAttributeError)):
        return _unknown_key(cause)
    if isinstance(err, ConfigCompositionException) and isinstance(cause, ValidationError):
        override = str(err).removeprefix("Error merging override ").splitlines()[0]
        return _bad_value(override, cause)
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if isinstance(cause, Exception):
        lines.append(str(cause).splitlines()[0])
    return "; ".join(lines[:2]) or type(err).__name__
