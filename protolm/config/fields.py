"""Config fields that carry their meaning: ``--help`` prints it beside the key, type and default.

Every schema field is declared with :func:`option` (a value) or :func:`group` (a nested section),
as the transformers example scripts declare theirs with ``field(metadata={"help": ...})``.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import field


def option(default, help: str):  # noqa: A002 - the name the transformers scripts use
    """A field with ``default`` and its meaning; list and dict defaults are copied per instance."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


def group(schema: type, help: str):  # noqa: A002
    """A nested section (a dataclass), built with its own defaults."""
    return field(default_factory=schema, metadata={"help": help})


def meaning(f: dataclasses.Field) -> str:
    """The field's help text ('' when it has none)."""
    return f.metadata.get("help", "")
