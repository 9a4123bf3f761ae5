"""Lightning callbacks of protolm's own: projecting during training."""

from __future__ import annotations

import lightning as L

from protolm.config import ProjectConfig
from protolm.prototypes.features import encode_split
from protolm.prototypes.projection import project


class ProjectEveryNEpochs(L.Callback):
    """Project the prototypes at the end of every N-th training epoch (``project.every_n_epochs``)."""

    def __init__(self, project_cfg: ProjectConfig):
        self.project = project_cfg

    def on_train_epoch_end(self, trainer, pl_module):
        if (trainer.current_epoch + 1) % self.project.every_n_epochs == 0:
            datamodule, precision = trainer.datamodule, trainer.precision_plugin.forward_context
            features = encode_split(pl_module.model, datamodule, "train", precision)
            split = datamodule.role_split("train")
            project(pl_module.model, features, split, self.project.mode, self.project.top_k, trainer.current_epoch)
