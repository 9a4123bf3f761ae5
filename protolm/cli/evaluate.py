"""evaluate.py: faithfulness of a checkpoint's explanations (faithfulness.json, faithfulness.md)."""

from __future__ import annotations

import logging

from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from protolm.cli.tool import datamodule_for, open_checkpoint, output_dir
from protolm.errors import ConfigError
from protolm.faithfulness import prototype_level, token_level
from protolm.pipeline import write_json
from protolm.render import faithfulness_table

log = logging.getLogger(__name__)


def _check(cfg: DictConfig, model) -> None:
    if not model.is_prototype:
        raise ConfigError(f"checkpoint {cfg.ckpt_path} has a linear head: prototype faithfulness needs head=prototype")
    if model.regression:
        raise ConfigError("faithfulness is defined on class probabilities: task is a regression")


def _prototype_ks(requested, num_prototypes: int) -> list[int]:
    """The requested k below P, sorted. k = P is left out: removing every prototype leaves no
    evidence for any class and keeping every one changes nothing, so it measures no explanation."""
    ks = sorted({int(k) for k in requested if int(k) < num_prototypes})
    if not ks:
        raise ConfigError(
            f"faithfulness.prototype_ks={list(requested)}: every k is at least the model's {num_prototypes} "
            "prototypes; give some k below that"
        )
    left_out = sorted({int(k) for k in requested} - set(ks))
    if left_out:
        log.warning("faithfulness.prototype_ks: left out %s (not below the %d prototypes)", left_out, num_prototypes)
    return ks


def _measure(cfg: DictConfig, loaded, dm) -> dict:
    """faithfulness.json: the settings, the prototype-level and the token-level scores."""
    f, model, split = cfg.faithfulness, loaded.model, dm.role_split(cfg.split)
    max_length = loaded.config["data"]["max_length"]
    ks = _prototype_ks(f.prototype_ks, model.head.num_prototypes)
    rationales = ("attention", "contribution", "random") + (("integrated_gradients",) if f.integrated_gradients else ())
    loader = dm.dataloader(cfg.split, shard=False)
    return {
        "checkpoint": str(cfg.ckpt_path),
        "task": loaded.config["task"]["name"],
        "split": split.name,
        "split_origin": split.origin,
        "examples": len(split),
        "settings": OmegaConf.to_container(f, resolve=True) | {"prototype_ks": ks, "max_length": max_length},
        "prototype_level": prototype_level(model, loader, ks, f.random_draws, f.seed, f.target),
        "token_level": token_level(
            model,
            loaded.tokenizer,
            split,
            list(f.token_bins),
            f.token_removal,
            f.target,
            f.seed,
            cfg.batch_size,
            max_length,
            rationales,
        ),
    }


def evaluate_command(cfg: DictConfig) -> dict:
    loaded = open_checkpoint(cfg)
    _check(cfg, loaded.model)
    out = output_dir(cfg, ("faithfulness.json", "faithfulness.md"))
    result = _measure(cfg, loaded, datamodule_for(loaded, cfg))
    write_json(out / "faithfulness.json", result)
    table = faithfulness_table(result)
    (out / "faithfulness.md").write_text(table + "\n")
    print(table)
    Console().print(f"wrote {out / 'faithfulness.json'} and {out / 'faithfulness.md'}")
    return {"output_dir": str(out), "result": result}
