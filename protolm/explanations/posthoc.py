"""Post-hoc token rationales through Captum, asked for by name like the built-in ones
(``rationale=integrated_gradients | lime | kernel_shap | occlusion``), so one command compares them
on a user's own model.

Perturbation methods (LIME, KernelSHAP, occlusion) treat each token as a feature; a token perturbed
away becomes padding with its attention mask off, which for the encoder is deleting it, the removal
ERASER's metrics use (special tokens are kept). They explain the predicted class's probability, one
example at a time, as Captum runs them. Integrated gradients explains the logit along a straight
path from an all-[PAD] input in the embedding space.
"""

from __future__ import annotations

import torch

from protolm.modeling import inference

IG_STEPS = 50  # the usual choice; the cost figures compare against it
SAMPLES = 200  # LIME's and KernelSHAP's perturbed inputs per example
PER_EVAL = 50  # perturbed inputs per forward pass


def integrated_gradients(net, batch: dict, targets: torch.Tensor, steps: int = IG_STEPS) -> torch.Tensor:
    """Captum's LayerIntegratedGradients on the input embeddings, summed over the hidden size (B x L)."""
    from captum.attr import LayerIntegratedGradients

    def logits(input_ids, attention_mask, token_type_ids=None):
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        return inference.forward(net, inputs)["logits"].float()

    ig = LayerIntegratedGradients(logits, net.encoder.get_input_embeddings())
    extra = (batch["attention_mask"],) + ((batch["token_type_ids"],) if "token_type_ids" in batch else ())
    with torch.enable_grad():
        attributions = ig.attribute(
            batch["input_ids"],
            baselines=torch.zeros_like(batch["input_ids"]),
            additional_forward_args=extra,
            target=targets,
            n_steps=steps,
            internal_batch_size=4 * steps,
        )
    return attributions.sum(-1).detach().float().cpu()


def _lime_kernel(original, perturbed, interpretable, **_):
    """The lime package's text kernel: cosine distance of the presence vector from all-present, x 100, width 25."""
    ones = torch.ones_like(interpretable, dtype=torch.float)
    distance = 1 - torch.nn.functional.cosine_similarity(interpretable.float(), ones, dim=-1)
    return torch.sqrt(torch.exp(-((distance * 100) ** 2) / 25**2))


def _explainer(kind: str, forward):
    from captum.attr import FeatureAblation, KernelShap, Lime

    if kind == "lime":
        from captum._utils.models.linear_model import SkLearnRidge

        return Lime(forward, interpretable_model=SkLearnRidge(alpha=1.0), similarity_func=_lime_kernel)
    return KernelShap(forward) if kind == "kernel_shap" else FeatureAblation(forward)


def _one(net, kind: str, ids, types, special, pad: int, target: int, samples: int) -> torch.Tensor:
    """Attributions to the tokens of one example (``ids``: 1 x n)."""

    def forward(perturbed):
        perturbed = torch.where(special, ids, perturbed)
        inputs = {"input_ids": perturbed, "attention_mask": (perturbed != pad).long()}
        if types is not None:
            inputs["token_type_ids"] = types.expand_as(perturbed)
        return torch.softmax(inference.forward(net, inputs)["logits"].float(), -1)

    options = {"feature_mask": torch.arange(ids.shape[1], device=ids.device)[None], "perturbations_per_eval": PER_EVAL}
    if kind != "occlusion":
        options["n_samples"] = samples
    with torch.no_grad():
        return _explainer(kind, forward).attribute(ids, baselines=pad, target=target, **options)[0]


def perturbation(kind: str, samples: int = SAMPLES):
    """A rationale (net, batch, targets) -> B x L from Captum's ``kind``: lime | kernel_shap | occlusion
    (``samples``: perturbed inputs per example for LIME and KernelSHAP)."""

    def rationale(net, batch: dict, targets: torch.Tensor) -> torch.Tensor:
        pad = int(net.encoder.config.pad_token_id or 0)  # its id is never read: its mask is off
        special_mask = batch.get("special_tokens_mask")
        scores = torch.zeros(batch["input_ids"].shape)
        for i in range(len(targets)):
            n = int(batch["attention_mask"][i].sum())
            ids = batch["input_ids"][i : i + 1, :n]
            special = special_mask[i : i + 1, :n].bool() if special_mask is not None else torch.zeros_like(ids).bool()
            types = batch["token_type_ids"][i : i + 1, :n] if "token_type_ids" in batch else None
            found = _one(net, kind, ids, types, special.to(ids.device), pad, int(targets[i]), samples)
            scores[i, :n] = found.float().cpu()
        return scores

    rationale.__name__ = kind
    return rationale
