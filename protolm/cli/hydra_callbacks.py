"""Hydra callbacks: a sweep reports which of its jobs failed and why, after all of them ran."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from protolm.training.runs import first_overrides, note_new_dir

log = logging.getLogger("protolm.sweep")


def sweep_status(sweep_dir: Path) -> dict:
    """Every job directory under a sweep: finished (results.json) or failed (error.txt)."""
    jobs = []
    for job in sorted((p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()), key=lambda p: (len(p.name), p.name)):
        error = job / "error.txt"
        entry = {"dir": str(job), "overrides": first_overrides(job)}
        if (job / "results.json").exists():
            entry["status"] = "finished"
        elif error.exists():
            entry["status"], entry["error"] = "failed", error.read_text().splitlines()[0]
        else:
            entry["status"] = "incomplete"
        jobs.append(entry)
    return {
        "sweep_dir": str(sweep_dir),
        "jobs": jobs,
        "failed": sum(j["status"] == "failed" for j in jobs),
        "finished": sum(j["status"] == "finished" for j in jobs),
    }


class SweepSummary(Callback):
    """After a multirun: write sweep_summary.json, list failed jobs, exit non-zero if any failed.

    Failed jobs do not stop the sweep (protolm.cli.run_main records them and returns); this
    makes sure they are not missed either.
    """

    def __init__(self, exit_on_failure: bool = True):
        self.exit_on_failure = exit_on_failure

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        status = sweep_status(sweep_dir)
        (sweep_dir / "sweep_summary.json").write_text(json.dumps(status, indent=1) + "\n")
        print(
            f"sweep: {status['finished']} finished, {status['failed']} failed of {len(status['jobs'])} jobs "
            f"({sweep_dir / 'sweep_summary.json'})"
        )
        for job in status["jobs"]:
            if job["status"] != "finished":
                print(f"  {job['status']}: {' '.join(job['overrides'])}\n    {job.get('error', '')}\n    {job['dir']}")
        if status["failed"] and self.exit_on_failure:
            sys.stdout.flush()
            sys.exit(1)


class NewRunDir(Callback):
    """Before a single run's directory is created: remember which folders the command creates, so
    that a refused command can remove them again (:func:`protolm.training.runs.discard_if_untouched`)."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        from omegaconf import OmegaConf

        note_new_dir(Path(str(OmegaConf.select(config, "hydra.run.dir"))))
