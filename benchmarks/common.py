"""Shared benchmark helpers: timing (median of repeats after warm-up), machine facts, output."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

import torch


def timeit(fn, repeats: int = 5, warmup: int = 2, sync=None) -> dict:
    """Median and spread of ``fn()`` wall time in seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if sync:
            sync()
        start = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "repeats": repeats}


def machine() -> dict:
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    try:
        info["commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent
        ).stdout.strip()
    except OSError:
        pass
    try:
        import lightning
        import transformers

        info["lightning"], info["transformers"] = lightning.__version__, transformers.__version__
    except ImportError:
        pass
    return info


def run_py_with(callback, overrides: list[str], repo: Path | None = None) -> None:
    """Run ``run.py`` (of ``repo``, default this checkout) in this process, as the command line
    would, with one more Lightning callback among its own (timing, or stopping at a point)."""
    import runpy
    import sys

    import protolm.training.train

    build_callbacks = protolm.training.train.build_callbacks

    def with_callback(settings, ckpt_dir):
        callbacks, checkpoint = build_callbacks(settings, ckpt_dir)
        return [*callbacks, callback], checkpoint

    protolm.training.train.build_callbacks = with_callback
    sys.argv = ["run.py", *overrides]
    runpy.run_path(str(Path(repo or Path(__file__).resolve().parents[1]) / "run.py"), run_name="__main__")


def table(rows: list[dict], columns: list[str]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    widths = {c: max(len(c), *(len(fmt(r.get(c, ""))) for r in rows)) for c in columns}
    lines = [
        "| " + " | ".join(c.ljust(widths[c]) for c in columns) + " |",
        "|" + "|".join("-" * (widths[c] + 2) for c in columns) + "|",
    ]
    for r in rows:
        lines.append("| " + " | ".join(fmt(r.get(c, "")).ljust(widths[c]) for c in columns) + " |")
    return "\n".join(lines)


def write(name: str, payload: dict, out_dir: str | Path | None = None) -> Path:
    out = Path(out_dir or Path(__file__).parent / "results")
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=1) + "\n")
    return path
