"""Splits kept on disk as Arrow files, keyed by everything that decides what they hold.

A run reads its splits through ``datasets`` as memory-mapped Arrow tables rather than Python
lists, and keeps two kinds of entries under ``data.cache_dir``:

* ``split/<key>``: a split as read and labelled from its file (or the hub), keyed by the file's
  identity (path, size, modification time; every file of a text directory) and the task's
  reading settings (format, fields, labels, label map);
* ``role/<key>``: what a run trains, selects or reports on, carved, limited and tokenized, keyed
  by the identities of every split it was carved from or with, the whole task spec, the split
  seed, the limit, the tokenizer (its full definition, not its name) and ``data.max_length``.

So a second run, every sweep job after the first and every DDP rank but the first reuse the
tokenized examples; a changed file or setting changes the key. Whoever builds an entry holds a
file lock on it (the others wait, then read it) and writes it under a temporary name that is
renamed into place, so a crash never leaves a half-written entry. ``data.cache=false`` builds
into a temporary folder that is removed when the process ends.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import weakref
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

VERSION = 1  # bump when what an entry holds changes: old entries are then never read
DATA_FILE, META_FILE = "data.arrow", "meta.json"


def default_cache_dir() -> Path:
    """``PROTOLM_CACHE_DIR``, else ``$XDG_CACHE_HOME/protolm/data``, else ``~/.cache/protolm/data``."""
    if os.environ.get("PROTOLM_CACHE_DIR"):
        return Path(os.environ["PROTOLM_CACHE_DIR"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "protolm" / "data"


def digest(parts) -> str:
    """A short stable key for JSON-able ``parts``."""
    text = json.dumps({"version": VERSION, "parts": parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def file_identity(path: Path) -> list:
    """What changes when a file (or any file under a directory) changes: paths, sizes, mtimes."""
    path = Path(path).resolve()
    if not path.is_dir():
        stat = path.stat()
        return [str(path), stat.st_size, stat.st_mtime_ns]
    files = []
    for root, _, names in os.walk(path):
        for name in sorted(names):
            stat = os.stat(os.path.join(root, name))
            files.append([os.path.relpath(os.path.join(root, name), path), stat.st_size, stat.st_mtime_ns])
    return [str(path), hashlib.sha256(json.dumps(sorted(files)).encode()).hexdigest()]


def tokenizer_identity(tokenizer) -> str:
    """A digest of everything about a tokenizer that decides its token ids.

    A ``tokenizers``-backed one is its serialized pipeline (vocabulary, normalizer, pre- and
    post-processor) without the truncation and padding a previous call left set on it; any other
    is its vocabulary. Both add its class, special tokens and sides.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = json.loads(backend.to_str())
        state.pop("truncation", None)
        state.pop("padding", None)
        body = json.dumps(state, sort_keys=True)
    else:
        body = json.dumps(sorted(tokenizer.get_vocab().items()))
    extra = [
        type(tokenizer).__name__,
        getattr(tokenizer, "special_tokens_map", {}),
        getattr(tokenizer, "padding_side", None),
        getattr(tokenizer, "truncation_side", None),
        getattr(tokenizer, "model_input_names", None),
    ]
    return hashlib.sha256((body + json.dumps(extra, sort_keys=True, default=str)).encode()).hexdigest()


class ArrowCache:
    """Entries of Arrow tables with a JSON record beside each, built once per key."""

    def __init__(self, root: str | Path | None, enabled: bool = True):
        self.enabled = enabled
        if enabled:
            self.root = Path(root).expanduser() if root else default_cache_dir()
        else:  # still on disk (memory-mapped, not in RAM), but private to this process and removed with it
            self.root = Path(tempfile.mkdtemp(prefix="protolm-data-"))
            weakref.finalize(self, shutil.rmtree, self.root, True)

    def entry(self, kind: str, key: str, build: Callable[[Path], dict]) -> tuple[object, dict]:
        """The entry's dataset and record, built first by ``build(data_file) -> record`` if absent."""
        final = self.root / kind / key
        if not (final / META_FILE).exists():
            final.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(str(final) + ".lock"):
                if not (final / META_FILE).exists():  # another process may have built it meanwhile
                    self._build(final, build)
        return self._load(final)

    def _build(self, final: Path, build: Callable[[Path], dict]) -> None:
        building = final.with_name(f"{final.name}.building-{os.getpid()}")
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir()
        try:
            record = build(building / DATA_FILE)
            (building / META_FILE).write_text(json.dumps(record, indent=1))
            shutil.rmtree(final, ignore_errors=True)  # an entry left without its record is incomplete
            os.replace(building, final)
        finally:
            shutil.rmtree(building, ignore_errors=True)

    @staticmethod
    def _load(final: Path) -> tuple[object, dict]:
        import datasets

        return datasets.Dataset.from_file(str(final / DATA_FILE)), json.loads((final / META_FILE).read_text())
