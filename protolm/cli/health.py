"""health.py: a checkpoint's prototype health (health.json, prototypes_pca.png), pruned when asked (pruned.ckpt)."""

from __future__ import annotations

from omegaconf import DictConfig
from rich.console import Console

from protolm.checkpoint import save_model_checkpoint
from protolm.cli.tool import open_prototype_model
from protolm.config import HealthConfig, PruneConfig, section
from protolm.pipeline import TrainerHooks, health_and_pruning
from protolm.render import print_health


def health_command(cfg: DictConfig) -> dict:
    writes = ("health.json", "prototypes_pca.png", "pruned.ckpt")
    model, dm, out = open_prototype_model(cfg, "no prototypes to check", writes)
    health, prune = section(cfg.health, HealthConfig), section(cfg.prune, PruneConfig)
    hooks = TrainerHooks(save_checkpoint=lambda path: save_model_checkpoint(model, path))
    result = health_and_pruning(model, dm, health, prune, hooks, out / "pruned.ckpt", out)
    console = Console()
    print_health(result.report, console, model.task_info.labels)
    written = [out / "health.json"] + ([out / "prototypes_pca.png"] if health.plot else [])
    if result.pruned is not None:
        written.append(out / "pruned.ckpt")
        console.print(f"pruned {len(result.pruned.removed)} prototypes: {result.pruned.remaining} remain")
    console.print("wrote " + ", ".join(map(str, written)))
    return {"output_dir": str(out), "report": result.to_dict()}
