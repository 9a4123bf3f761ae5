"""The LightningModule: an encoder, a head and an objective, built elsewhere (protolm.assemble) and
trained, evaluated and checkpointed here."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import lightning as L
import torch
from torch import nn

import protolm
from protolm.config import OptimConfig
from protolm.errors import CheckpointError, DataError, TrainingDiverged
from protolm.head import PrototypeHead
from protolm.hf import encode_and_classify
from protolm.inference import MODEL_INPUTS
from protolm.metrics import PrototypeUsage, task_metrics
from protolm.optim import last_layer_optimizer, optimizer_and_schedule
from protolm.resume import restore_rng_state, rng_state

log = logging.getLogger(__name__)

# 2: typed config (loss.task, loss.k / loss.k_fraction), typed projection records.
CHECKPOINT_FORMAT = 2


@dataclass
class TaskInfo:
    """What the model knows of its task: enough to name its outputs without the task files."""

    name: str
    num_classes: int
    regression: bool
    labels: list[str] | None
    pair: bool

    @classmethod
    def from_spec(cls, spec) -> TaskInfo:
        return cls(spec.name, spec.num_classes, spec.is_regression, spec.labels, spec.is_pair)

    @classmethod
    def from_dict(cls, value: dict) -> TaskInfo:
        return cls(**{f.name: value.get(f.name) for f in dataclasses.fields(cls)})

    def class_name(self, index: int) -> str | int:
        """The label name of a class index (the index itself for a regression's single block)."""
        return self.labels[index] if self.labels and not self.regression else index


class ProtoLM(L.LightningModule):
    """Encoder -> head -> objective.

    ``encoder``: a Hugging Face encoder (``last_hidden_state``); ``head``: a PrototypeHead or
    LinearHead; ``objective``: maps (head output, labels) to the loss and its terms
    (protolm.losses); ``optim``: learning rates and schedule. ``last_layer_only`` switches
    training to the head's last layer alone (the phase after a projection).
    """

    def __init__(
        self,
        encoder: nn.Module,
        head: nn.Module,
        objective,
        optim: OptimConfig,
        task: TaskInfo,
        seed: int = 0,
        compile_encoder: bool = False,
    ):
        super().__init__()
        # from_pretrained returns the model in eval mode and Lightning keeps module modes as they
        # are: switch dropout on for fine-tuning, as Hugging Face's Trainer does.
        self.encoder, self.head, self.objective = encoder.train(), head, objective
        self.optim, self.task_info, self.seed = optim, task, seed
        self.regression, self.num_classes = task.regression, task.num_classes
        self.is_prototype = isinstance(head, PrototypeHead)
        self.projection = None  # protolm.projection.Projection, once the prototypes are projected
        self.last_layer_only = False
        # torch.compile'd encoder, kept off the module tree so checkpoints keep their plain keys.
        object.__setattr__(self, "_encoder_fn", torch.compile(encoder) if compile_encoder else encoder)
        # Set by build_model for adapters on pretrained weights: checkpoints then leave out those
        # frozen weights (a second copy of a 7B model in every file), and loading reads them again
        # from this source (backbone.pretrained). Every other key stays strictly checked.
        self.encoder_weights_from: str | None = None
        self.frozen_encoder_keys: frozenset[str] = frozenset()
        self.val_metrics = task_metrics(self.num_classes, self.regression, prefix="val/")
        self.test_metrics = task_metrics(self.num_classes, self.regression, prefix="test/")
        if self.is_prototype:
            stages = ("train", "val", "test")
            self.usage = nn.ModuleDict({f"usage_{s}": PrototypeUsage(head.num_prototypes) for s in stages})

    # ------------------------------------------------------------------ forward
    def forward(self, batch: dict) -> dict:
        # The one implementation of the model, shared with ProtoLMForSequenceClassification.
        inputs = {k: batch[k] for k in MODEL_INPUTS if k in batch}
        return encode_and_classify(self._encoder_fn, self.head, **inputs)

    def to_transformers(self):
        """This model as a ``ProtoLMForSequenceClassification`` on the same modules (nothing copied):
        what export, ``protolm.load`` and the pipelines run. Carries the projection record."""
        from protolm.hf import transformers_model

        return transformers_model(self)

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
        if self.optim.freeze_backbone or self.last_layer_only:
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
            "format": CHECKPOINT_FORMAT,
            "task": dataclasses.asdict(self.task_info),
            "backbone_config": self.encoder.config.to_dict(),
            "prototype_class": self.head.prototype_class.tolist() if self.is_prototype else None,
            "projection": self.projection.to_dict() if self.projection is not None else None,
            "protolm_version": protolm.__version__,
            "train_data": self._train_data_fingerprint(),
            **getattr(self, "artifacts", {}),
        }
        if self.encoder_weights_from:
            state = checkpoint["state_dict"]
            for key in self.frozen_encoder_keys & set(state):
                del state[key]
            checkpoint["protolm"]["encoder_weights_from"] = self.encoder_weights_from
        checkpoint["rng_state"] = rng_state()

    def leave_pretrained_weights_out(self, source: str) -> None:
        """Checkpoints of this (LoRA) model hold the adapters and the head, not the frozen encoder
        weights of ``source``: they are read from there again when a checkpoint is loaded."""
        self.encoder_weights_from = source
        self.frozen_encoder_keys = frozenset(
            f"encoder.{name}" for name, _ in self.encoder.named_parameters() if "lora_" not in name
        )
        self.strict_loading = False  # Lightning's loading: checked in on_load_checkpoint instead

    def load_weights(self, state: dict, where) -> None:
        """Load a checkpoint's state dict, every key checked (the frozen ones it may leave out kept)."""
        self.check_state_keys(state, where)
        self.load_state_dict(state, strict=False)

    def check_state_keys(self, state: dict, where) -> None:
        """The checkpoint's state holds every key of this model, but the frozen ones it may leave out."""
        own = set(self.state_dict())
        missing = sorted(own - set(state) - (self.frozen_encoder_keys if self.encoder_weights_from else set()))
        unexpected = sorted(set(state) - own)
        if missing or unexpected:
            raise CheckpointError(
                f"checkpoint {where} does not match its own config (missing {missing[:3]}, unexpected {unexpected[:3]})"
            )

    def _train_data_fingerprint(self) -> str | None:
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        return datamodule.fingerprint() if hasattr(datamodule, "fingerprint") else None  # cached there

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        from protolm.projection import Projection

        if self.encoder_weights_from:  # loading is not strict: check here what it would have
            self.check_state_keys(checkpoint["state_dict"], "being loaded")

        record = checkpoint.get("protolm", {}).get("projection")
        self.projection = Projection.from_dict(record) if record else None
        resuming = self._trainer is not None and self.trainer.state.fn == "fit"
        saved_data, data = checkpoint.get("protolm", {}).get("train_data"), self._train_data_fingerprint()
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
            trainer = self.trainer
            self.init_prototypes_from_training_data(trainer.datamodule, trainer.strategy.broadcast)

    def _examples_per_prototype(self, labels: list, generator: torch.Generator) -> list[int]:
        """A distinct random training example of each prototype's class (reused when a class has too few)."""
        per_class = self.head.prototypes_per_class
        chosen = []
        for c in range(self.num_classes):
            members = [i for i, y in enumerate(labels) if self.regression or y == c]
            if not members:
                raise DataError(f"head.prototype_init=train_embeddings: no training example of class {c}")
            picks = torch.randperm(len(members), generator=generator)[:per_class].tolist()
            while len(picks) < per_class:  # fewer examples than prototypes: reuse (noise added by the caller)
                picks += picks[: per_class - len(picks)]
            chosen += [members[i] for i in picks]
        return chosen

    @torch.no_grad()
    def init_prototypes_from_training_data(self, datamodule, broadcast=None):
        """Set each prototype to the pooled embedding of a distinct random training example of its class.

        Prototypes drawn far from the embedding cloud give near-constant similarities and the head
        never learns (docs/method.md, "Initialisation"); starting on real examples avoids that.
        Every process computes the same vectors; ``broadcast`` makes sure they start identical.
        """
        from protolm.projection import pooled_embeddings

        generator = torch.Generator().manual_seed(self.seed)
        chosen = self._examples_per_prototype(datamodule.role_split("train").labels, generator)
        vectors = pooled_embeddings(self, datamodule, chosen, role="train")
        if len(set(chosen)) < len(chosen):  # reused examples: break the ties
            vectors += 1e-3 * vectors.std() * torch.randn(vectors.shape, generator=generator).to(vectors)
        if broadcast is not None:
            vectors = broadcast(vectors, src=0)
        self.head.set_prototypes(vectors)
        log.info("initialised %d prototypes from training examples of their class", self.head.num_prototypes)

    # --------------------------------------------------------------- optimisation
    def configure_optimizers(self):
        if self.last_layer_only:
            return last_layer_optimizer(self, self.optim.head_lr)
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
