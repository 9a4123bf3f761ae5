"""Lightning's checkpoint writer, atomic: a run killed while saving keeps its previous checkpoint."""

from __future__ import annotations

from lightning.pytorch.plugins.io import TorchCheckpointIO

from protolm.utils.files import write_atomically


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint to a temporary file and renames it into place."""

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        write = super().save_checkpoint
        write_atomically(path, lambda tmp: write(checkpoint, tmp, storage_options))
