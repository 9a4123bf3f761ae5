"""The prototype stages share one pass of the frozen encoder over each split: what they compute from
the cached pooled embeddings equals what a pass of the model through Lightning's loops computes."""

import lightning as L
import pytest
import torch

from protolm.config import read_settings
from protolm.modeling.inference import forward
from protolm.modeling.losses import task_loss
from protolm.prototypes.evaluation import evaluate_features
from protolm.prototypes.features import encode_split
from protolm.prototypes.last_layer import LastLayerPhase, train_last_layer
from protolm.prototypes.projection import project
from protolm.serving.classifier import load
from protolm.training.assemble import build_objective, trainer_kwargs
from protolm.training.module import ProtoLM


class LastLayerThroughTheEncoder(L.LightningModule):
    """The last-layer phase as a Lightning fit over the data (what protolm ran before the pass was
    shared): every batch through the frozen encoder, only the last layer learning."""

    def __init__(self, net, phase: LastLayerPhase):
        super().__init__()
        self.net, self.phase = net, phase
        for name, p in net.named_parameters():
            p.requires_grad_(name.startswith("head.last_layer."))

    def on_train_epoch_start(self):
        self.net.eval()  # a frozen encoder keeps its dropout off

    def training_step(self, batch, batch_idx):
        logits = forward(self.net, batch)["logits"]
        return self.phase.task_weight * task_loss(logits, batch["labels"], regression=False)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.net.head.last_layer.parameters(), lr=self.phase.lr, weight_decay=0.0)


def unprojected(tiny_run):
    clf = load(tiny_run / "checkpoints" / "last.ckpt")
    datamodule = clf.datamodule()
    settings = read_settings(clf.training["config"], check_trainer=False)
    return clf, datamodule, settings


def test_the_last_layer_phase_on_cached_features_equals_training_it_through_the_encoder(tiny_run, tmp_path):
    clf, datamodule, settings = unprojected(tiny_run)
    net = clf.model
    train = encode_split(net, datamodule, "train")
    project(net, train, datamodule.role_split("train"), "replace", 3)
    phase = LastLayerPhase(
        epochs=2, lr=3e-3, batch_size=settings.data.batch_size, task_weight=0.5, clip=1.0, seed=settings.seed
    )
    before = {k: v.clone() for k, v in net.head.state_dict().items()}
    train_last_layer(net.head, train, datamodule.role_split("train").lengths, phase)
    cached = net.head.last_layer.weight.detach().clone()
    net.head.load_state_dict(before)
    # The same phase as a Lightning fit: the data module's training order, clipping, AdamW.
    kwargs = trainer_kwargs(
        settings, max_epochs=2, max_steps=-1, gradient_clip_val=1.0, enable_checkpointing=False, limit_val_batches=0
    )
    trainer = L.Trainer(**kwargs, logger=False, default_root_dir=str(tmp_path))
    trainer.fit(LastLayerThroughTheEncoder(net, phase), datamodule=datamodule)
    assert not torch.equal(cached, before["last_layer.weight"])  # it learned
    torch.testing.assert_close(cached, net.head.last_layer.weight.detach(), atol=2e-5, rtol=1e-4)


def test_figures_from_cached_features_equal_lightnings_test_loop(tiny_run):
    clf, datamodule, settings = unprojected(tiny_run)
    objective = build_objective(settings, clf.model.head)
    cached = evaluate_features(clf.model, encode_split(clf.model, datamodule, "test"), objective, "test/")
    module = ProtoLM(clf.model, objective, settings.optim)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    measured = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    assert set(measured) == set(cached)
    for key, value in measured.items():
        assert cached[key] == pytest.approx(value, abs=1e-5), key
