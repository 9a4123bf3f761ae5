"""Prototype health report and pruning: `python health.py ckpt_path=PATH [prune.enabled=true]`."""

from protolm.cli import entry_point

main = entry_point("health", "protolm.cli.health:health_command")

if __name__ == "__main__":
    main()
