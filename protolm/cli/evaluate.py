"""protolm evaluate: faithfulness of a model's explanations (faithfulness.json, faithfulness.md)."""

from __future__ import annotations

import dataclasses
import logging

from rich.console import Console

from protolm.cli.tool import datamodule_for, open_prototype_model, output_dir
from protolm.config.tools import EvaluateConfig
from protolm.explanations.prototype_faithfulness import prototype_level
from protolm.explanations.report import faithfulness_table
from protolm.explanations.token_faithfulness import token_level
from protolm.utils.errors import ConfigError
from protolm.utils.files import write_json

log = logging.getLogger(__name__)


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


def _measure(cfg: EvaluateConfig, clf, datamodule) -> dict:
    """faithfulness.json: the settings, the prototype-level and the token-level scores."""
    f, net, split = cfg.faithfulness, clf.model, datamodule.role_split(cfg.split)
    ks = _prototype_ks(f.prototype_ks, net.head.num_prototypes)
    rationales = (*dict.fromkeys(f.rationales), "random")
    loader = datamodule.dataloader(cfg.split, shard=False)
    tokens = token_level(
        net, clf.tokenizer, split, list(f.token_bins), f.token_removal, f.target, f.seed, cfg.batch_size,
        clf.max_length, rationales,
    )  # fmt: skip
    return {
        "checkpoint": str(cfg.model),
        "task": net.config.task,
        "split": split.name,
        "split_origin": split.origin,
        "examples": len(split),
        "settings": dataclasses.asdict(f) | {"prototype_ks": ks, "max_length": clf.max_length},
        "prototype_level": prototype_level(net, loader, ks, f.random_draws, f.seed, f.target),
        "token_level": tokens,
    }


def evaluate_command(cfg: EvaluateConfig) -> dict:
    clf = open_prototype_model(cfg, "prototype faithfulness")
    if clf.regression:
        raise ConfigError("faithfulness is defined on class probabilities: task is a regression")
    out = output_dir(cfg, ("faithfulness.json", "faithfulness.md"))
    result = _measure(cfg, clf, datamodule_for(clf, cfg))
    write_json(out / "faithfulness.json", result)
    table = faithfulness_table(result)
    (out / "faithfulness.md").write_text(table + "\n")
    print(table)
    Console().print(f"wrote {out / 'faithfulness.json'} and {out / 'faithfulness.md'}")
    return {"output_dir": str(out), "result": result}
