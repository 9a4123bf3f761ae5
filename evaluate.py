"""Faithfulness of a trained model's explanations: `python evaluate.py ckpt_path=PATH split=test`."""

import hydra
from omegaconf import DictConfig

from protolm.cli import run_main


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig):
    from protolm.commands import evaluate_command

    return run_main(evaluate_command, cfg)


if __name__ == "__main__":
    main()
