"""Explain predictions of a trained prototype model: `python explain.py ckpt_path=PATH text="..."`.

Writes explanations.jsonl and a self-contained explanations.html to the output directory and
prints a readable view. Task, backbone and labels are read from the checkpoint.
"""

from protolm.cli import entry_point

main = entry_point("explain", "protolm.cli.explain:explain_command", free_text=("text", "text_pair"))

if __name__ == "__main__":
    main()
