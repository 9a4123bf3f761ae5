"""One pass of the encoder over a split, shared by every prototype stage.

After training the encoder and the attention pooling are frozen: each example's pooled embedding no
longer changes, and everything the prototype stages compute (similarities to prototypes, the last
layer's logits, nearest examples, purity, the map) follows from it. :func:`encode_split` computes
the pooled embeddings of a split once; projection, the last-layer phase, health, pruning, edits and
the evaluation of the shipped model read them instead of passing the encoder over the data again.

Memory: N x H float32 values. Above ``IN_MEMORY_BYTES`` they are kept in a memory-mapped temporary
file instead (single process), so a corpus larger than memory still projects.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from protolm.modeling.inference import MODEL_INPUTS, Precision, encode_texts, evaluating, forward, outputs, to_device
from protolm.utils.processes import gather_rows, world
from protolm.utils.progress import track

log = logging.getLogger(__name__)
IN_MEMORY_BYTES = 2**30
CHUNK = 4096  # rows per matrix product when scanning the features


@dataclass
class Features:
    """Pooled embeddings (``pooled``: N x H, float32, on the CPU) and labels of one role's split,
    in the split's order, under the model as it was when they were computed."""

    role: str
    pooled: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.pooled)

    def chunks(self, size: int = CHUNK) -> Iterator[tuple[int, torch.Tensor]]:
        """(start, rows) over the features, ``size`` rows at a time."""
        for start in range(0, len(self.pooled), size):
            yield start, self.pooled[start : start + size]

    @torch.no_grad()
    def similarities(self, head, device, indices: torch.Tensor | None = None) -> torch.Tensor:
        """Similarities of the rows (all, or ``indices``) to the head's prototypes (on the CPU)."""
        rows = self.pooled if indices is None else self.pooled[indices]
        parts = [head.similarities(rows[s : s + CHUNK].to(device)).float().cpu() for s in range(0, len(rows), CHUNK)]
        return torch.cat(parts) if parts else torch.empty(0, head.num_prototypes)

    @torch.no_grad()
    def logits(self, head, device) -> torch.Tensor:
        """The head's logits on every row (on the CPU), outside autograd: a teacher's fixed targets."""
        parts = []
        for _, rows in self.chunks():
            sims = head.similarities(rows.to(device))
            parts.append(head.logits_from_similarities(sims).float().cpu())
        return torch.cat(parts)


def _storage(n: int, width: int) -> torch.Tensor:
    """An N x H float32 tensor: in memory, or memory-mapped from a temporary file when large."""
    if n * width * 4 <= IN_MEMORY_BYTES or world()[0] > 1:
        return torch.empty(n, width)
    file = tempfile.NamedTemporaryFile(prefix="protolm-features-", suffix=".f32")  # removed when collected
    array = np.memmap(file, dtype=np.float32, mode="w+", shape=(n, width))
    tensor = torch.from_numpy(array)
    tensor._protolm_file = file  # keeps the file alive as long as the tensor
    log.info("features of %d examples (%.1f GB) kept in a memory-mapped file", n, n * width * 4 / 1e9)
    return tensor


@torch.no_grad()
def encode_split(net, datamodule, role: str, precision: Precision | None = None) -> Features:
    """The pooled embeddings of ``role``'s whole split (sharded across processes, then gathered)."""
    split = datamodule.role_split(role)
    width = net.encoder.config.hidden_size
    local_indices, local_rows = [], []
    pooled = _storage(len(split), width) if world()[0] == 1 else None
    batches = track(datamodule.dataloader(role), f"encoding the {role} split")
    for batch, out in outputs(net, batches, precision):
        rows, indices = out["pooled"].float().cpu(), batch["index"].cpu()
        if pooled is not None:
            pooled[indices] = rows
        else:
            local_indices.append(indices)
            local_rows.append(rows)
    if pooled is None:
        indices, rows = gather_rows(torch.cat(local_indices), torch.cat(local_rows), net.device)
        pooled = torch.empty(len(split), width)
        pooled[indices] = rows
    return Features(role, pooled, torch.tensor(split.labels))


@torch.no_grad()
def pooled_of(net, datamodule, indices: list[int], role: str = "train", precision: Precision | None = None):
    """Pooled embeddings of the given examples of ``role``'s split, in the given order (computed on
    every process, unsharded: a few examples, not a split)."""
    by_index = {}
    loader = datamodule.dataloader(role, indices=sorted(set(indices)), shard=False)
    for batch, out in outputs(net, loader, precision):
        for index, vector in zip(batch["index"].tolist(), out["pooled"].float()):
            by_index[index] = vector
    return torch.stack([by_index[i] for i in indices])


@torch.no_grad()
def pooled_of_texts(net, tokenizer, texts: list[str], max_length: int, batch_size: int = 32) -> torch.Tensor:
    """Pooled embeddings of texts a person gives (new prototypes, a concept's examples), N x H."""
    parts = []
    with evaluating(net):
        for start in range(0, len(texts), batch_size):
            enc = encode_texts(tokenizer, texts[start : start + batch_size], None, max_length)
            parts.append(forward(net, to_device(enc, net.device, MODEL_INPUTS))["pooled"].float().cpu())
    return torch.cat(parts) if parts else torch.empty(0, net.encoder.config.hidden_size)
