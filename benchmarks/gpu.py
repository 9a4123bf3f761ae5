"""Benchmark 4 (for a GPU machine): bf16 training throughput and model FLOP utilisation.

    python benchmarks/gpu.py                       # roberta-large architecture, bf16, batch 32 x 128
    python benchmarks/gpu.py --arch llama-1b --lora --batch-size 16 --length 256   # a decoder with LoRA
    python benchmarks/gpu.py --smoke               # tiny sizes on any device (checks the script runs)

Weights do not change speed, so the architecture is built from its config with random weights
(no hub needed); token ids come from SST-2 sentences. Reports examples/s and tokens/s for the
prototype head and the linear head, and MFU = achieved training FLOP/s over the device's peak
(--peak-tflops, default 989 for an H100/H200 SXM in dense bf16), counting 6 x parameters FLOPs
per token plus attention (12 x layers x hidden x sequence length per token); with ``--lora`` the
frozen weights get no weight gradients, so 4 x parameters (forward 2, input gradients 2).
``--arch llama-1b`` is Llama 3.2 1B's architecture (16 layers, hidden 2048, grouped-query attention).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import table, write  # noqa: E402


def encoder(arch: str, smoke: bool):
    """The architecture with random weights, and its config."""
    from transformers import LlamaConfig, LlamaModel, RobertaConfig, RobertaModel

    if arch == "llama-1b":
        shape = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)
        if not smoke:
            shape = dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32)
        cfg = LlamaConfig(**shape, num_key_value_heads=max(1, shape["num_attention_heads"] // 4), vocab_size=128256)
        return LlamaModel(cfg), cfg
    if smoke:
        cfg = RobertaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)
    else:  # roberta-large
        cfg = RobertaConfig(
            hidden_size=1024,
            num_hidden_layers=24,
            num_attention_heads=16,
            intermediate_size=4096,
            max_position_embeddings=514,
            type_vocab_size=1,
            vocab_size=50265,
        )
    model = RobertaModel(cfg, add_pooling_layer=False)
    return model, cfg


def batches(batch_size: int, length: int, n: int):
    from omegaconf import OmegaConf

    from protolm.config import BackboneConfig, default_data_dir, section
    from protolm.modeling.backbone import load_tokenizer

    minilm = Path(__file__).resolve().parents[1] / "conf" / "backbone" / "minilm.yaml"
    tok = load_tokenizer(section(OmegaConf.load(minilm), BackboneConfig))
    lines = (Path(default_data_dir()) / "sst2" / "train.tsv").read_text().splitlines()[1 : 1 + batch_size * n]
    texts = [line.split("\t")[0] for line in lines]
    out = []
    for i in range(n):
        enc = tok(
            texts[i * batch_size : (i + 1) * batch_size],
            padding="max_length",
            truncation=True,
            max_length=length,
            return_tensors="pt",
        )
        out.append((enc["input_ids"], enc["attention_mask"]))
    return out


def run(head_name: str, args, device) -> dict:
    from protolm.modeling.head import LinearHead, PrototypeHead
    from protolm.modeling.losses import cohesion_separation

    model, cfg = encoder(args.arch, args.smoke)
    if args.lora:
        from protolm.config import BackboneConfig
        from protolm.modeling.backbone import with_lora

        model = with_lora(model, BackboneConfig(name=args.arch, pretrained=args.arch, peft="lora"))
    decoder = args.arch == "llama-1b"
    head = (
        PrototypeHead(cfg.hidden_size, args.prototypes, 2)
        if head_name == "prototype"
        else LinearHead(cfg.hidden_size, 2, pooling="last" if decoder else "cls")
    )
    model.to(device).train()
    head.to(device).train()
    params = list(model.parameters()) + list(head.parameters())
    trained = [p for p in params if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=1e-5, fused=device.type == "cuda")
    data = batches(args.batch_size, args.length, args.steps + args.warmup)
    dtype = torch.bfloat16 if device.type == "cuda" or args.smoke else torch.float32
    if args.compile:
        model = torch.compile(model)

    def step(ids, mask):
        ids, mask = ids.to(device, non_blocking=True), mask.to(device, non_blocking=True)
        labels = (ids[:, 1] % 2).long()
        with torch.autocast(device.type, dtype=dtype):
            out = head(model(input_ids=ids, attention_mask=mask).last_hidden_state, mask)
            loss = torch.nn.functional.cross_entropy(out["logits"].float(), labels)
            if head_name == "prototype":
                coh, sep = cohesion_separation(
                    out["similarities"], labels, head.prototype_class, k=max(1, args.prototypes // 4)
                )
                loss = 0.5 * loss + 0.25 * coh + 0.25 * sep
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for ids, mask in data[: args.warmup]:
        step(ids, mask)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for ids, mask in data[args.warmup :]:
        step(ids, mask)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    examples = args.batch_size * args.steps
    tokens = examples * args.length
    n_params = sum(p.numel() for p in params)
    per_parameter = 4 if args.lora else 6  # no weight gradients for frozen weights
    flops = tokens * (per_parameter * n_params + 12 * cfg.num_hidden_layers * cfg.hidden_size * args.length)
    return {
        "head": head_name,
        "examples_per_s": examples / seconds,
        "tokens_per_s": tokens / seconds,
        "params_m": n_params / 1e6,
        "trainable_m": sum(p.numel() for p in trained) / 1e6,
        "tflops_per_s": flops / seconds / 1e12,
        "mfu": flops / seconds / (args.peak_tflops * 1e12),
        "peak_mem_gb": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--prototypes", type=int, default=100)
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--arch", choices=("roberta-large", "llama-1b"), default="roberta-large")
    parser.add_argument("--lora", action="store_true", help="LoRA adapters (r 8) instead of full fine-tuning")
    parser.add_argument("--smoke", action="store_true", help="tiny model and sizes: checks the script on any device")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.smoke:
        args.batch_size, args.length, args.steps, args.warmup, args.prototypes = 4, 32, 2, 1, 4
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = True
    rows = [run(h, args, device) for h in ("prototype", "linear")]
    print(table(rows, list(rows[0])))
    ratio = rows[1]["examples_per_s"] / rows[0]["examples_per_s"]
    print(f"prototype head step time / linear head step time: {ratio:.3f}")
    path = write(
        "gpu_smoke" if args.smoke else f"gpu_{device.type}_{args.arch}{'_lora' if args.lora else ''}",
        {"args": vars(args), "device": str(device), "rows": rows},
        args.out,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
