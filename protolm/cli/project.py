"""project.py: project a checkpoint's prototypes onto training examples; writes projected.ckpt and prototypes.json."""

from __future__ import annotations

from omegaconf import DictConfig
from rich.console import Console

from protolm.checkpoint import save_model_checkpoint
from protolm.cli.tool import open_prototype_model
from protolm.config import ProjectConfig
from protolm.pipeline import TrainerHooks, projection_stage


def project_command(cfg: DictConfig) -> dict:
    model, dm, out = open_prototype_model(cfg, "nothing to project", ("projected.ckpt", "prototypes.json"))
    # The tool has no trainer: no test of the unprojected model, no last-layer phase.
    project = ProjectConfig(mode=cfg.mode, top_k=cfg.top_k, report_unprojected=False)
    hooks = TrainerHooks(save_checkpoint=lambda path: save_model_checkpoint(model, path))
    record = projection_stage(model, dm, project, hooks, out / "projected.ckpt", out).projection
    console = Console()
    console.print(
        f"projected {model.head.num_prototypes} prototypes ({cfg.mode}) onto {record.size} "
        f"examples of {record.split}; {record.shared_examples} share an example"
    )
    console.print(f"wrote {out / 'projected.ckpt'} and {out / 'prototypes.json'}")
    return {"output_dir": str(out), "checkpoint": str(out / "projected.ckpt")}
