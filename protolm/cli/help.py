"""``--help`` for every command, answered from the schemas without composing anything.

Hydra's own ``--help`` composes the config once per config group to list the groups' options,
which takes seconds; this reads the option files and the schemas' field metadata instead (every
key with its type, default and meaning), in a fraction of a second. ``--hydra-help`` is still
Hydra's, and ``--cfg job`` prints the composed config.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from protolm.config.fields import meaning

# run.py's config groups, in the order a user meets them (conf/<group>/<option>.yaml)
RUN_GROUPS = ("task", "backbone", "head", "loss", "trainer", "logger", "experiment", "hparams_search", "scale")


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


def key_lines(schema, prefix: str = "", skip: tuple[str, ...] = ("output_dir",)) -> list[str]:
    """One line per key of ``schema`` (nested sections flattened): ``key=default  type  meaning``."""
    lines = []
    for f in dataclasses.fields(schema):
        if f.name in skip:
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            lines += key_lines(type(default), f"{prefix}{f.name}.", skip)
            continue
        kind = str(f.type).replace("typing.", "")
        lines.append(f"  {prefix}{f.name}={_shown(default)}  ({kind})  {meaning(f)}".rstrip())
    return lines


def _run_keys() -> list[str]:
    from protolm.config import BackboneConfig, LinearHeadConfig, PrototypeHeadConfig, RunConfig

    lines = key_lines(RunConfig, skip=("task", "backbone", "head", "logger", "paths", "trainer"))
    lines += key_lines(BackboneConfig, "backbone.")
    lines += key_lines(PrototypeHeadConfig, "head.")
    lines += [
        line.replace("  head.dropout", "  head.dropout (head=linear)") for line in key_lines(LinearHeadConfig, "head.")
    ]
    lines += [
        "  task.*  the task YAML's keys (conf/task/; README: Adding a task)",
        "  trainer.*  any argument of lightning.pytorch.Trainer (checked by name and type)",
    ]
    return lines


def help_text(conf_dir: Path, config_name: str, command: str) -> str:
    if config_name == "config":
        lines = _usage(conf_dir / "config.yaml")
        lines += ["", "Config groups (group=option):"]
        lines += [f"  {group}: {', '.join(_options(conf_dir, group))}" for group in RUN_GROUPS]
        lines += ["", "Keys (key=default  (type)  meaning):", *_run_keys()]
    else:
        from protolm.config.tools import TOOL_SCHEMAS

        lines = _usage(conf_dir / f"{config_name}.yaml")
        lines += ["", "Keys (key=default  (type)  meaning):", *key_lines(TOOL_SCHEMAS[config_name])]
    lines += [
        "",
        f"The composed config: {command} --cfg job [overrides]   Hydra's options: {command} --hydra-help",
    ]
    return "\n".join(lines)
