"""protolm predict: classify every row of a file with a trained model (a run, a checkpoint or an export).

Ctrl-C stops it in one line, keeping the rows written so far; the same command run again goes on
from them (:mod:`protolm.serving.partial`).
"""

from __future__ import annotations

import sys
from pathlib import Path

from protolm.config.tools import PredictConfig
from protolm.serving.batch import INPUT_FORMATS, OUTPUT_FORMATS, file_format, predict_file
from protolm.utils.errors import ConfigError


def _check_paths(input_file: Path, output: Path, overwrite: bool) -> None:
    """Before the model loads (fail in a second): the names, the input, and an output that replaces
    nothing it should not."""
    file_format(input_file, INPUT_FORMATS, "input_file")
    file_format(output, OUTPUT_FORMATS, "output")
    same = output.exists() and input_file.exists() and output.samefile(input_file)  # a link to it, too
    if same or output.resolve() == input_file.resolve():
        raise ConfigError(
            f"output={output} is the input file itself: predictions never replace their input, "
            "overwrite=true or not; choose another output="
        )
    if output.exists() and not overwrite:
        raise ConfigError(f"output={output} already exists; choose another output= or pass overwrite=true")
    if not input_file.is_file():
        raise ConfigError(f"input_file={input_file}: no such file")
    if not output.parent.is_dir():
        raise ConfigError(f"output={output}: the folder {output.parent} does not exist")


def predict_command(cfg: PredictConfig) -> dict:
    input_file, output = Path(cfg.input_file).expanduser(), Path(cfg.output).expanduser()
    _check_paths(input_file, output, cfg.overwrite)
    try:
        return _predict(cfg, input_file, output)
    except KeyboardInterrupt as stop:  # one line, not a traceback: what was kept is in the message
        print(f"error: stopped by Ctrl-C; {stop or 'no new row was written'}", file=sys.stderr)
        sys.exit(130)


def _predict(cfg: PredictConfig, input_file: Path, output: Path) -> dict:
    from protolm.serving.classifier import load

    clf = load(cfg.model, cfg.device)
    explain = {"top_k": cfg.top_k, "nearest": cfg.nearest, "rationale": cfg.rationale} if cfg.explain else None
    rows = predict_file(
        clf,
        input_file,
        output,
        batch_size=cfg.batch_size,
        chunk_size=cfg.chunk_size,
        explain=explain,
        text_field=cfg.text_field,
        pair_field=cfg.text_pair_field,
        progress=cfg.progress,
        overwrite=cfg.overwrite,
    )
    print(f"wrote {rows} rows to {output}", file=sys.stderr)
    return {"rows": rows, "output": str(output)}
