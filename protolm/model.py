"""The LightningModule: a Hugging Face encoder, a prototype (or linear) head, and the losses."""

from __future__ import annotations

import logging
import math

import lightning as L
import torch
from torch import nn

from protolm import backbone as backbones
from protolm.errors import TrainingDiverged
from protolm.head import LinearHead, PrototypeHead
from protolm.losses import cohesion_separation, resolve_k, task_loss
from protolm.metrics import PrototypeUsage, task_metrics

log = logging.getLogger(__name__)


class ProtoLM(L.LightningModule):
    """Backbone + head + losses, configured by the plain-dict sections of the run config.

    ``backbone``, ``head``, ``loss``, ``optim``: the config sections of the same names;
    ``task``: ``{"name", "num_classes", "regression", "labels"}``. ``encoder`` may be passed
    pre-built (used when restoring from a checkpoint without the hub), and ``prototype_class``
    given for a head whose prototypes are not P/C equal blocks (a pruned head).
    ``last_layer_only`` switches training to the last layer alone (after a projection).
    """

    def __init__(
        self,
        backbone: dict,
        head: dict,
        loss: dict,
        optim: dict,
        task: dict,
        seed: int = 0,
        encoder=None,
        prototype_class=None,
    ):
        super().__init__()
        self.backbone_cfg, self.head_cfg, self.loss_cfg, self.optim_cfg = backbone, head, loss, optim
        self.task_info, self.seed = task, seed
        self.projection: dict | None = None  # set by protolm.projection.project
        self.last_layer_only = False
        self.regression = bool(task["regression"])
        self.num_classes = int(task["num_classes"])
        if encoder is None:
            encoder, hidden = backbones.load_encoder(backbone)
        else:
            hidden = encoder.config.hidden_size
        # from_pretrained returns the model in eval mode and Lightning keeps module modes as they
        # are: switch dropout on for fine-tuning, as Hugging Face's Trainer does.
        self.encoder = encoder.train()
        self.is_prototype = head["name"] == "prototype"
        if self.is_prototype:
            self.head = PrototypeHead(
                hidden,
                head["num_prototypes"],
                self.num_classes,
                similarity=head["similarity"],
                eps=head["eps"],
                attention_dim=head.get("attention_dim"),
                incorrect_class_weight=head["incorrect_class_weight"],
                init_std=head["init_std"],
                prototype_class=prototype_class,
            )
            # K from the configured P/C; a pruned head may have fewer prototypes in some class.
            configured_per_class = max(
                1, int(head.get("num_prototypes") or self.head.num_prototypes) // self.num_classes
            )
            self.k = min(resolve_k(loss["cohsep_ratio"], configured_per_class), self.head.prototypes_per_class)
            if head["prototype_init"] == "random":
                self.head.prototypes_initialized.fill_(True)
        else:
            self.head = LinearHead(
                hidden, self.num_classes, pooling=backbone.get("pooling", "cls"), dropout=head.get("dropout", 0.1)
            )
        # torch.compile'd encoder, kept off the module tree so checkpoints keep their plain keys.
        object.__setattr__(
            self, "_encoder_fn", torch.compile(self.encoder) if backbone.get("compile") else self.encoder
        )
        if optim.get("freeze_backbone"):
            self.encoder.requires_grad_(False)
        elif optim.get("freeze_layers"):
            backbones.freeze_lower_layers(self.encoder, int(optim["freeze_layers"]))
        self.val_metrics = task_metrics(self.num_classes, self.regression, prefix="val/")
        self.test_metrics = task_metrics(self.num_classes, self.regression, prefix="test/")
        if self.is_prototype:
            self.usage = nn.ModuleDict(
                {f"usage_{s}": PrototypeUsage(self.head.num_prototypes) for s in ("train", "val", "test")}
            )

    # ------------------------------------------------------------------ forward
    def encode(self, batch: dict) -> torch.Tensor:
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
        return self._encoder_fn(**inputs).last_hidden_state

    def forward(self, batch: dict) -> dict:
        return self.head(self.encode(batch), batch["attention_mask"])

    def losses(self, out: dict, labels: torch.Tensor) -> dict:
        """Weighted objective and its unweighted terms."""
        terms = {"ce" if not self.regression else "mse": task_loss(out["logits"], labels, self.regression)}
        weights = {"ce": self.loss_cfg["ce"], "mse": self.loss_cfg["ce"]}
        if self.is_prototype:
            proto_labels = torch.zeros_like(labels, dtype=torch.long) if self.regression else labels
            terms["cohesion"], terms["separation"] = cohesion_separation(
                out["similarities"],
                proto_labels,
                self.head.prototype_class,
                self.k,
                reference_signs=self.loss_cfg.get("reference_signs", False),
                with_separation=not self.regression,
            )
            weights.update(cohesion=self.loss_cfg["cohesion"], separation=self.loss_cfg["separation"])
        terms["loss"] = sum(weights[name] * value for name, value in terms.items())
        return terms

    def _step(self, batch: dict, stage: str) -> dict:
        out = self(batch)
        terms = self.losses(out, batch["labels"])
        size = batch["labels"].shape[0]
        on_step = stage == "train"
        self.log_dict(
            {f"{stage}/{k}": v.detach() for k, v in terms.items()},
            on_step=on_step,
            on_epoch=True,
            batch_size=size,
            sync_dist=not on_step,
            prog_bar=False,
        )
        if self.is_prototype:
            self.usage[f"usage_{stage}"].update(out["similarities"].detach())
        return {"terms": terms, "out": out}

    # ----------------------------------------------------------------- training
    def training_step(self, batch: dict, batch_idx: int):
        terms = self._step(batch, "train")["terms"]
        if not torch.isfinite(terms["loss"]):
            parts = ", ".join(f"{k}={v.item():.4g}" for k, v in terms.items())
            raise TrainingDiverged(
                f"the training loss is not finite at epoch {self.current_epoch}, step {self.global_step} ({parts}). "
                "Training stopped; the last good checkpoint is kept. Lower optim.backbone_lr / optim.head_lr, "
                "use trainer.gradient_clip_val, or check the data"
            )
        return terms["loss"]

    def validation_step(self, batch: dict, batch_idx: int):
        out = self._step(batch, "val")["out"]
        self.val_metrics.update(self._predictions(out), batch["labels"])

    def test_step(self, batch: dict, batch_idx: int):
        out = self._step(batch, "test")["out"]
        self.test_metrics.update(self._predictions(out), batch["labels"])

    def _predictions(self, out: dict) -> torch.Tensor:
        return out["logits"].squeeze(-1).float() if self.regression else out["logits"].argmax(-1)

    def _log_usage(self, stage: str):
        if self.is_prototype:  # counts are summed over processes by the metric: the same everywhere
            self.log(f"{stage}/prototypes_used", self.usage[f"usage_{stage}"].compute().float(), sync_dist=True)
            self.usage[f"usage_{stage}"].reset()

    def on_train_epoch_start(self):
        if self.optim_cfg.get("freeze_backbone") or self.last_layer_only:
            self.encoder.eval()  # a frozen encoder keeps its dropout off

    def on_train_epoch_end(self):
        self._log_usage("train")

    def on_validation_epoch_end(self):
        self.log_dict(self.val_metrics)  # Lightning computes (synchronised across processes) and resets
        self._log_usage("val")

    def on_test_epoch_end(self):
        self.log_dict(self.test_metrics)
        self._log_usage("test")

    # --------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Everything needed to rebuild this model offline: config, task, encoder config, tokenizer.

        Plain Python types and tensors only, so checkpoints load with ``torch.load(weights_only=True)``.
        """
        checkpoint["protolm"] = {
            "format": 1,
            "task": self.task_info,
            "backbone_config": self.encoder.config.to_dict(),
            "prototype_class": self.head.prototype_class.tolist() if self.is_prototype else None,
            "projection": self.projection,
            **getattr(self, "artifacts", {}),
        }

        checkpoint["rng_state"] = rng_state()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.projection = checkpoint.get("protolm", {}).get("projection")
        if "rng_state" in checkpoint and self._trainer is not None and self.trainer.state.fn == "fit":
            # A resumed run draws the same dropout masks as the uninterrupted run would have.
            set_rng_state(checkpoint["rng_state"])

    # ------------------------------------------------------- prototype initialisation
    def on_fit_start(self):
        if self.is_prototype and not bool(self.head.prototypes_initialized):
            trainer = self.trainer
            self.init_prototypes_from_training_data(
                trainer.datamodule, trainer.strategy.broadcast, trainer.is_global_zero
            )

    @torch.no_grad()
    def init_prototypes_from_training_data(self, datamodule, broadcast=None, compute: bool = True):
        """Set each prototype to the pooled embedding of a distinct random training example of its class.

        Prototypes drawn far from the embedding cloud give near-constant similarities and the head
        never learns (DESIGN.md measured chance accuracy); starting on real examples avoids that.
        Computed where ``compute`` (rank 0) and ``broadcast``, so every process starts from the same prototypes.
        """
        labels = datamodule.role_split("train").labels
        per_class = self.head.prototypes_per_class
        generator = torch.Generator().manual_seed(self.seed)
        chosen = []
        for c in range(self.num_classes):
            members = [i for i, y in enumerate(labels) if self.regression or y == c]
            if not members:
                raise TrainingDiverged(f"head.prototype_init=train_embeddings: no training example of class {c}")
            picks = torch.randperm(len(members), generator=generator)[:per_class].tolist()
            while len(picks) < per_class:  # fewer examples than prototypes: reuse (noise added below)
                picks += picks[: per_class - len(picks)]
            chosen += [members[i] for i in picks]
        vectors = torch.zeros(self.head.num_prototypes, self.head.hidden_size, device=self.device)
        if compute:
            was_training = self.training
            self.eval()
            pooled_by_index = {}
            for batch in datamodule.dataloader("train", indices=sorted(set(chosen)), shard=False):
                batch = {k: v.to(self.device) for k, v in batch.items()}
                for index, vector in zip(batch["index"].tolist(), self(batch)["pooled"].float()):
                    pooled_by_index[index] = vector
            self.train(was_training)
            vectors = torch.stack([pooled_by_index[i] for i in chosen])
            if len(set(chosen)) < len(chosen):  # reused examples: break the ties
                vectors += 1e-3 * vectors.std() * torch.randn(vectors.shape, generator=generator).to(vectors)
        if broadcast is not None:
            vectors = broadcast(vectors, src=0)
        self.head.set_prototypes(vectors)
        log.info("initialised %d prototypes from training examples of their class", self.head.num_prototypes)

    # --------------------------------------------------------------- optimisation
    def configure_optimizers(self):
        cfg = self.optim_cfg
        if self.last_layer_only:  # ProtoPNet's last-layer phase: prototypes and encoder stay fixed
            for name, param in self.named_parameters():
                param.requires_grad_(name.startswith("head.last_layer."))
            return torch.optim.AdamW(self.head.last_layer.parameters(), lr=cfg["head_lr"], weight_decay=0.0)
        no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight", "LayerNorm.bias", "norm.weight")
        groups = {"backbone_decay": [], "backbone_no_decay": [], "head_decay": [], "head_no_decay": []}
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            part = "backbone" if name.startswith("encoder.") else "head"
            # Prototypes live in embedding space: weight decay would pull them to the origin.
            decay = not (name.endswith(no_decay) or name.endswith("prototypes") or param.ndim < 2)
            groups[f"{part}_{'decay' if decay else 'no_decay'}"].append(param)
        lrs = {"backbone": cfg["backbone_lr"], "head": cfg["head_lr"]}
        param_groups = [
            {
                "params": params,
                "name": key,
                "lr": lrs[key.split("_")[0]],
                "weight_decay": cfg["weight_decay"] if key.endswith("_decay") and not key.endswith("no_decay") else 0.0,
            }
            for key, params in groups.items()
            if params
        ]
        optimizer = torch.optim.AdamW(
            param_groups, eps=cfg.get("adam_eps", 1e-8), betas=tuple(cfg.get("betas", (0.9, 0.999)))
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(cfg["warmup_ratio"] * total)
        schedule = lr_schedule(cfg.get("scheduler", "linear"), warmup, total)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def rng_state() -> dict:
    """Random generator states as tensors and plain values (weights_only-loadable)."""
    import random

    import numpy as np

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype("int64")),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    import random

    import numpy as np

    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype("uint32"), n["pos"], n["has_gauss"], n["cached"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


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
