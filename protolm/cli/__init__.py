"""The command line: run.py and the checkpoint tools (explain, project, health, evaluate).

:mod:`protolm.cli.main` holds what every entry point shares (:func:`run_main`, :func:`entry_point`);
:mod:`protolm.cli.tool` what the tools share (the checkpoint, its data, a fresh output directory);
one module per tool holds its command.
"""

from protolm.cli.main import (
    answer_help,
    entry_point,
    one_line_config_errors,
    print_plan,
    quote_free_text,
    run_main,
    tidy_logging,
)

__all__ = [
    "answer_help",
    "entry_point",
    "one_line_config_errors",
    "print_plan",
    "quote_free_text",
    "run_main",
    "tidy_logging",
]
