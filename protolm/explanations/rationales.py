"""Token rationales: how much each token of an input weighs in the model's decision (B x L scores,
higher = more important), computed from the model beyond its own attention."""

from __future__ import annotations

import torch

from protolm.modeling import inference


def integrated_gradients_ranking(
    net, batch: dict, targets: torch.Tensor, steps: int = 20, internal_batch_size: int | None = None
) -> torch.Tensor:
    """Token importance by Captum's integrated gradients on the input embeddings (B x L).
    ``internal_batch_size``: sequences per forward pass (default: all B x steps at once)."""
    from captum.attr import LayerIntegratedGradients

    embeddings = net.encoder.get_input_embeddings()

    def logits(input_ids, attention_mask, token_type_ids=None):
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        return inference.forward(net, inputs)["logits"].float()

    ig = LayerIntegratedGradients(logits, embeddings)
    extra = (batch["attention_mask"],) + ((batch["token_type_ids"],) if "token_type_ids" in batch else ())
    attributions = ig.attribute(
        batch["input_ids"],
        baselines=torch.zeros_like(batch["input_ids"]),
        additional_forward_args=extra,
        target=targets,
        n_steps=steps,
        internal_batch_size=internal_batch_size or len(targets) * steps,
    )
    return attributions.sum(-1).detach()


def contribution_ranking(net, batch: dict, targets: torch.Tensor) -> torch.Tensor:
    """Each token's contribution to the target class through the head's attention pooling:
    alpha_t * (h_t . d log p(target) / d pooled), gradient x input at the pooled vector (B x L).

    The pooled vector is sum_t alpha_t h_t, so this splits the first-order effect of the pooled
    vector among the tokens by what each one adds, in the direction that raises the target class,
    where attention alone says only how much each is weighed. The encoder runs once without
    gradients; only the head (similarities and last layer) is differentiated."""
    inputs = {k: batch[k] for k in inference.MODEL_INPUTS if k in batch}
    with torch.no_grad():
        hidden = net.encoder(**inputs).last_hidden_state.float()
        pooled, alpha = net.head.pooling(hidden, batch["attention_mask"])
    pooled = pooled.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = net.head.logits_from_similarities(net.head.similarities(pooled)).float()
        chosen = torch.log_softmax(logits, -1).gather(1, targets[:, None].to(logits.device)).sum()
        (direction,) = torch.autograd.grad(chosen, pooled)
    return alpha * torch.einsum("blh,bh->bl", hidden, direction)


# Rationales computed from the model beyond its own attention: name -> fn(model, batch, targets) -> B x L
# scores (higher: more important). Callers may add their own (the peers benchmark adds LIME, KernelSHAP).
SCORERS = {"integrated_gradients": integrated_gradients_ranking, "contribution": contribution_ranking}
