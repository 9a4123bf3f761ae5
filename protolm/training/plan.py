"""``python run.py ... plan=true``: the accelerator memory a run would need, estimated, before it runs.

The parameters are counted exactly: the configured backbone and head are built on PyTorch's
``meta`` device (shapes, no memory, no weights read: only the model's config.json), with LoRA
applied as the run would apply it. The rest is arithmetic, per way of training (full
fine-tuning, LoRA, QLoRA), at the configured precision, batch size and ``data.max_length``:

* weights: every parameter at its storage width (4 bytes in fp32 and under mixed precision,
  where the master weights stay fp32; 2 in ``bf16-true``/``16-true``; QLoRA: 0.5 per frozen weight
  plus its quantization constants, about 0.53 in all, and the adapters in full width);
* gradients: one per trainable parameter, at its width;
* optimizer state: AdamW's two moments per trainable parameter, at its width;
* activations kept for the backward pass: per transformer layer about 34 bytes per token per
  hidden unit in 16 bits, twice that in fp32 (Korthikanti et al., 2022, for a layer without the
  attention matrices that fused attention never stores); with gradient checkpointing, each
  layer's input (2 bytes per token per unit) plus one layer recomputed at a time.

An estimate: allocator fragmentation, CUDA context (~0.5 GB) and temporary buffers come on top.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager

from protolm.config import Settings

GB = 1024**3
ACTIVATION_BYTES_PER_TOKEN_UNIT = 34  # per layer, 16-bit activations (fused attention)
QUANTIZED_BYTES_PER_WEIGHT = 0.53  # NF4 + double-quantized constants


@contextmanager
def on_meta_device():
    import torch

    with torch.device("meta"):
        yield


def parameter_counts(settings: Settings, config, peft: str) -> dict:
    """{total, trainable, frozen} of the run's model (encoder of ``config``) with ``backbone.peft=peft``,
    built on the meta device."""
    from torch import nn

    from protolm.modeling import backbone as backbones
    from protolm.training.assemble import configured_head

    with on_meta_device():
        encoder = backbones.encoder_from_config(config.to_dict())
        if peft == "lora":
            encoder = backbones.with_lora(encoder, dataclasses.replace(settings.backbone, quantization="none"))
        head = configured_head(settings, config.hidden_size)
    counts = backbones.parameter_counts(nn.ModuleList([encoder, head]))
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", 0)
    return {**counts, "frozen": counts["total"] - counts["trainable"], "layers": layers, "hidden": config.hidden_size}


def estimate(settings: Settings, way: str, counts: dict) -> dict:
    """Bytes per component for one way of training: full, lora or qlora."""
    precision = str(settings.trainer.get("precision", "32-true"))
    width = 2 if precision in ("bf16-true", "16-true", "bf16", "16") else 4
    act_width = 2 if ("16" in precision) else 4
    trainable, frozen = counts["trainable"], counts["frozen"]
    if way == "qlora":
        weights = frozen * QUANTIZED_BYTES_PER_WEIGHT + trainable * 4
        width = 4  # the adapters train in full width
    else:
        weights = (trainable + frozen) * width
    tokens = settings.data.batch_size * settings.data.max_length
    per_layer = tokens * counts["hidden"] * ACTIVATION_BYTES_PER_TOKEN_UNIT * act_width / 2
    if settings.backbone.gradient_checkpointing:
        activations = counts["layers"] * tokens * counts["hidden"] * act_width + per_layer
    else:
        activations = counts["layers"] * per_layer
    parts = {
        "weights": weights,
        "gradients": trainable * width,
        "optimizer": 2 * trainable * width,
        "activations": activations,
    }
    return {**parts, "total": sum(parts.values()), "trainable": trainable, "parameters": trainable + frozen}


def plan(settings: Settings) -> list[dict]:
    """Rows of the estimate: full fine-tuning, LoRA and QLoRA for the configured run."""
    from protolm.modeling.backbone import load_config

    config = load_config(settings.backbone, settings.data.hub_timeout_s)
    full, lora = parameter_counts(settings, config, "none"), parameter_counts(settings, config, "lora")
    return [
        {"way": "full fine-tuning", **estimate(settings, "full", full)},
        {"way": "LoRA", **estimate(settings, "lora", lora)},
        {"way": "QLoRA (4-bit)", **estimate(settings, "qlora", lora)},
    ]


COLUMNS = (
    ("weights", "weights"),
    ("gradients", "grads"),
    ("optimizer", "AdamW"),
    ("activations", "activ."),
    ("total", "total"),
)


def report(settings: Settings) -> str:
    """The plan as printed by ``plan=true``, the configured way marked."""
    configured = {"none": "full fine-tuning", "lora": "LoRA"}[settings.backbone.peft]
    if settings.backbone.quantization != "none":
        configured = "QLoRA (4-bit)"
    data, precision = settings.data, settings.trainer.get("precision", "32-true")
    checkpointing = "on" if settings.backbone.gradient_checkpointing else "off"
    lines = [
        f"memory plan (an estimate) for {settings.backbone.name} + {settings.head.name} head: batch "
        f"{data.batch_size} x {data.max_length} tokens, precision {precision}, gradient checkpointing {checkpointing}",
        f"{'':17} {'parameters':>14} {'trainable':>13}" + "".join(f" {name:>8}" for _, name in COLUMNS),
    ]
    for row in plan(settings):
        sizes = "".join(f" {row[key] / GB:>8.3f}" for key, _ in COLUMNS)
        mark = "  <- this run" if row["way"] == configured else ""
        lines.append(f"{row['way']:17} {row['parameters']:>14,} {row['trainable']:>13,}{sizes}{mark}")
    lines.append("sizes in GB of accelerator memory; add ~0.5 GB for the CUDA context and allocator slack")
    return "\n".join(lines)
