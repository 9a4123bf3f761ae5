"""The prototype head of proto-lm and the plain linear baseline head.

Both heads take the encoder's last hidden states (B x L x H) and its attention mask (B x L)
and return a dict with at least ``logits``, ``pooled`` (B x H) and ``attention`` (B x L).
The prototype head adds ``similarities`` (B x P). Everything is batched tensor algebra: no
Python loop runs over the examples or the prototypes (the reference code loops over both).
"""

from __future__ import annotations

import torch
from torch import nn

SIMILARITIES = ("inv_l2", "log_l2", "cosine")
# How the attention context vector w starts: PyTorch's Linear default (uniform, scaled by the
# width), N(0, 1) as the released proto-lm code draws it, or zero: every real token then gets the
# same weight, so pooling starts as the mean over tokens (sentence-transformers' own pooling).
ATTENTION_INITS = ("torch", "normal", "uniform")


class AttentionPooling(nn.Module):
    """Word-level attention of the paper: u_t = tanh(W h_t + b), a_t = u_t . w, alpha = softmax(a).

    The softmax runs over non-padding tokens only, so padding gets alpha = 0 exactly and the
    pooled vector does not depend on how much padding a batch carries.
    """

    def __init__(self, hidden_size: int, attention_dim: int | None = None, init: str = "torch"):
        super().__init__()
        if init not in ATTENTION_INITS:
            raise ValueError(f"head.attention_init={init!r} is not one of {', '.join(ATTENTION_INITS)}")
        attention_dim = attention_dim or hidden_size
        self.proj = nn.Linear(hidden_size, attention_dim)
        self.context = nn.Linear(attention_dim, 1, bias=False)
        if init == "normal":
            nn.init.normal_(self.context.weight)
        elif init == "uniform":
            nn.init.zeros_(self.context.weight)

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor, score_bias: torch.Tensor | None = None
    ):
        """(pooled, alpha). ``score_bias`` (B x L, added to the tokens' scores before the softmax)
        lets a rationale fade tokens out of the pooling as the encoder's attention fades them."""
        # Score only the real tokens: tanh(W h) is the head's largest product, and padding is
        # a quarter or more of a batch padded to a fixed length.
        real = attention_mask.bool()
        lowest = torch.finfo(torch.float32).min
        if torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting():
            # Graph export needs static shapes: score every position, then mask (the same result).
            token_scores = self.context(torch.tanh(self.proj(hidden_states))).squeeze(-1)
            scores = token_scores.float().masked_fill(~real, lowest)
        else:
            token_scores = self.context(torch.tanh(self.proj(hidden_states[real]))).squeeze(-1)
            # Softmax in float32: under bf16 autocast the scores are too coarse to normalise well.
            scores = torch.full(real.shape, lowest, device=hidden_states.device)
            scores = scores.masked_scatter(real, token_scores.float())
        if score_bias is not None:
            scores = scores + score_bias.float()
        alpha = torch.softmax(scores, dim=-1) * real
        # Re-normalise after zeroing padding; only matters for an all-padding row, kept finite.
        alpha = alpha / alpha.sum(-1, keepdim=True).clamp_min(1e-12)
        pooled = torch.bmm(alpha.unsqueeze(1).to(hidden_states.dtype), hidden_states).squeeze(1)
        return pooled, alpha


def squared_distances(pooled: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """||s - p||^2 for every (example, prototype) pair by one matrix product, clamped at 0.

    The expansion |s|^2 + |p|^2 - 2 s.p cancels catastrophically near coincidence: in float32 an
    embedding sitting exactly on a prototype comes out ~1e-5 away, which inv_l2 with eps=1e-4
    turns into a similarity 30x too small. Computed in float64 (a B x P x H product, negligible
    beside the encoder) it is exact to ~1e-7; returned in float32.
    """
    dtype = torch.float32 if pooled.device.type == "mps" else torch.float64  # MPS has no float64
    s, p = pooled.to(dtype), prototypes.to(dtype)
    d2 = (s * s).sum(-1, keepdim=True) + (p * p).sum(-1).unsqueeze(0) - 2.0 * (s @ p.t())
    return d2.clamp_min(0.0).float()


def similarity_from_pooled(pooled: torch.Tensor, prototypes: torch.Tensor, kind: str, eps: float):
    """Similarity of each pooled embedding to each prototype (B x P), finite at coincidence."""
    if kind == "cosine":
        # In float32 even under bf16 autocast, which would otherwise run this product in bf16
        # (three significant digits: too coarse for similarities summed over many prototypes).
        with torch.autocast(device_type=pooled.device.type, enabled=False):
            s = nn.functional.normalize(pooled.float(), dim=-1, eps=eps)
            p = nn.functional.normalize(prototypes.float(), dim=-1, eps=eps)
            return s @ p.t()
    d2 = squared_distances(pooled, prototypes)
    if kind == "inv_l2":
        # sqrt'(0) is infinite: clamping d^2 away from 0 keeps the gradient finite (zero) when an
        # embedding sits exactly on a prototype, as it does after projection.
        return 1.0 / (torch.sqrt(d2.clamp_min(1e-20)) + eps)
    if kind == "log_l2":
        return torch.log((d2 + 1.0) / (d2 + eps))
    raise ValueError(f"head.similarity={kind!r} is not one of {', '.join(SIMILARITIES)}")


def equal_blocks_error(num_prototypes: int, num_classes: int) -> str | None:
    """Why ``num_prototypes`` cannot form ``num_classes`` equal class blocks (None when they can)."""
    if num_classes < 1 or num_prototypes < num_classes or num_prototypes % num_classes:
        return (
            f"head.num_prototypes={num_prototypes} must be a positive multiple of the number of classes ({num_classes})"
        )
    return None


class PrototypeHead(nn.Module):
    """Attention pooling -> similarity to P prototypes -> linear layer P -> C.

    ``PrototypeHead(hidden_size, num_prototypes, num_classes)`` (cosine similarity, as the framework) works on
    any encoder: call it as ``head(hidden_states, attention_mask)``. Prototypes come in P/C
    contiguous blocks per class; pass ``prototype_class`` (one class index per prototype) for
    any other assignment, e.g. a pruned head. For regression pass ``num_classes=1``: all
    prototypes then share one block and the last layer gets a bias.
    """

    def __init__(
        self,
        hidden_size: int,
        num_prototypes: int,
        num_classes: int,
        similarity: str = "cosine",
        eps: float = 1e-4,
        attention_dim: int | None = None,
        incorrect_class_weight: float = -0.5,
        init_std: float = 1.0,
        prototype_class=None,
        last_layer_bias: bool = False,
        attention_init: str = "torch",
    ):
        super().__init__()
        if similarity not in SIMILARITIES:
            raise ValueError(f"head.similarity={similarity!r} is not one of {', '.join(SIMILARITIES)}")
        if prototype_class is None:
            if equal_blocks_error(num_prototypes, num_classes):
                raise ValueError(equal_blocks_error(num_prototypes, num_classes))
            prototype_class = [i // (num_prototypes // num_classes) for i in range(num_prototypes)]
        # Checked in Python, not on tensors: transformers builds models on the meta device, where a
        # tensor has no values to count.
        classes = [int(c) for c in (prototype_class.tolist() if torch.is_tensor(prototype_class) else prototype_class)]
        counts = [classes.count(c) for c in range(max(num_classes, max(classes) + 1))]
        if len(counts) != num_classes or min(counts) < 1:
            raise ValueError(f"every one of the {num_classes} classes needs a prototype, got counts {counts}")
        prototype_class = torch.tensor(classes, dtype=torch.long)
        num_prototypes = len(classes)
        self.hidden_size, self.num_prototypes, self.num_classes = hidden_size, num_prototypes, num_classes
        self.similarity_kind, self.eps = similarity, eps
        self.incorrect_class_weight = incorrect_class_weight
        self.pooling = AttentionPooling(hidden_size, attention_dim, attention_init)
        self.prototypes = nn.Parameter(torch.randn(num_prototypes, hidden_size) * init_std)
        # Buffers, not attributes: they travel in the state dict and hence in every checkpoint.
        self.register_buffer("prototype_class", prototype_class)
        self.register_buffer("prototypes_initialized", torch.tensor(False))
        self.regression = num_classes == 1
        # A regression needs the bias (its target is not centred); for classes it is optional (the
        # released code has one; without it a prediction is a sum over prototypes alone).
        self.last_layer = nn.Linear(num_prototypes, num_classes, bias=self.regression or last_layer_bias)
        self.reset_last_layer()

    def architecture(self) -> dict:
        """The keyword arguments that rebuild this head's architecture (its weights come separately)."""
        return {
            "num_prototypes": self.num_prototypes,
            "similarity": self.similarity_kind,
            "eps": self.eps,
            "attention_dim": self.pooling.proj.out_features,
            "incorrect_class_weight": self.incorrect_class_weight,
            "prototype_class": self.prototype_class.tolist(),
            "last_layer_bias": self.last_layer.bias is not None,
        }

    @property
    def prototypes_per_class(self) -> int:
        """The smallest number of prototypes any class has (P/C for the usual equal blocks)."""
        return int(torch.bincount(self.prototype_class, minlength=self.num_classes).min())

    @torch.no_grad()
    def keep_prototypes(self, keep: torch.Tensor) -> None:
        """Remove prototypes (``keep`` is a bool mask over P) with their last-layer columns."""
        keep = keep.to(self.prototype_class.device).bool()
        if torch.bincount(self.prototype_class[keep], minlength=self.num_classes).min() < 1:
            raise ValueError("pruning would leave a class without prototypes")
        self.prototypes = nn.Parameter(self.prototypes[keep].clone())
        self.prototype_class = self.prototype_class[keep].clone()
        old = self.last_layer
        self.last_layer = nn.Linear(int(keep.sum()), self.num_classes, bias=old.bias is not None).to(old.weight)
        self.last_layer.weight.copy_(old.weight[:, keep])
        if old.bias is not None:
            self.last_layer.bias.copy_(old.bias)
        self.num_prototypes = int(keep.sum())

    @torch.no_grad()
    def add_prototypes(self, vectors: torch.Tensor, class_index: int) -> None:
        """Append prototypes of class ``class_index`` (``vectors``: N x H). Their last-layer columns
        start as the mean column of the class's existing prototypes: the new ones weigh what an
        average prototype of their class weighs until the last layer is retrained."""
        vectors = vectors.to(self.prototypes).reshape(-1, self.hidden_size)
        members = self.prototype_class == class_index
        column = self.last_layer.weight[:, members].mean(1, keepdim=True)
        self.prototypes = nn.Parameter(torch.cat([self.prototypes.detach(), vectors]))
        added = torch.full((len(vectors),), class_index, dtype=torch.long, device=self.prototype_class.device)
        self.prototype_class = torch.cat([self.prototype_class, added])
        old = self.last_layer
        self.num_prototypes += len(vectors)
        self.last_layer = nn.Linear(self.num_prototypes, self.num_classes, bias=old.bias is not None).to(old.weight)
        self.last_layer.weight.copy_(torch.cat([old.weight, column.expand(-1, len(vectors))], dim=1))
        if old.bias is not None:
            self.last_layer.bias.copy_(old.bias)

    @torch.no_grad()
    def reset_last_layer(self):
        """ProtoPNet's initialisation: +1 from a prototype to its class, incorrect_class_weight elsewhere."""
        if self.regression:
            self.last_layer.weight.fill_(1.0 / self.num_prototypes)
            self.last_layer.bias.zero_()
            return
        own = nn.functional.one_hot(self.prototype_class, self.num_classes).t().bool()  # C x P
        self.last_layer.weight.copy_(torch.where(own, 1.0, self.incorrect_class_weight))

    @torch.no_grad()
    def set_prototypes(self, vectors: torch.Tensor):
        self.prototypes.copy_(vectors.to(self.prototypes))
        self.prototypes_initialized.fill_(True)

    def similarities(self, pooled: torch.Tensor) -> torch.Tensor:
        return similarity_from_pooled(pooled, self.prototypes, self.similarity_kind, self.eps)

    def logits_from_similarities(self, similarities: torch.Tensor, keep: torch.Tensor | None = None):
        """Class scores from similarities; ``keep`` (P or B x P, bool) removes prototypes."""
        if keep is not None:
            similarities = similarities * keep.to(similarities.dtype)
        return self.last_layer(similarities.to(self.last_layer.weight.dtype))

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> dict:
        pooled, attention = self.pooling(hidden_states, attention_mask)
        similarities = self.similarities(pooled)
        return {
            "logits": self.logits_from_similarities(similarities),
            "similarities": similarities,
            "attention": attention,
            "pooled": pooled,
        }


class LinearHead(nn.Module):
    """The fine-tuning baseline: pool the usual way for the backbone, then dense-tanh-linear.

    ``pooling="cls"`` takes the first token (BERT, RoBERTa, DeBERTa, ELECTRA classifiers);
    ``pooling="mean"`` averages non-padding tokens (sentence-transformers models such as MiniLM);
    ``pooling="last"`` takes the last non-padding token (decoders, whose last token alone has seen
    the whole text), wherever the padding is (left or right).
    The hidden dense+tanh layer mirrors Hugging Face's sequence-classification heads.
    """

    def __init__(self, hidden_size: int, num_classes: int, pooling: str = "cls", dropout: float = 0.1):
        super().__init__()
        if pooling not in ("cls", "mean", "last"):
            raise ValueError(f"backbone.pooling={pooling!r} is not one of cls, mean, last")
        self.pooling, self.num_classes = pooling, num_classes
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.out_proj = nn.Linear(hidden_size, num_classes)

    def architecture(self) -> dict:
        """The keyword arguments that rebuild this head's architecture (its weights come separately)."""
        return {"pooling": self.pooling, "dropout": self.dropout.p}

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> dict:
        mask = attention_mask.to(hidden_states.dtype)
        if self.pooling == "cls":
            attention = torch.zeros_like(mask)
            attention[:, 0] = 1.0
        elif self.pooling == "last":  # the last position the mask keeps, under left or right padding
            positions = torch.arange(mask.shape[1], device=mask.device)
            last = torch.where(mask > 0, positions, -1).max(-1).values.clamp_min(0)
            attention = torch.nn.functional.one_hot(last, mask.shape[1]).to(mask.dtype)
        else:
            attention = mask / mask.sum(-1, keepdim=True).clamp_min(1.0)
        pooled = torch.bmm(attention.unsqueeze(1), hidden_states).squeeze(1)
        x = torch.tanh(self.dense(self.dropout(pooled)))
        return {"logits": self.out_proj(self.dropout(x)), "pooled": pooled, "attention": attention.float()}
