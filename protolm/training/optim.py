"""Optimisation: AdamW parameter groups (two learning rates, decay where it belongs) and the LR schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from protolm.config import OptimConfig

# Normalisation weights and biases are not decayed (the usual transformer fine-tuning recipe).
NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "LayerNorm.bias", "norm.weight")


def parameter_groups(model: nn.Module, optim: OptimConfig) -> list[dict]:
    """Encoder and head parameters, each with and without weight decay, at their own learning rate."""
    groups: dict[str, list] = {"backbone_decay": [], "backbone_no_decay": [], "head_decay": [], "head_no_decay": []}
    encoder = {id(p) for p in model.encoder.parameters()}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        part = "backbone" if id(param) in encoder else "head"
        # Prototypes live in embedding space: weight decay would pull them to the origin.
        decay = not (name.endswith(NO_DECAY) or name.endswith("prototypes") or param.ndim < 2)
        groups[f"{part}_{'decay' if decay else 'no_decay'}"].append(param)
    lrs = {"backbone": optim.backbone_lr, "head": optim.head_lr}
    return [
        {
            "params": params,
            "name": key,
            "lr": lrs[key.split("_")[0]],
            "weight_decay": optim.weight_decay if key.endswith("_decay") and not key.endswith("no_decay") else 0.0,
        }
        for key, params in groups.items()
        if params
    ]


def optimizer_and_schedule(model: nn.Module, optim: OptimConfig, total_steps: int) -> dict:
    """What ``configure_optimizers`` returns: AdamW and a per-step warm-up + decay schedule."""
    optimizer = torch.optim.AdamW(
        parameter_groups(model, optim), eps=optim.adam_eps, betas=tuple(optim.betas), **implementation(optim)
    )
    total = max(1, int(total_steps))
    schedule = lr_schedule(optim.scheduler, int(optim.warmup_ratio * total), total)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def implementation(optim: OptimConfig) -> dict:
    """AdamW's keyword for ``optim.implementation`` (the update is the same; its speed is not)."""
    keywords = {"fused": {"fused": True}, "foreach": {"foreach": True}, "for_loop": {"foreach": False}}
    return keywords[optim.implementation]


def last_layer_optimizer(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    """ProtoPNet's last-layer phase: only the P -> C weights learn; prototypes and encoder stay fixed
    (``protolm.prototypes.stages.train_last_layer`` freezes them before the phase's Trainer starts)."""
    return torch.optim.AdamW(model.head.last_layer.parameters(), lr=lr, weight_decay=0.0)


def lr_schedule(kind: str, warmup: int, total: int):
    """Multiplier of the base learning rate at a step: linear warm-up, then the chosen decay."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total - warmup)
        if kind == "linear":
            return max(0.0, 1.0 - progress)
        if kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return 1.0  # constant

    return factor
