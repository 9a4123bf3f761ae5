"""Explain predictions of a trained prototype model: `python explain.py ckpt_path=PATH text="..."`.

Writes explanations.jsonl and a self-contained explanations.html to the output directory and
prints a readable view. Task, backbone and labels are read from the checkpoint.
"""

import sys

import hydra
from omegaconf import DictConfig

from protolm.cli import quote_free_text, run_main


@hydra.main(version_base="1.3", config_path="conf", config_name="explain")
def main(cfg: DictConfig):
    from protolm.commands import explain_command

    return run_main(explain_command, cfg)


if __name__ == "__main__":
    sys.argv = quote_free_text(sys.argv)
    main()
