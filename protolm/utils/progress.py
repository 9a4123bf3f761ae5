"""A Rich progress bar for long passes over data (projection, health, faithfulness), shown on a terminal only."""

from __future__ import annotations

import sys

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def track(iterable, description: str, total: int | None = None):
    """Yields from ``iterable`` with a progress bar on an interactive terminal (silent in logs and CI)."""
    if not sys.stderr.isatty():
        yield from iterable
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task(description, total=total if total is not None else len(iterable))
        for item in iterable:
            yield item
            progress.advance(task)
