"""protolm train (the same as ``python run.py``): compose the run config with Hydra, train, print the figures."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from protolm.cli.runner import one_line_config_errors, print_plan, run_main
from protolm.config import CONF_DIR
from protolm.serving.figures import shown_metrics


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def train_main(cfg: DictConfig):
    from protolm.training.train import train  # imported here so `--help` and config errors stay fast

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
    """What a finished run prints: its figures, its data, where it wrote, what to try next."""
    shown = shown_metrics(results["metrics"])
    lines = [
        f"{results['task']} / {results['backbone']} / {results['head']}: "
        + ", ".join(f"{k}={v:.4f}" for k, v in shown.items())
    ]
    test = results["splits"].get("test", {})
    if test:
        lines.append(f"test = {test['split']} ({test['origin']}, {test['size']} examples)")
    lines.append(f"outputs: {results['run_dir']} (results.json, checkpoints/)")
    if results["head"] == "prototype":  # what to try next, runnable as printed
        lines.append(f'explain a prediction: protolm explain model={results["run_dir"]} text="a sentence"')
    files = "input_file=<.txt|.csv|.jsonl> output=<.csv|.jsonl>"
    lines.append(f"use the model: protolm predict model={results['run_dir']} {files}")
    return "\n".join(lines)


def main() -> None:
    one_line_config_errors(train_main)()
