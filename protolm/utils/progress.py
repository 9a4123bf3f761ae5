"""Progress of long passes over data (encoding a split, faithfulness, batch prediction): a Rich bar
on a terminal; anywhere else (a file, nohup, a cluster job, CI) a log line every few seconds, so
that a log never goes silent for minutes while work is being done.

The interval is the commands' ``progress_every_s`` (training's ``callbacks.progress_every_s``),
set for the length of a command by :func:`lines_every`; training's own steps are reported by the
Lightning callback ``protolm.training.callbacks.ProgressLines``, which words its lines with the
helpers here.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from datetime import timedelta

log = logging.getLogger(__name__)

# A line at least every 30 s: at 15 s, even a step (or batch) of up to 15 s keeps that promise.
LINE_EVERY_S = 15.0
MAX_LINE_EVERY_S = 3600  # the range the config keys accept: (0, 1 hour]
_line_every_s = LINE_EVERY_S  # the running command's interval (lines_every)


def on_terminal() -> bool:
    """Whether a bar can be drawn: stdout (where Rich and the logs write) and stderr are both terminals."""
    return sys.stdout.isatty() and sys.stderr.isatty()


@contextlib.contextmanager
def lines_every(seconds: float):
    """Progress lines every ``seconds`` (off a terminal) inside the block: a command's configured interval."""
    global _line_every_s
    before, _line_every_s = _line_every_s, seconds
    try:
        yield
    finally:
        _line_every_s = before


def clock(seconds: float | None) -> str:
    """``seconds`` as h:mm:ss; ``?`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    return str(timedelta(seconds=round(seconds)))


def remaining_seconds(done: float, total: float | None, elapsed: float) -> float | None:
    """The time left at the average rate so far (None before any progress, or without a total)."""
    if not total or not math.isfinite(total) or done <= 0:
        return None
    return max(0.0, total - done) * elapsed / done


class PeriodicLog:
    """One pass's progress as log lines: at most one every ``every_s`` seconds while it runs (done/total,
    rate, elapsed, remaining), and a closing line when it logged any (a short pass stays quiet)."""

    def __init__(self, description: str, total: int | None, unit: str = "batches", every_s: float | None = None):
        self.description, self.total, self.unit = description, total, unit
        self.every_s = _line_every_s if every_s is None else every_s
        self.started = self.last_line = time.monotonic()
        self.done = 0
        self.lines = 0

    def advance(self, count: int = 1) -> None:
        self.done += count
        now = time.monotonic()
        if now - self.last_line >= self.every_s:
            self.last_line = now
            self.lines += 1
            log.info(self.line(now - self.started))

    def line(self, elapsed: float) -> str:
        of_total = f"/{self.total}" if self.total else ""
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = clock(remaining_seconds(self.done, self.total, elapsed))
        return (
            f"{self.description}: {self.done}{of_total} {self.unit}, {rate:.3g} {self.unit}/s, "
            f"elapsed {clock(elapsed)}, remaining {left}"
        )

    def finish(self) -> None:
        if self.lines:
            elapsed = time.monotonic() - self.started
            log.info("%s: done, %d %s in %s", self.description, self.done, self.unit, clock(elapsed))


class _Bar:
    """A Rich bar's task, counted as :class:`PeriodicLog` counts (``advance``)."""

    def __init__(self, bar, task):
        self.bar, self.task = bar, task

    def advance(self, count: int = 1) -> None:
        self.bar.advance(self.task, count)


@contextlib.contextmanager
def counting(description: str, total: int | None = None, unit: str = "batches", enabled: bool = True):
    """Yields a counter (``advance(count)``) of the work done in the block: a bar on a terminal, log
    lines elsewhere, neither when not ``enabled``."""
    if not enabled or not on_terminal():
        lines = PeriodicLog(description, total, unit, None if enabled else math.inf)
        yield lines
        lines.finish()
        return
    from rich import progress as rich

    columns = (
        rich.TextColumn("[bold]{task.description}"),
        rich.BarColumn(),
        rich.MofNCompleteColumn(),
        rich.TimeElapsedColumn(),
        rich.TextColumn("eta"),
        rich.TimeRemainingColumn(),
    )
    with rich.Progress(*columns, transient=True) as bar:
        yield _Bar(bar, bar.add_task(description, total=total))


def track(iterable, description: str, total: int | None = None, unit: str = "batches"):
    """Yields from ``iterable``, counting each item as one of ``unit`` (a plural: batches, rows) (:func:`counting`)."""
    if total is None:
        try:
            total = len(iterable)
        except TypeError:  # a stream (an iterable dataset's loader): no total
            total = None
    with counting(description, total, unit) as counter:
        for item in iterable:
            yield item
            counter.advance()
