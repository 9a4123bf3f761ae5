"""The bodies of the checkpoint tools: explain.py, project.py, health.py, evaluate.py.

Each reads a protolm checkpoint (which carries its training config), writes into its own fresh
output directory, and prints what it wrote.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from protolm.checkpoint import load, save_model_checkpoint
from protolm.data.datamodule import TaskDataModule
from protolm.data.task import TaskSpec
from protolm.errors import ConfigError, DataError

log = logging.getLogger(__name__)
console = Console()


def _load(cfg: DictConfig):
    return load(cfg.ckpt_path, cfg.get("device", "cpu"))


def datamodule_for(loaded, cfg: DictConfig) -> TaskDataModule:
    """The training run's data module, with the tool's data.* overrides applied."""
    data = dict(loaded.config["data"])
    for key, value in (cfg.get("data") or {}).items():
        if value is not None:
            data[key] = value
    task = TaskSpec.from_config(loaded.config["task"])
    return TaskDataModule(task, loaded.tokenizer, seed=loaded.config.get("seed", 0), **data)


def _output_dir(cfg: DictConfig, writes: tuple[str, ...]) -> Path:
    """The tool's output directory; never one that already holds its outputs unless overwrite=true."""
    out = Path(cfg.output_dir)
    taken = [name for name in writes if (out / name).exists()]
    if taken and not cfg.get("overwrite", False):
        raise ConfigError(
            f"{out} already holds {', '.join(taken)}; choose another hydra.run.dir or pass overwrite=true"
        )
    out.mkdir(parents=True, exist_ok=True)
    return out


def _write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path


# ------------------------------------------------------------------------------- explain
def _inputs(cfg: DictConfig, loaded) -> tuple[list[str], list[str] | None]:
    pair_task = bool(loaded.model.task_info.get("pair"))
    given = [k for k in ("text", "input_file", "split") if cfg.get(k) is not None]
    if len(given) != 1:
        raise ConfigError('give exactly one of text="...", input_file=<path> or split=<train|val|test|split name>')
    if cfg.text is not None:
        if pair_task and cfg.text_pair is None:
            raise ConfigError(f'task {loaded.model.task_info["name"]} classifies text pairs: give text_pair="..." too')
        return [str(cfg.text)], ([str(cfg.text_pair)] if pair_task else None)
    if cfg.input_file is not None:
        path = Path(cfg.input_file).expanduser()
        if not path.is_file():
            raise DataError(f"input_file={path}: no such file")
        try:
            lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except UnicodeDecodeError as err:
            raise DataError(f"{path}: not valid UTF-8 (byte {err.start})") from None
        lines = lines[: cfg.max_inputs]
        if not pair_task:
            return lines, None
        parts = [line.split("\t", 1) for line in lines]
        for number, p in enumerate(parts, start=1):
            if len(p) != 2:
                raise DataError(f"{path}: line {number}: pair task needs 'text<TAB>text_pair'")
        return [p[0] for p in parts], [p[1] for p in parts]
    dm = datamodule_for(loaded, cfg)
    split = dm.role_split(cfg.split)
    n = min(cfg.max_inputs, len(split))
    return split.texts[:n], (split.pairs[:n] if split.pairs is not None else None)


def explain_command(cfg: DictConfig) -> dict:
    from protolm.explain import explain, require_projection
    from protolm.render import print_explanations, render_html

    loaded = _load(cfg)
    require_projection(loaded.model, cfg.ckpt_path)
    texts, pairs = _inputs(cfg, loaded)
    max_length = cfg.max_length or loaded.config["data"]["max_length"]
    explanations = explain(
        loaded.model, loaded.tokenizer, texts, pairs, top_k=cfg.top_k, nearest=cfg.nearest, max_length=max_length
    )
    out = _output_dir(cfg, ("explanations.jsonl", "explanations.html"))
    with open(out / "explanations.jsonl", "w") as f:
        for e in explanations:
            f.write(json.dumps(e) + "\n")
    meta = {
        "checkpoint": cfg.ckpt_path,
        "task": loaded.config["task"]["name"],
        "backbone": loaded.config["backbone"]["name"],
        "prototypes": loaded.model.head.num_prototypes,
        "similarity": loaded.config["head"]["similarity"],
        "projection": loaded.model.projection["mode"],
    }
    (out / "explanations.html").write_text(render_html(explanations, "protolm explanations", meta))
    print_explanations(explanations, console)
    console.print(f"wrote {out / 'explanations.jsonl'} and {out / 'explanations.html'}")
    return {"output_dir": str(out), "explanations": explanations}


# ------------------------------------------------------------------------------- project
def project_command(cfg: DictConfig) -> dict:
    from protolm.projection import project

    loaded = _load(cfg)
    if not loaded.model.is_prototype:
        raise ConfigError(f"checkpoint {cfg.ckpt_path} has a linear head: nothing to project")
    dm = datamodule_for(loaded, cfg)
    out = _output_dir(cfg, ("projected.ckpt", "prototypes.json"))
    record = project(loaded.model, dm, cfg.mode, cfg.top_k)
    save_model_checkpoint(loaded.model, out / "projected.ckpt")
    _write_json(out / "prototypes.json", record)
    console.print(
        f"projected {loaded.model.head.num_prototypes} prototypes ({cfg.mode}) onto {record['size']} "
        f"examples of {record['split']}; {record['shared_examples']} share an example"
    )
    console.print(f"wrote {out / 'projected.ckpt'} and {out / 'prototypes.json'}")
    return {"output_dir": str(out), "checkpoint": str(out / "projected.ckpt")}


# -------------------------------------------------------------------------------- health
def print_health(report: dict) -> None:
    table = Table(title="prototype health", header_style="bold")
    for column in ("id", "class", "nearest", "top contributor", "purity", "dead", "duplicates"):
        table.add_column(column)
    for r in report["prototypes"]:
        dup = sorted(set(r["shares_nearest_example_with"]) | set(r["near_identical_to"]))
        table.add_row(
            str(r["prototype_id"]),
            str(r["class"]),
            str(r["nearest_count"]),
            str(r["top_contributor_count"]),
            "-" if r["purity"] is None else f"{r['purity']:.2f}",
            "yes" if r["dead"] else "",
            ",".join(map(str, dup)),
        )
    console.print(table)
    console.print(report["summary"])


def health_report(model, dm, cfg, out: Path, write: bool = True) -> dict:
    """health.json and prototypes_pca.png in ``out`` (when ``write``); prunes (and reports again) when asked."""
    from protolm.health import plot_prototypes, prototype_health, prune

    report = prototype_health(
        model, dm, k=cfg.health.k, usage_role=cfg.health.usage_split, duplicate_cosine=cfg.health.duplicate_cosine
    )
    if cfg.prune.enabled:
        if cfg.prune.k != cfg.health.k:
            report = prototype_health(
                model,
                dm,
                k=cfg.prune.k,
                usage_role=cfg.health.usage_split,
                duplicate_cosine=cfg.health.duplicate_cosine,
            )
        report["pruned"] = prune(model, report, cfg.prune.min_purity)
        report["after_pruning"] = prototype_health(
            model, dm, k=cfg.health.k, usage_role=cfg.health.usage_split, duplicate_cosine=cfg.health.duplicate_cosine
        )["summary"]
    if write:
        _write_json(out / "health.json", report)
        if cfg.health.plot:
            plot_prototypes(model, dm, out / "prototypes_pca.png", max_examples=cfg.health.plot_max_examples)
    return report


def health_command(cfg: DictConfig) -> dict:
    loaded = _load(cfg)
    if not loaded.model.is_prototype:
        raise ConfigError(f"checkpoint {cfg.ckpt_path} has a linear head: no prototypes to check")
    dm = datamodule_for(loaded, cfg)
    out = _output_dir(cfg, ("health.json", "prototypes_pca.png", "pruned.ckpt"))
    report = health_report(loaded.model, dm, cfg, out)
    print_health(report)
    written = [out / "health.json"] + ([out / "prototypes_pca.png"] if cfg.health.plot else [])
    if cfg.prune.enabled:
        save_model_checkpoint(loaded.model, out / "pruned.ckpt")
        written.append(out / "pruned.ckpt")
        console.print(f"pruned {len(report['pruned']['removed'])} prototypes: {report['pruned']['remaining']} remain")
    console.print("wrote " + ", ".join(map(str, written)))
    return {"output_dir": str(out), "report": report}


# ------------------------------------------------------------------------------ evaluate
def evaluate_command(cfg: DictConfig) -> dict:
    from protolm.faithfulness import TARGETS, prototype_level, token_level

    loaded = _load(cfg)
    model = loaded.model
    if not model.is_prototype:
        raise ConfigError(f"checkpoint {cfg.ckpt_path} has a linear head: prototype faithfulness needs head=prototype")
    if model.regression:
        raise ConfigError("faithfulness is defined on class probabilities: task is a regression")
    f = cfg.faithfulness
    if f.target not in TARGETS:
        raise ConfigError(f"faithfulness.target={f.target!r} is not one of {', '.join(TARGETS)}")
    out = _output_dir(cfg, ("faithfulness.json", "faithfulness.md"))
    dm = datamodule_for(loaded, cfg)
    split = dm.role_split(cfg.split)
    ks = [k for k in f.prototype_ks if k < model.head.num_prototypes] + [model.head.num_prototypes]
    rationales = ("attention", "random") + (("integrated_gradients",) if f.integrated_gradients else ())
    result = {
        "checkpoint": str(cfg.ckpt_path),
        "task": loaded.config["task"]["name"],
        "split": split.name,
        "split_origin": split.origin,
        "examples": len(split),
        "settings": OmegaConf.to_container(f, resolve=True)
        | {"prototype_ks": ks, "max_length": loaded.config["data"]["max_length"]},
        "prototype_level": prototype_level(
            model, dm.dataloader(cfg.split, shard=False), ks, f.random_draws, f.seed, f.target
        ),
        "token_level": token_level(
            model,
            loaded.tokenizer,
            split,
            list(f.token_bins),
            f.token_removal,
            f.target,
            f.seed,
            cfg.batch_size,
            loaded.config["data"]["max_length"],
            rationales,
        ),
    }
    _write_json(out / "faithfulness.json", result)
    table = faithfulness_table(result)
    (out / "faithfulness.md").write_text(table + "\n")
    print(table)
    console.print(f"wrote {out / 'faithfulness.json'} and {out / 'faithfulness.md'}")
    return {"output_dir": str(out), "result": result}


def faithfulness_table(result: dict) -> str:
    lines = [
        f"# Faithfulness: {result['task']} / {result['split']} ({result['examples']} examples, target: "
        f"{result['settings']['target']} class)",
        "",
        "## Prototype level (drop in the target class probability)",
        "",
        "| k | comprehensiveness | random k | sufficiency | random k |",
        "|---|---|---|---|---|",
    ]
    for k, v in result["prototype_level"]["by_k"].items():
        lines.append(
            f"| {k} | {v['comprehensiveness']:.4f} | {v['random_comprehensiveness']:.4f} | "
            f"{v['sufficiency']:.4f} | {v['random_sufficiency']:.4f} |"
        )
    bins = result["settings"]["token_bins"]
    lines += [
        "",
        f"## Token level (ERASER, tokens {result['settings']['token_removal']}d)",
        "",
        "| rationale | "
        + " | ".join(f"comp {q:.0%}" for q in bins)
        + " | AOPC comp | "
        + " | ".join(f"suff {q:.0%}" for q in bins)
        + " | AOPC suff |",
        "|---|" + "---|" * (2 * len(bins) + 2),
    ]
    for name, by_bin in result["token_level"]["by_rationale"].items():
        comp = " | ".join(f"{by_bin[str(q)]['comprehensiveness']:.4f}" for q in bins)
        suff = " | ".join(f"{by_bin[str(q)]['sufficiency']:.4f}" for q in bins)
        lines.append(
            f"| {name} | {comp} | {by_bin['aopc']['comprehensiveness']:.4f} | {suff} | {by_bin['aopc']['sufficiency']:.4f} |"
        )
    return "\n".join(lines)
