"""Files written whole or not at all, and JSON records written the same way everywhere."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: str | Path, write: Callable[[Path], None]) -> Path:
    """``write(tmp)`` into a temporary sibling of ``path``, synced, then renamed onto ``path``.

    A process killed while writing leaves the previous file intact: a rename is atomic on POSIX
    file systems, a half-written file is not.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_json(path: str | Path, data) -> Path:
    """``data`` as indented JSON (the format of every record protolm writes)."""
    path = Path(path)
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path
