"""Reading a config section (an OmegaConf node or a dict) as its checked dataclass."""

from __future__ import annotations

import dataclasses
import typing

from omegaconf import DictConfig, OmegaConf

from protolm.config.model import HEADS, LinearHeadConfig, PrototypeHeadConfig
from protolm.utils.errors import ConfigError, check_choice, check_keys


def section(node, schema: type, where: str | None = None):
    """A config section (DictConfig or dict) as its dataclass, checked; unknown keys are refused."""
    if isinstance(node, DictConfig):
        refuse_missing(node)
    values = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    names = {f.name for f in dataclasses.fields(schema)}
    check_keys(where or schema.__name__, values, names)
    hints = typing.get_type_hints(schema)
    for key, value in values.items():
        nested = next((t for t in (hints[key], *typing.get_args(hints[key])) if dataclasses.is_dataclass(t)), None)
        if nested is not None and isinstance(value, dict):
            values[key] = section(value, nested, f"{where}.{key}" if where else None)
    return schema(**values)


def known_part(values: dict, schema: type) -> dict:
    """The keys of ``values`` that ``schema`` defines: a record written by another protolm version
    (a run's stored data settings) is read for what this version knows of it."""
    names = {f.name for f in dataclasses.fields(schema)}
    return {key: value for key, value in values.items() if key in names}


def refuse_missing(node: DictConfig) -> None:
    """A config whose required values (``???``) are unset is one error naming them all."""
    missing = sorted(OmegaConf.missing_keys(node))
    if missing:
        given = ", ".join(f"{key}=..." for key in missing)
        raise ConfigError(f"{', '.join(missing)} must be given on the command line ({given})")


def head_section(node) -> PrototypeHeadConfig | LinearHeadConfig:
    name = node["name"]
    check_choice("head.name", name, HEADS)
    return section(node, HEADS[name], "head")


def to_container(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
