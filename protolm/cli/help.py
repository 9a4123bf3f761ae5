"""``--help`` for every command, answered from the config files without composing anything.

Hydra's own ``--help`` composes the config once per config group to list the groups' options,
which takes seconds; this reads the file names and the typed configs instead, in a fraction of
a second. ``--hydra-help`` is still Hydra's, and ``--cfg job`` prints the composed config.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

# run.py's config groups, in the order a user meets them (conf/<group>/<option>.yaml)
RUN_GROUPS = ("task", "backbone", "head", "loss", "trainer", "logger", "experiment", "hparams_search", "variant")
RUN_SECTIONS = "head, loss, init, optim, data, project, health, prune, callbacks (protolm/config.py), trainer.*"


def _usage(config_file: Path) -> list[str]:
    """The comment lines that open a config file: its usage."""
    lines = []
    for line in config_file.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# ").rstrip())
    return lines


def _options(conf_dir: Path, group: str) -> list[str]:
    return sorted(p.stem for p in (conf_dir / group).glob("*.yaml") if not p.stem.startswith("_"))


def _shown(value) -> str:
    """A default as it is typed on the command line."""
    if value == "???":
        return "(required)"
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return str(value).replace(" ", "")


def _keys(schema, prefix: str = "") -> list[str]:
    lines = []
    for f in dataclasses.fields(schema):
        if f.name == "output_dir":
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            lines += _keys(type(default), f"{prefix}{f.name}.")
        else:
            lines.append(f"  {prefix}{f.name}={_shown(default)}")
    return lines


def help_text(conf_dir: Path, config_name: str, script: str) -> str:
    if config_name == "config":
        lines = _usage(conf_dir / "config.yaml")
        lines += ["", "Config groups (group=option):"]
        lines += [f"  {group}: {', '.join(_options(conf_dir, group))}" for group in RUN_GROUPS]
        lines += ["", f"Sections (section.key=value): {RUN_SECTIONS}"]
    else:
        from protolm.tool_config import TOOL_SCHEMAS

        lines = _usage(conf_dir / f"{config_name}.yaml")
        lines += ["", "Options (key=value) and their defaults:", *_keys(TOOL_SCHEMAS[config_name])]
    lines += [
        "",
        f"The composed config: python {script} --cfg job [overrides]   Hydra's options: python {script} --hydra-help",
    ]
    return "\n".join(lines)
