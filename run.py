"""Train proto-lm (or the linear baseline) on a task: `python run.py task=sst2 backbone=roberta-large`.

Everything is configured by Hydra from conf/ (see README.md); multirun sweeps with -m.
"""

import hydra
from omegaconf import DictConfig

from protolm.cli import answer_help, one_line_config_errors, print_plan, run_main
from protolm.config import CONF_DIR  # importing it registers the schemas and resolvers


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig):
    from protolm.train import train  # imported here so `--help` and config errors stay fast

    if cfg.plan:
        return run_main(print_plan, cfg)
    results = run_main(train, cfg)
    if results is None:  # failed (recorded in error.txt): a sweeper sees NaN, a failed trial
        return float("nan")
    print(summary(results))
    metric = cfg.get("optimized_metric") or results["selection"]["metric"]
    if metric not in results["metrics"]:
        raise SystemExit(
            f"error: optimized_metric={metric!r} is not in results.json metrics: {', '.join(results['metrics'])}"
        )
    return results["metrics"][metric]


def summary(results: dict) -> str:
    metrics = results["metrics"]
    terms = ("loss", "ce", "mse", "cohesion", "separation")
    shown = {
        k: v
        for k, v in metrics.items()
        if k.startswith(("val/", "test/", "unprojected/test/")) and k.rsplit("/", 1)[1] not in terms
    }
    lines = [
        f"{results['task']} / {results['backbone']} / {results['head']}: "
        + ", ".join(f"{k}={v:.4f}" for k, v in shown.items())
    ]
    test = results["splits"].get("test", {})
    if test:
        lines.append(f"test = {test['split']} ({test['origin']}, {test['size']} examples)")
    lines.append(f"outputs: {results['run_dir']} (results.json, checkpoints/)")
    if results["head"] == "prototype":  # what to try next, runnable as printed
        lines.append(f'explain a prediction: python explain.py ckpt_path={results["run_dir"]} text="a sentence"')
    files = "input_file=<.txt|.csv|.jsonl> output=<.csv|.jsonl>"
    lines.append(f"use the model: python predict.py model={results['run_dir']} {files}")
    return "\n".join(lines)


if __name__ == "__main__":
    answer_help("config")
    one_line_config_errors(main)()
