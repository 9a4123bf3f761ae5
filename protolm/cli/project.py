"""protolm project: project a model's prototypes onto training examples, then (after a replace) retrain
its last layer as training does; writes projected.ckpt and prototypes.json."""

from __future__ import annotations

from rich.console import Console

from protolm.cli.tool import datamodule_for, open_prototype_model, output_dir, stage_context
from protolm.config.tools import ProjectToolConfig
from protolm.prototypes.last_layer import phase_from_run
from protolm.prototypes.stages import projection_stage


def project_command(cfg: ProjectToolConfig) -> dict:
    clf = open_prototype_model(cfg, "projection")
    datamodule = datamodule_for(clf, cfg)
    out = output_dir(cfg, ("projected.ckpt", "prototypes.json"))
    phase = phase_from_run((clf.training or {}).get("config") or {}, cfg.project)
    ctx = stage_context(clf, datamodule, out)
    record = projection_stage(ctx, cfg.project, phase, out / "projected.ckpt").projection
    console = Console()
    console.print(
        f"projected {clf.model.head.num_prototypes} prototypes ({cfg.project.mode}) onto {record.size} "
        f"examples of {record.split}; {record.shared_examples} share an example"
    )
    console.print(f"wrote {out / 'projected.ckpt'} and {out / 'prototypes.json'}")
    return {"output_dir": str(out), "checkpoint": str(out / "projected.ckpt")}
