"""Train proto-lm (or the linear baseline) on a task: `python run.py task=sst2 backbone=roberta-large`.

Everything is configured by Hydra from conf/ (see README.md); multirun sweeps with -m.
"""
import hydra
from omegaconf import DictConfig

import protolm.config  # noqa: F401  (registers the config resolvers)
from protolm.cli import run_main


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig):
    from protolm.train import train  # imported here so `--help` and config errors stay fast

    results = run_main(train, cfg)
    if results is None:
        return None
    print(summary(results))
    return results["metrics"].get(results["selection"]["metric"])


def summary(results: dict) -> str:
    metrics = results["metrics"]
    shown = {k: v for k, v in metrics.items() if k.startswith(("val/", "test/")) and not k.split("/")[1] in ("loss", "ce", "mse", "cohesion", "separation")}
    lines = [f"{results['task']} / {results['backbone']} / {results['head']}: " + ", ".join(f"{k}={v:.4f}" for k, v in shown.items())]
    test = results["splits"].get("test", {})
    if test:
        lines.append(f"test = {test['split']} ({test['origin']}, {test['size']} examples)")
    lines.append(f"outputs: {results['run_dir']} (results.json, checkpoints/)")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
