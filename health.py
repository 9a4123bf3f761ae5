"""Prototype health report and pruning: `python health.py ckpt_path=PATH [prune.enabled=true]`."""

import hydra
from omegaconf import DictConfig

from protolm.cli import run_main


@hydra.main(version_base="1.3", config_path="conf", config_name="health")
def main(cfg: DictConfig):
    from protolm.commands import health_command

    return run_main(health_command, cfg)


if __name__ == "__main__":
    main()
