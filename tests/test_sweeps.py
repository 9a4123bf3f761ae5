"""Sweeps and scale-out: multirun failures, optuna, the submitit launcher, W&B, DDP, experiments, tables."""

import json
import time
from pathlib import Path

import pytest
import yaml

from tests.support import BACKBONES, CONF, REPO, TASKS, TINY, compose_config, run_cli

FAST = TINY + [
    "trainer.max_epochs=1",
    "data.max_train_samples=32",
    "data.max_eval_samples=16",
    "health.at_end=false",
    "project.report_unprojected=false",
]


def test_failing_jobs_do_not_lose_the_others(tmp_path):
    # a bad value (5 prototypes for 2 classes) and a crash inside Lightning (an unknown strategy)
    result = run_cli(
        "run.py", "-m", *FAST, "head.num_prototypes=4,5", "trainer.strategy=auto,bogus", f"hydra.sweep.dir={tmp_path}"
    )
    assert result.returncode == 1, result.stderr  # the sweep says it had failures ...
    assert "Traceback" not in result.stderr
    summary = json.loads((tmp_path / "sweep_summary.json").read_text())
    status = {
        " ".join(o for o in j["overrides"] if o.startswith(("head.", "trainer.strategy"))): j for j in summary["jobs"]
    }
    assert status["head.num_prototypes=4 trainer.strategy=auto"]["status"] == "finished"
    bad_value = status["head.num_prototypes=5 trainer.strategy=auto"]
    assert bad_value["status"] == "failed" and "head.num_prototypes=5 must be a multiple" in bad_value["error"]
    crash = status["head.num_prototypes=4 trainer.strategy=bogus"]
    assert crash["status"] == "failed" and "bogus" in crash["error"]
    assert (Path(crash["dir"]) / "error.txt").read_text().count("Traceback") == 1  # kept for the developer
    assert summary["finished"] == 1 and summary["failed"] == 3  # ... and kept the finished one
    assert "3 failed" in result.stdout and "trainer.strategy=bogus" in result.stdout


@pytest.mark.no_data
def test_wandb_runs_of_one_sweep_share_a_group():
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    def group(*overrides):
        with initialize_config_dir(str(CONF), version_base="1.3"):
            cfg = compose(
                "config",
                overrides=["logger=wandb", "hydra.sweep.dir=outputs/multirun/2026-01-01/10-00-00", *overrides],
                return_hydra_config=True,
            )
        HydraConfig.instance().set_config(cfg)
        return cfg.logger.wandb.group

    assert group("hydra.mode=MULTIRUN") == "outputs_multirun_2026-01-01_10-00-00"
    assert group("hydra.mode=RUN") is None


def test_aggregate_tables_a_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli("run.py", "-m", *FAST, "head=prototype,linear", "seed=1,2", f"hydra.sweep.dir={sweep}")
    assert result.returncode == 0, result.stderr
    result = run_cli("-m", "protolm.cli.aggregate", str(sweep), "--also", "unprojected/test/acc")
    assert result.returncode == 0, result.stderr
    table = (sweep / "table.md").read_text()
    assert "| sst2 | tiny | linear | test/acc |" in table and "| sst2 | tiny | prototype | test/acc |" in table
    assert "(n=2)" in table and "prototype − linear" in table
    rows = (sweep / "table.csv").read_text().splitlines()
    assert rows[0].startswith("task.name,backbone.name,head.name,metric,mean,std,n,seeds") and len(rows) == 3
    # The reported mean is the mean of the two runs' results.json.
    runs = [json.loads(p.read_text()) for p in sweep.rglob("results.json")]
    linear = [r["metrics"]["test/acc"] for r in runs if r["head"] == "linear"]
    assert f"{sum(linear) / 2:.3f}" in [line for line in table.splitlines() if "| linear | test/acc |" in line][0]


def test_aggregate_statistics_and_cells(tmp_path):
    from protolm.cli.aggregate import aggregate, collect

    def write(i, head, seed, acc, cohesion=0.25):
        run = tmp_path / str(i)
        run.mkdir()
        config = {
            "task": {"name": "sst2"},
            "backbone": {"name": "minilm", "lr": 5e-5},
            "head": {"name": head},
            "loss": {"cohesion": cohesion},
            "seed": seed,
            "paths": {"output_dir": str(run)},
        }
        (run / "results.json").write_text(
            json.dumps(
                {"config": config, "seed": seed, "metrics": {"test/acc": acc}, "selection": {"metric": "val/acc"}}
            )
        )

    write(0, "prototype", 1, 0.80), write(1, "prototype", 2, 0.90), write(2, "linear", 1, 0.70)
    write(3, "prototype", 1, 0.50, cohesion=0.0)
    (tmp_path / "4").mkdir()
    (tmp_path / "4" / "error.txt").write_text("boom\n")
    runs, failures = collect([tmp_path])
    keys, rows = aggregate(runs)
    assert keys == ["task.name", "backbone.name", "head.name", "loss.cohesion"]  # seeds and paths are not cells
    cell = {(r["head.name"], r["loss.cohesion"]): r for r in rows}
    assert cell[("prototype", 0.25)]["main"]["mean"] == pytest.approx(0.85)
    assert cell[("prototype", 0.25)]["main"]["std"] == pytest.approx(0.0707107, rel=1e-4)
    # 95 % CI of a 2-seed mean: t(0.975, 1) = 12.706 standard errors of 0.05.
    assert cell[("prototype", 0.25)]["main"]["ci95"] == pytest.approx(12.7062 * 0.05, rel=1e-4)
    assert (
        cell[("prototype", 0.25)]["seeds"] == [1, 2] and cell[("linear", None)]["main"]["n"] == 1
    )  # it reads no cohesion
    assert failures == [{"run": str(tmp_path / "4"), "error": "boom"}]


@pytest.mark.slow
def test_optuna_study_runs_and_resumes_from_sqlite(tmp_path):
    args = ["hparams_search=optuna", *FAST, f"paths.log_dir={tmp_path}", "hydra.sweeper.n_trials=2"]
    for _ in range(2):
        result = run_cli("run.py", *args)
        assert result.returncode == 0, result.stderr
    import optuna

    study = optuna.load_study(
        study_name="protolm_sst2_tiny_prototype", storage=f"sqlite:///{tmp_path}/optuna/studies.db"
    )
    assert len(study.trials) == 4 and all(t.state.name == "COMPLETE" for t in study.trials)
    values = sorted(t.value for t in study.trials)
    trial_results = [
        json.loads(p.read_text())["metrics"]["val/acc"] for p in (tmp_path / "optuna").rglob("results.json")
    ]
    assert sorted(trial_results) == pytest.approx(values)  # optimised value = results.json metric


@pytest.mark.slow
def test_submitit_local_launcher_runs_each_job_in_its_own_process(tmp_path):
    result = run_cli("run.py", "-m", "hydra/launcher=local", *FAST, "seed=1,2", f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    pids = {json.loads(p.read_text())["seed"] for p in tmp_path.rglob("results.json")}
    assert pids == {1, 2}
    assert (tmp_path / ".submitit").is_dir()


@pytest.mark.no_data
def test_slurm_launcher_ties_resources_to_the_trainer(make_config):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=8", "trainer.num_nodes=2"],
            return_hydra_config=True,
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.gpus_per_node, launcher.tasks_per_node, launcher.nodes) == (8, 8, 2)
    assert cfg.trainer.strategy == "ddp"


def wandb_file(run: Path, expected: tuple[bytes, ...], wait_s: float = 60) -> tuple[Path, bytes]:
    """The offline run's .wandb file once it holds ``expected``: the W&B service process writes it
    and may still be flushing for a moment after ``finish()`` returns on a loaded machine."""
    deadline = time.monotonic() + wait_s
    while True:
        [offline] = list((run / "wandb").glob("offline-run-*/run-*.wandb")) or [None]
        data = offline.read_bytes() if offline else b""
        if all(e in data for e in expected) or time.monotonic() > deadline:
            return offline, data
        time.sleep(0.5)


def test_wandb_offline_logs_config_metrics_prototypes_and_resumes_the_same_run(make_config, tmp_path):
    from protolm.training.train import train

    overrides = [o for o in FAST if not o.startswith("logger")] + ["logger=wandb"]
    train(make_config(*overrides))
    run = tmp_path / "run"
    run_id = (run / "wandb_run_id").read_text().strip()
    expected = (b"k_fraction", b"final/test/acc", b"train/loss_epoch", b"sst2-tiny-prototype-s42")
    path, data = wandb_file(run, expected)
    assert path.name == f"run-{run_id}.wandb"
    for logged in expected:
        assert logged in data, logged
    assert list((run / "wandb").glob("offline-run-*/files/media/table/prototypes_*.table.json"))
    train(make_config(*overrides, "trainer.max_epochs=2", "ckpt_path=last", "overwrite=true"))  # extended on purpose
    resumed = sorted((run / "wandb").glob("offline-run-*"))
    assert len(resumed) == 2 and all(d.name.endswith(run_id) for d in resumed)  # the same W&B run, continued


def test_unreachable_wandb_falls_back_to_csv_without_hanging(tmp_path):
    overrides = [o for o in FAST if not o.startswith("logger")]
    result = run_cli(
        "run.py",
        *overrides,
        "logger=wandb",
        "logger.wandb.mode=online",
        "logger.wandb.init_timeout_s=3",
        f"hydra.run.dir={tmp_path}",
        timeout=300,
        env={"WANDB_BASE_URL": "http://127.0.0.1:9", "WANDB_API_KEY": "0" * 40},
    )
    assert result.returncode == 0, result.stderr
    assert "W&B could not start" in result.stdout + result.stderr
    assert (tmp_path / "csv" / "version_0" / "metrics.csv").exists() and (tmp_path / "results.json").exists()


@pytest.mark.slow
def test_ddp_two_processes_report_what_one_process_measures(tmp_path):
    """2-process CPU DDP (gloo): metrics synchronised across processes equal a single-process evaluation."""
    result = run_cli(
        "run.py",
        *FAST,
        "trainer.strategy=ddp_spawn",
        "trainer.devices=2",
        "data.max_eval_samples=40",
        "data.max_train_samples=64",
        f"hydra.run.dir={tmp_path}",
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    from lightning import Trainer

    from protolm.config import read_settings
    from protolm.serving.classifier import load
    from protolm.training.assemble import build_objective
    from protolm.training.module import ProtoLM

    loaded = load(results["shipped_checkpoint"])
    settings = read_settings(results["config"], check_trainer=False)
    module = ProtoLM(loaded.model, build_objective(settings, loaded.model.head), settings.optim)
    single = Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False)
    measured = single.test(module, datamodule=loaded.datamodule(), verbose=False)[0]
    assert results["splits"]["test"]["size"] == 40
    for key in ("test/acc", "test/f1_macro", "test/loss", "test/prototypes_used"):
        assert results["metrics"][key] == pytest.approx(measured[key], abs=1e-6), key


# The study's records live beside the results (experiments/conf), outside the user's config path.
STUDY = REPO / "experiments" / "conf"
EXPERIMENTS = sorted(p.stem for p in [*(CONF / "experiment").glob("*.yaml"), *(STUDY / "experiment").glob("*.yaml")])
# Study variants; _as_run is their shared base, not a variant of its own.
VARIANTS = sorted(p.stem for p in (STUDY / "variant").glob("*.yaml") if not p.stem.startswith("_"))


@pytest.mark.no_data
@pytest.mark.parametrize("name", VARIANTS)
def test_every_study_variant_composes_and_keeps_the_settings_it_ran_with(name, tmp_path):
    from protolm.config import read_settings

    # As run.py gets it: the logger's directory interpolates the run's Hydra output directory.
    cfg = compose_config(tmp_path / "run", ["experiment=study_demo", f"+variant={name}"])
    settings = read_settings(cfg, check_trainer=False)
    sweep = yaml.safe_load((STUDY / "experiment" / "study_demo.yaml").read_text())
    assert name in sweep["hydra"]["sweeper"]["params"]["+variant"].split(",")  # the study sweeps it
    if "_as_run" in (STUDY / "variant" / f"{name}.yaml").read_text():
        # Ran before the 2x encoder and the last-layer phase became defaults (the ll1 variant sets its own).
        assert settings.head.encoder_lr_scale == 1.0
        assert settings.project.last_layer_epochs == (1 if name == "proto_cosine_ll1" else 0)
        assert settings.project.last_layer_objective == "labels"
    if name.startswith("proto") or name in ("two_stage_cosine", "reference_code"):
        # Every prototype variant but the two that set their own ran with 10 per class (the default
        # until 25 was chosen); proto_ppc25 is today's defaults.
        expected = {"proto_ppc5": 5, "proto_ppc25": 25}.get(name, 10)
        assert settings.head.prototypes_per_class == expected


@pytest.mark.no_data
@pytest.mark.parametrize("scale", [None, "cpu"])
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes_into_a_valid_sweep(name, scale):
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    if scale and not name.startswith("ablation_"):
        pytest.skip("only the ablations come at two scales")
    overrides = [f"experiment={name}"] + ([f"scale={scale}"] if scale else [])
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    # The sweeper resolves its directory before any job's HydraConfig exists: so must this test.
    HydraConfig.instance().cfg = None
    assert f"experiments/{name}/" in str(cfg.hydra.sweep.dir) or name in ("demo", "reference_code")
    params = cfg.hydra.sweeper.params or {}
    for task in str(params.get("task", "")).split(","):
        assert not task or task in TASKS
    for backbone in str(params.get("backbone", "")).split(","):
        assert not backbone or backbone in BACKBONES
    if scale == "cpu":  # the CPU scale of an ablation: what the mini_ablation_* experiments were
        assert cfg.backbone.name == "minilm" and cfg.trainer.accelerator == "cpu" and params.task == "sst2"
        assert cfg.data.max_train_samples == 1000 and params.seed == "1,2"
    elif name.startswith("ablation_"):
        assert cfg.backbone.name == "roberta-large" and cfg.head.prototypes_per_class == 50
    if "loss.k_fraction" in params:  # every value a different K, or the sweep repeats a cell
        from protolm.config import LossConfig

        fractions = str(params["loss.k_fraction"]).split(",")
        ks = [LossConfig(k_fraction=float(f)).k_for(cfg.head.prototypes_per_class) for f in fractions]
        assert len(set(ks)) == len(ks), dict(zip(fractions, ks))
    if name == "main_table":
        assert set(params.task.split(",")) == {
            "sst2",
            "sst5",
            "imdb",
            "qnli",
            "mnli",
            "rte",
            "mrpc",
            "wnli",
            "pubmedqa",
            "biosses",
        }
        assert {"bert-large-uncased", "roberta-large", "deberta-v3-large"} <= set(params.backbone.split(","))
        assert set(params.head.split(",")) == {"prototype", "linear"}


@pytest.mark.no_data
def test_wandb_sweep_file_names_real_keys():
    sweep = yaml.safe_load((REPO / "experiments" / "wandb_sweep.yml").read_text())
    assert sweep["program"] == "run.py" and "${args_no_hyphens}" in sweep["command"]
    from hydra import compose, initialize_config_dir

    overrides = [
        f"{key}={spec['values'][0] if 'values' in spec else spec['min']}" for key, spec in sweep["parameters"].items()
    ]
    with initialize_config_dir(str(CONF), version_base="1.3"):
        compose("config", overrides=overrides)  # raises if a key does not exist


def test_aggregate_compares_every_prototype_variant_with_its_linear_baseline():
    """Prototype cells that differ in prototype-only keys each get a row against the same linear cell."""
    from protolm.cli.aggregate import aggregate, head_comparison

    def record(head, seed, acc, similarity=None, cohesion=0.25):
        config = {
            "task": {"name": "sst2"},
            "backbone": {"name": "minilm"},
            "head": {"name": head, "similarity": similarity},
            "loss": {"cohesion": cohesion},
        }
        return {"config": config, "seed": seed, "metrics": {"test/acc": acc}, "selection": {"metric": "val/acc"}}

    runs = [record("linear", s, 0.80) for s in (1, 2)]
    runs += [record("prototype", s, 0.70, "inv_l2") for s in (1, 2)]
    runs += [record("prototype", s, 0.78, "cosine") for s in (1, 2)]
    runs += [record("prototype", s, 0.79, "inv_l2", cohesion=0.0) for s in (1, 2)]
    keys, rows = aggregate(runs)
    table = head_comparison(keys, rows)
    lines = [line for line in table.splitlines() if line.startswith("| sst2")]
    assert len(lines) == 3, table  # three prototype variants, none dropped
    assert sum("-0.100" in line for line in lines) == 1 and sum("-0.020" in line for line in lines) == 1
    assert sum("-0.010" in line for line in lines) == 1 and "similarity=cosine" in table


@pytest.mark.no_data
def test_aggregate_puts_the_selection_split_beside_the_reported_one():
    """Choices are made on val/*: every cell shows it, and the head comparison its difference."""
    from protolm.cli.aggregate import aggregate, head_comparison, markdown

    def record(head, seed, test, val):
        config = {"task": {"name": "sst2"}, "backbone": {"name": "minilm"}, "head": {"name": head}}
        metrics = {"test/acc": test, "val/acc": val}
        return {"config": config, "seed": seed, "metrics": metrics, "selection": {"metric": "val/acc"}}

    runs = [record("linear", s, 0.80, 0.84) for s in (1, 2)] + [record("prototype", s, 0.82, 0.81) for s in (1, 2)]
    keys, rows = aggregate(runs)
    assert {r["head.name"]: r["selection"]["mean"] for r in rows} == pytest.approx({"linear": 0.84, "prototype": 0.81})
    assert "selection split (val)" in markdown(keys, rows)
    [line] = [line for line in head_comparison(keys, rows).splitlines() if line.startswith("| sst2")]
    assert line.endswith("| +0.020 | -0.030 |")  # better on the reported split, worse on the selection split


@pytest.mark.no_data
def test_aggregate_keeps_linear_runs_together_across_settings_the_linear_head_never_reads():
    """Linear runs written under different prototype-phase defaults (project.*) are one cell; the
    prototype runs that differ in it stay two."""
    from protolm.cli.aggregate import aggregate

    def record(head, seed, acc, last_layer_epochs):
        config = {
            "task": {"name": "qnli"},
            "backbone": {"name": "minilm"},
            "head": {"name": head},
            "project": {"last_layer_epochs": last_layer_epochs},
        }
        return {"config": config, "seed": seed, "metrics": {"test/acc": acc}, "selection": {"metric": "val/acc"}}

    runs = [record("linear", 1, 0.64, 0), record("linear", 2, 0.66, 1), record("linear", 3, 0.65, 1)]
    runs += [record("prototype", s, 0.6, e) for s in (1, 2) for e in (0, 1)]
    keys, rows = aggregate(runs)
    linear = [r for r in rows if r["head.name"] == "linear"]
    assert len(linear) == 1 and linear[0]["main"]["n"] == 3 and linear[0]["project.last_layer_epochs"] is None
    assert len([r for r in rows if r["head.name"] == "prototype"]) == 2


@pytest.mark.no_data
def test_aggregate_does_not_split_runs_by_keys_added_after_some_of_them():
    """Runs made before a key existed (no data.cache in their config) share a cell with later runs
    that record its default; a key the later runs set to different values still splits them."""
    from protolm.cli.aggregate import aggregate

    def record(seed, extra):
        config = {"task": {"name": "sst2"}, "backbone": {"name": "minilm"}, "head": {"name": "prototype"}}
        config["data"] = {"max_length": 64, **extra}
        return {"config": config, "seed": seed, "metrics": {"test/acc": 0.8}, "selection": {"metric": "val/acc"}}

    old = [record(1, {}), record(2, {})]
    keys, rows = aggregate(old + [record(3, {"cache": True})])
    assert "data.cache" not in keys and len(rows) == 1 and rows[0]["main"]["n"] == 3
    keys, rows = aggregate(old + [record(3, {"cache": True}), record(4, {"cache": False})])
    assert "data.cache" in keys and len(rows) == 3  # the old runs, cache on, cache off
