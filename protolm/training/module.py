"""The LightningModule: the model (a ``ProtoLMForSequenceClassification``) and an objective, built
elsewhere (protolm.training.assemble) and trained, evaluated and checkpointed here."""

from __future__ import annotations

import dataclasses
import logging

import lightning as L
import torch
from torch import nn

from protolm.config import OptimConfig
from protolm.modeling.inference import forward
from protolm.modeling.metrics import PrototypeUsage, task_metrics
from protolm.modeling.saved import frozen_encoder_keys, saved_record
from protolm.training.optim import optimizer_and_schedule
from protolm.training.resume import restore_rng_state, rng_state
from protolm.utils.errors import CheckpointError, DataError, TrainingDiverged

log = logging.getLogger(__name__)


class ProtoLM(L.LightningModule):
    """Model -> objective.

    ``model``: the ProtoLMForSequenceClassification that is shipped (an encoder and a
    PrototypeHead or LinearHead); ``objective``: maps (head output, labels) to the loss and its
    terms (protolm.modeling.losses); ``optim``: learning rates and schedule.
    """

    def __init__(self, model, objective, optim: OptimConfig, seed: int = 0, compile_encoder: bool = False):
        super().__init__()
        # from_pretrained returns the model in eval mode and Lightning keeps module modes as they
        # are: switch dropout on for fine-tuning, as Hugging Face's Trainer does.
        self.model, self.objective = model.train(), objective
        self.optim, self.seed = optim, seed
        config = model.config
        self.regression, self.num_classes = config.regression, config.num_labels
        self.is_prototype = config.is_prototype
        if compile_encoder:  # in place: the state dict keeps its plain keys
            model.encoder.compile()
        # Set by build_model for adapters on pretrained weights: checkpoints then leave out those
        # frozen weights (a second copy of a 7B model in every file), and loading reads them again
        # from their source. Every other key stays strictly checked.
        self.encoder_record: dict | None = None
        self.artifacts: dict = {}  # the run's config and tokenizer files, saved in every checkpoint
        self.val_metrics = task_metrics(self.num_classes, self.regression, prefix="val/")
        self.test_metrics = task_metrics(self.num_classes, self.regression, prefix="test/")
        if self.is_prototype:
            stages = ("train", "val", "test")
            self.usage = nn.ModuleDict({f"usage_{s}": PrototypeUsage(self.head.num_prototypes) for s in stages})

    @property
    def encoder(self) -> nn.Module:
        return self.model.encoder

    @property
    def head(self) -> nn.Module:
        return self.model.head

    # ------------------------------------------------------------------ forward
    def forward(self, batch: dict) -> dict:
        return forward(self.model, batch)  # the model's own computation, shared with every stage

    def losses(self, out: dict, labels: torch.Tensor) -> dict:
        """The weighted objective (``loss``) and its unweighted terms."""
        return self.objective(out, labels)

    def _step(self, batch: dict, stage: str) -> dict:
        out = self(batch)
        terms = self.losses(out, batch["labels"])
        on_step = stage == "train"
        self.log_dict(
            {f"{stage}/{k}": v.detach() for k, v in terms.items()},
            on_step=on_step,
            on_epoch=True,
            batch_size=batch["labels"].shape[0],
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
        self.val_metrics.update(out["logits"], batch["labels"])

    def test_step(self, batch: dict, batch_idx: int):
        out = self._step(batch, "test")["out"]
        self.test_metrics.update(out["logits"], batch["labels"])

    def _log_usage(self, stage: str):
        if self.is_prototype:  # counts are summed over processes by the metric: the same everywhere
            self.log(f"{stage}/prototypes_used", self.usage[f"usage_{stage}"].compute().float(), sync_dist=True)
            self.usage[f"usage_{stage}"].reset()

    def on_train_epoch_start(self):
        if self.optim.freeze_backbone:
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
        """The model's architecture, tokenizer and projection, and the training config as a record
        (protolm.modeling.saved). Plain Python types and tensors only: ``weights_only`` loads them."""
        training = {"config": self.artifacts.get("config"), "train_data": self._train_data_fingerprint()}
        record = saved_record(self.model, self.artifacts.get("tokenizer_files"), training, self.encoder_record)
        checkpoint["protolm"] = record
        if self.leaves_out_frozen_weights:
            state = checkpoint["state_dict"]
            for key in frozen_encoder_keys(k.removeprefix("model.") for k in state):
                del state[f"model.{key}"]
        checkpoint["rng_state"] = rng_state()

    @property
    def leaves_out_frozen_weights(self) -> bool:
        return bool((self.encoder_record or {}).get("weights_from"))

    def adapted_encoder(self, backbone: dict, weights_from: str | None) -> None:
        """Record the LoRA adapters' wrapping (``backbone``: the backbone section) so that a checkpoint
        rebuilds it; with ``weights_from``, checkpoints hold the adapters and the head, not the frozen
        encoder weights, which loading reads from there again."""
        self.encoder_record = {"backbone": backbone, "weights_from": weights_from}
        if weights_from:
            self.strict_loading = False  # Lightning's loading: checked in on_load_checkpoint instead

    def check_state_keys(self, state: dict, where) -> None:
        """The checkpoint's state holds every key of this model, but the frozen ones it may leave out."""
        own = set(self.state_dict())
        frozen = {f"model.{k}" for k in frozen_encoder_keys(k.removeprefix("model.") for k in own)}
        missing = sorted(own - set(state) - (frozen if self.leaves_out_frozen_weights else set()))
        unexpected = sorted(set(state) - own)
        if missing or unexpected:
            raise CheckpointError(
                f"checkpoint {where} does not match its own config (missing {missing[:3]}, unexpected {unexpected[:3]})"
            )

    def _train_data_fingerprint(self) -> str | None:
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        return datamodule.fingerprint() if hasattr(datamodule, "fingerprint") else None  # cached there

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if self.leaves_out_frozen_weights:  # loading is not strict: check here what it would have
            self.check_state_keys(checkpoint["state_dict"], "being loaded")
        record = checkpoint.get("protolm", {})
        self.model.prototypes = record.get("projection")
        resuming = self._trainer is not None and self.trainer.state.fn == "fit"
        saved_data, data = (record.get("training") or {}).get("train_data"), self._train_data_fingerprint()
        if resuming and saved_data and data and saved_data != data:
            raise DataError(
                "the training examples differ from those the checkpoint was trained on (a data file, "
                "task or data.* setting changed since): resuming would not continue the same run; "
                "restore the data, or start a new run (drop ckpt_path)"
            )
        if "rng_state" in checkpoint and resuming:
            # A resumed run draws the same dropout masks as the uninterrupted run would have.
            restore_rng_state(checkpoint["rng_state"])

    # ------------------------------------------------------- prototype initialisation
    def on_fit_start(self):
        if self.is_prototype and not bool(self.head.prototypes_initialized):
            from protolm.prototypes.initial import init_prototypes_from_training_data

            trainer = self.trainer
            init_prototypes_from_training_data(
                self.model, trainer.datamodule, self.seed, trainer.strategy.broadcast, self._precision
            )

    def _precision(self):
        return self.trainer.precision_plugin.forward_context()

    # --------------------------------------------------------------- optimisation
    def configure_optimizers(self):
        optim = self.optim
        scaled = str(self.trainer.precision).startswith("16")  # fp16 trains with a gradient scaler
        if optim.implementation == "fused" and scaled and self.trainer.gradient_clip_val:
            # A fused step unscales fp16 gradients itself, so they cannot be clipped before it.
            log.info("optim.implementation=fused with fp16 and gradient clipping: using foreach instead")
            optim = dataclasses.replace(optim, implementation="foreach")
        return optimizer_and_schedule(self, optim, self.trainer.estimated_stepping_batches)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        """Lightning refuses to clip for an optimizer that could unscale gradients itself (fused
        AdamW) under any mixed precision; without a gradient scaler (bf16) the gradients are the
        true ones, so they are clipped here as Lightning would clip them."""
        unscales = getattr(optimizer, "_step_supports_amp_scaling", False)
        if gradient_clip_val and unscales and getattr(self.trainer.precision_plugin, "scaler", None) is None:
            params = [p for group in optimizer.param_groups for p in group["params"]]
            if gradient_clip_algorithm == "value":
                torch.nn.utils.clip_grad_value_(params, gradient_clip_val)
            else:
                torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
