"""``protolm``: one command for everything, ``protolm <command> [key=value ...]``.

``protolm --help`` lists the commands; ``protolm <command> --help`` lists every key of that command
with its type, default and meaning. ``python run.py ...`` is ``protolm train ...``.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    config: str | None  # the Hydra config it composes (conf/<config>.yaml); None: its own arguments
    function: str  # "module:function"
    summary: str
    free_text: tuple[str, ...] = ()  # arguments that take a sentence as typed (quoted for Hydra)


COMMANDS = {
    "train": Command("config", "protolm.cli.train:main", "train a model on a task (python run.py is the same)"),
    "explain": Command(
        "explain",
        "protolm.cli.explain:explain_command",
        "explain predictions: words and prototypes",
        ("text", "text_pair"),
    ),  # fmt: skip
    "predict": Command("predict", "protolm.cli.predict:predict_command", "classify a file of any size"),
    "serve": Command("serve", "protolm.cli.serve:serve_command", "a local HTTP server and page for a model"),
    "export": Command("export", "protolm.cli.export:export_command", "a Hugging Face model directory (and ONNX)"),
    "project": Command("project", "protolm.cli.project:project_command", "project prototypes onto training examples"),
    "health": Command("health", "protolm.cli.health:health_command", "prototype usage, purity, duplicates; pruning"),
    "evaluate": Command("evaluate", "protolm.cli.evaluate:evaluate_command", "faithfulness of the explanations"),
    "edit": Command(
        "edit",
        "protolm.cli.edit:edit_command",
        "remove, replace, add or forbid prototypes; retrain; report",
        ("example_text",),
    ),  # fmt: skip
    "aggregate": Command(None, "protolm.cli.aggregate:main", "tables (mean, std, CI) from runs' results.json"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: protolm <command> [key=value ...]   (protolm <command> --help: its keys)", "", "commands:"]
    lines += [f"  {name:<{width}}  {command.summary}" for name, command in COMMANDS.items()]
    lines += ["", "A trained model is named by model=: a run directory, a checkpoint (.ckpt), an exported directory."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        sys.exit(0)
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        close = difflib.get_close_matches(name, COMMANDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        print(f"error: protolm: unknown command {name!r}{hint}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        sys.exit(1)
    command = COMMANDS[name]
    sys.argv = [f"protolm {name}", *rest]
    module, _, function = command.function.partition(":")
    if command.config in (None, "config"):
        if command.config == "config":
            from protolm.cli.runner import answer_help

            answer_help("config")
        result = getattr(importlib.import_module(module), function)(*([rest] if command.config is None else []))
        sys.exit(result or 0)
    from protolm.cli.runner import entry_point

    entry_point(command.config, command.function, command.free_text)()
