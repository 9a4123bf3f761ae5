"""Concurrent model calls gathered into batches: the server's requests share forward passes.

A model on CPU predicts several times more texts per second in a batch of 32 than one at a time,
and requests to a server arrive one text at a time. So the server does not run each request
alone: :class:`Batcher` queues it, and one worker thread takes what is waiting, then goes on
taking requests while they keep coming (each within ``window_s`` of the one before) until
``max_batch_texts`` texts are gathered. Requests that come in a burst (say, the clients that got
their answers from the last batch asking again) then share one batch instead of splitting into
several small ones, and a lone request waits ``window_s`` at most.
runs the compatible requests together and hands each request exactly its own rows back.
A forward pass pads every text to its longest, so on a CPU (where padding costs what text does)
the batch's texts are sorted by length and run in passes of similar lengths (:func:`length_runs`).
A request the batched call cannot take (say, text pairs for a single-text model) fails alone:
the others of its batch are then run one by one, so no request answers for another.

The queue is bounded: more than ``max_waiting`` requests queued or running at once are refused
at once (:class:`Busy`) rather than left to wait without end.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

# run_batch(key, texts, text_pairs) -> one result per text, in order (key: what the requests share)
RunBatch = Callable[[Hashable, list[str], "list[str] | None"], list]


class Busy(Exception):
    """The queue holds ``max_waiting`` requests already: this one is refused, not queued."""


@dataclass
class Job:
    """One request's texts waiting for the model, and the future its caller waits on."""

    key: Hashable  # requests with equal keys can share one call (the same endpoint and options)
    texts: list[str]
    text_pairs: list[str] | None
    future: Future = field(default_factory=Future)

    @property
    def group(self) -> tuple:
        return self.key, self.text_pairs is not None  # with and without pairs never share a call


_STOP = object()  # put on the queue by close(): the worker ends
LONGEST_RUN = 64  # texts in one pass of length_runs at most: bounds its work; a CPU gains nothing past it


class Batcher:
    """One worker thread that runs queued requests in batches (see the module's docstring)."""

    def __init__(
        self, run_batch: RunBatch, window_s: float, max_batch_texts: int, max_waiting: int, by_length: bool = True
    ):
        self.run_batch, self.window_s, self.max_batch_texts = run_batch, window_s, max_batch_texts
        self.max_waiting, self.by_length = max_waiting, by_length
        self.slots = threading.BoundedSemaphore(max_waiting)  # held from submit until answered
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.held: Job | None = None  # taken from the queue but too big for the batch: starts the next
        # What the worker has done (read by /health): gathered batches, their requests and texts, and
        # the model calls they took (a batch takes one per group and length run).
        self.counts = {"batches": 0, "requests": 0, "texts": 0, "model_calls": 0}
        self.worker = threading.Thread(target=self._serve_forever, name="protolm-batcher", daemon=True)
        self.worker.start()

    def submit(self, key: Hashable, texts: Sequence[str], text_pairs: Sequence[str] | None = None) -> Future:
        """Queue one request; its future gives its rows (or its error). :class:`Busy` when full."""
        if not self.slots.acquire(blocking=False):
            raise Busy(f"the server is busy ({self.max_waiting} requests waiting); retry shortly")
        job = Job(key, list(texts), list(text_pairs) if text_pairs is not None else None)
        job.future.add_done_callback(lambda _: self.slots.release())
        self.jobs.put(job)
        return job.future

    async def run(self, key: Hashable, texts: Sequence[str], text_pairs: Sequence[str] | None = None) -> list:
        """:meth:`submit`, awaited on the event loop (which stays free while the model runs)."""
        return await asyncio.wrap_future(self.submit(key, texts, text_pairs))

    def close(self) -> None:
        """End the worker after the requests queued before this call."""
        self.jobs.put(_STOP)
        self.worker.join(timeout=30)

    def _serve_forever(self) -> None:
        while True:
            first, self.held = self.held or self.jobs.get(), None
            if first is _STOP:
                return
            batch = self._gather(first)
            self.counts["batches"] += bool(batch)
            self.counts["requests"] += len(batch)
            self.counts["texts"] += sum(len(job.texts) for job in batch)
            for group in _groups(batch):
                self._answer(group)

    def _gather(self, first: Job) -> list[Job]:
        """``first`` and the requests that follow it, each within the window of the one before, up
        to ``max_batch_texts`` texts (one that would pass the limit, or the stop mark, is held for
        the next round); requests whose callers gave up are dropped."""
        batch, size = [first], len(first.texts)
        while size < self.max_batch_texts and (job := self._next()) is not None:
            if job is _STOP or size + len(job.texts) > self.max_batch_texts:
                self.held = job
                break
            batch.append(job)
            size += len(job.texts)
        return [job for job in batch if job.future.set_running_or_notify_cancel()]

    def _next(self) -> Job | None:
        """The next queued request, waiting ``window_s`` at most (None: none came)."""
        try:
            return self.jobs.get(timeout=self.window_s) if self.window_s > 0 else self.jobs.get_nowait()
        except queue.Empty:
            return None

    def _answer(self, jobs: list[Job]) -> None:
        """One call for ``jobs`` (one group), each given its own rows; a failed call is retried
        request by request, so that only the request at fault gets the error."""
        texts = [text for job in jobs for text in job.texts]
        pairs = [pair for job in jobs for pair in job.text_pairs] if jobs[0].text_pairs is not None else None
        try:
            rows = self._call(jobs[0].key, texts, pairs)
        except Exception as err:  # noqa: BLE001 - handed to the request(s) it belongs to
            if len(jobs) > 1:
                for job in jobs:
                    self._answer([job])
            else:
                jobs[0].future.set_exception(err)
            return
        start = 0
        for job in jobs:
            job.future.set_result(rows[start : start + len(job.texts)])
            start += len(job.texts)

    def _call(self, key: Hashable, texts: list[str], pairs: list[str] | None) -> list:
        """The rows of ``texts`` in their order, computed in passes of similar lengths (by_length)."""
        lengths = [len(text) + len(pairs[i] if pairs is not None else "") for i, text in enumerate(texts)]
        runs = length_runs(lengths) if self.by_length else [list(range(len(texts)))]
        rows: list = [None] * len(texts)
        for run in runs:
            self.counts["model_calls"] += 1
            found = self.run_batch(key, [texts[i] for i in run], [pairs[i] for i in run] if pairs is not None else None)
            if len(found) != len(run):  # never hand a request another's rows
                raise RuntimeError(f"the model answered {len(found)} rows for {len(run)} texts")
            for i, row in zip(run, found, strict=True):
                rows[i] = row
        return rows


def length_runs(lengths: list[int]) -> list[list[int]]:
    """The indices of ``lengths``, shortest first, cut into the runs that cost least when a pass
    costs its rows times its longest length (every row is padded to it) plus a fixed cost of about
    one text of mean length (MiniLM on one CPU thread: about 9.5 ms a pass and 0.3 ms a token, a
    mean SST-2 sentence of 25 tokens 7.7 ms). Exact by dynamic programming over the cut points."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    ordered = [lengths[i] for i in order]
    one_pass = sum(ordered) / max(len(ordered), 1)
    best, cut = [0.0] + [float("inf")] * len(ordered), [0] * (len(ordered) + 1)
    for end in range(1, len(ordered) + 1):
        for start in range(max(0, end - LONGEST_RUN), end):
            cost = best[start] + one_pass + (end - start) * ordered[end - 1]
            if cost < best[end]:
                best[end], cut[end] = cost, start
    runs, end = [], len(ordered)
    while end > 0:
        runs.append(order[cut[end] : end])
        end = cut[end]
    return runs[::-1]


def _groups(batch: list) -> list[list[Job]]:
    """The batch's jobs by group (endpoint, options, pairs or not), in order of first arrival."""
    groups: dict[tuple, list[Job]] = {}
    for job in batch:
        groups.setdefault(job.group, []).append(job)
    return list(groups.values())
