"""Project a trained model's prototypes onto training examples: `python project.py ckpt_path=PATH mode=replace`."""

import hydra
from omegaconf import DictConfig

from protolm.cli import run_main


@hydra.main(version_base="1.3", config_path="conf", config_name="project")
def main(cfg: DictConfig):
    from protolm.commands import project_command

    return run_main(project_command, cfg)


if __name__ == "__main__":
    main()
