"""Classify a file with a trained model: `python predict.py model=<path> input_file=in.txt output=out.jsonl`.

`model` is a run directory, a checkpoint or an exported model directory; input .txt, .csv or
.jsonl; output .jsonl or .csv, one row per input row, in order; `explain=true` adds explanations.
"""

from protolm.cli import entry_point

main = entry_point("predict", "protolm.cli.predict:predict_command")

if __name__ == "__main__":
    main()
