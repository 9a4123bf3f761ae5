"""An output file written in steps that an interruption never loses, and that a rerun goes on from.

Batch prediction of a large file takes hours; a Ctrl-C, a kill or a crash near the end must not
cost the rows already computed. Rows go to ``<output>.partial``; after each chunk the file is
synced and ``<output>.partial.json`` records how far it got: the rows and bytes written, a digest
of the input rows they answer, and the command's settings. A rerun of the same command cuts the
partial file back to the recorded bytes (dropping a chunk half-written when the process died),
checks that its input still begins with the same rows, and appends the rest. The file is renamed
to ``output`` only when complete, and one process at a time may write it (an OS lock, released
if the process dies).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from protolm.utils.errors import ConfigError
from protolm.utils.files import write_atomically, write_json

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, one writer is the user's care
    fcntl = None


class PartialOutput:
    """``output`` as it is being written (``<output>.partial``) and the record of how far it got.

    Use it as a context manager: entering opens and locks the partial file; :meth:`earlier` reads
    the record of an earlier run, :meth:`start` cuts the file back to where that run got (or to
    nothing), :meth:`append` and :meth:`checkpoint` write a chunk and record it, :meth:`finish`
    renames the complete file to ``output``; leaving without finishing keeps what was recorded, or
    removes both files when nothing was.
    """

    def __init__(self, output: Path, settings: dict):
        self.output, self.settings = output, settings
        self.path = output.with_name(output.name + ".partial")
        self.record_path = output.with_name(output.name + ".partial.json")
        self.rows = 0  # rows written and recorded
        self._file = None
        self._created = self._started = self._finished = False

    def __enter__(self) -> PartialOutput:
        self._created = not self.path.exists()
        self._file = open(self.path, "a+b")  # never truncated before the lock is held
        if fcntl is not None:
            try:
                fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._file.close()
                raise ConfigError(
                    f"output={self.output} is being written by another running protolm predict; "
                    "wait for it to end, or choose another output="
                ) from None
        return self

    def __exit__(self, *exc) -> None:
        if not self._file.closed:
            self._file.close()
        nothing_kept = self.rows == 0 if self._started else self._created
        if not self._finished and nothing_kept:
            self.discard()

    def earlier(self, overwrite: bool) -> dict | None:
        """The record of an earlier run of the same command that this one can go on from, or None.
        A record of other settings is refused unless ``overwrite`` (which starts afresh)."""
        try:
            record = json.loads(self.record_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # no record: the partial file holds no finished chunk
        if record.get("settings") != self.settings:
            if overwrite:
                return None
            before = record.get("settings") or {}
            changed = sorted(k for k in {**before, **self.settings} if before.get(k) != self.settings.get(k))
            raise ConfigError(
                f"{self.path} holds {record.get('rows', 0)} rows of an earlier predict with other settings "
                f"({', '.join(changed)}): rerun that command to finish it, or pass overwrite=true to start again"
            )
        if os.fstat(self._file.fileno()).st_size < record.get("bytes", 0):
            return None  # shorter than recorded: not the file the record describes
        return record

    def start(self, record: dict | None, header: str) -> None:
        """Cut the partial file back to ``record``'s bytes (an earlier run's finished chunks), or to
        nothing and then ``header``."""
        self._file.truncate(record["bytes"] if record else 0)
        self.rows = record["rows"] if record else 0
        if record is None:
            self.record_path.unlink(missing_ok=True)
            self._file.write(header.encode("utf-8"))
        self._started = True

    def append(self, text: str) -> None:
        self._file.write(text.encode("utf-8"))

    def checkpoint(self, rows: int, digest: str) -> None:
        """Everything appended so far is on disk; the record says so (``rows``: input rows answered,
        ``digest``: of those input rows)."""
        self._file.flush()
        os.fsync(self._file.fileno())
        size = os.fstat(self._file.fileno()).st_size
        record = {"rows": rows, "bytes": size, "digest": digest, "settings": self.settings}
        write_atomically(self.record_path, lambda tmp: write_json(tmp, record))
        self.rows = rows

    def finish(self) -> None:
        """The complete file renamed to ``output``; the record removed."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self.path.replace(self.output)
        self.record_path.unlink(missing_ok=True)
        self._finished = True

    def discard(self) -> None:
        if not self._file.closed:
            self._file.close()
        self.path.unlink(missing_ok=True)
        self.record_path.unlink(missing_ok=True)
