"""protolm predict: classify every row of a file with a trained model (a run, a checkpoint or an export)."""

from __future__ import annotations

import sys
from pathlib import Path

from protolm.config.tools import PredictConfig
from protolm.serving.batch import INPUT_FORMATS, OUTPUT_FORMATS, file_format, predict_file
from protolm.utils.errors import ConfigError


def predict_command(cfg: PredictConfig) -> dict:
    from protolm.serving.classifier import load

    input_file, output = Path(cfg.input_file).expanduser(), Path(cfg.output).expanduser()
    file_format(input_file, INPUT_FORMATS, "input_file")  # before the model loads: fail in a second
    file_format(output, OUTPUT_FORMATS, "output")
    if output.exists() and not cfg.overwrite:
        raise ConfigError(f"output={output} already exists; choose another output= or pass overwrite=true")
    if not input_file.is_file():
        raise ConfigError(f"input_file={input_file}: no such file")
    if not output.parent.is_dir():
        raise ConfigError(f"output={output}: the folder {output.parent} does not exist")
    clf = load(cfg.model, cfg.device)
    explain = {"top_k": cfg.top_k, "nearest": cfg.nearest} if cfg.explain else None
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
    )
    print(f"wrote {rows} rows to {output}", file=sys.stderr)
    return {"rows": rows, "output": str(output)}
