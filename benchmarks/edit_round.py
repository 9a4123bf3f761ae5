"""How long a user waits for one edit round on a trained model: an edit, the last layer's
retraining and the report, as the command runs it in a fresh process (loading the model and
passing the encoder over the training and selection splits included), and in the Python API's
``Editor``, whose first round makes those passes and whose later rounds reuse them.

    python benchmarks/edit_round.py --model <demo run> --out benchmarks/measured

Each command edit writes into a temporary folder: the model given is never touched.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import write  # noqa: E402

EDITS = {  # the command's options, and the same edit through the Editor, in this order
    "remove": (["remove=[0]"], lambda editor: editor.remove([0])),
    "remove another": (["remove=[1]"], lambda editor: editor.remove([1])),
    # a word with no sentiment: forbidding it should cost the model nothing
    "forbid a phrase (head)": (["forbid.phrases=[film]"], lambda editor: editor.forbid(phrases=["film"])),
}


def command_round(model: Path, options: list[str]) -> float:
    """``protolm edit model=<model> <options>`` in a fresh process: its wall time in seconds."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with tempfile.TemporaryDirectory(prefix="protolm-edit-") as out:
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "protolm", "edit", f"model={model}", *options, f"hydra.run.dir={out}"],
            capture_output=True, text=True, env=env,
        )  # fmt: skip
        wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"protolm edit {' '.join(options)} failed:\n{done.stderr[-3000:]}")
    return round(wall, 1)


def api_rounds(model: Path) -> dict:
    """The Editor's first round (the encoder passes included) and the later ones (cached), in seconds."""
    import protolm
    from protolm.serving.editing import Editor

    started = time.perf_counter()
    editor = Editor(protolm.load(model))
    loaded = time.perf_counter() - started
    seconds = {"load": round(loaded, 1)}
    for name, (_, edit) in EDITS.items():
        started = time.perf_counter()
        report = edit(editor)
        seconds[name] = round(time.perf_counter() - started, 1)
        seconds[f"{name}: selection accuracy before, after"] = [report.before["acc"], report.after["acc"]]
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a run directory, checkpoint or export")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    command = {
        name: command_round(args.model, options) for name, (options, _) in EDITS.items() if name != "remove another"
    }
    print("command, fresh process (s):", command, flush=True)
    api = api_rounds(args.model)
    print("Editor in one process (s):", api, flush=True)
    payload = {"command": "python " + " ".join(sys.argv[:1]) + " --model <run> ...", "model": args.model.name,
               "command_round_s": command, "editor_round_s": api, "target_s": 60}  # fmt: skip
    print(f"wrote {write('edit_round', payload, args.out)}")


if __name__ == "__main__":
    main()
