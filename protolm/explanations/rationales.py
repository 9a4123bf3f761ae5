"""Token rationales by name: how much each token of an input weighs in the model's decision (B x L
scores, higher = more important), the ``rationale=`` of explain, predict, the server and the Python
API, and what ``protolm evaluate`` measures.

Built in: ``greedy_gates`` (the default: two passes of deletion gates, :mod:`gates`), ``gates`` (one
pass), ``contribution`` (each token's share of the pooled vector times the gradient at it),
``attention`` (the pooling's own weights, read off the forward pass). Post-hoc, through Captum
(:mod:`posthoc`): ``integrated_gradients`` (50 steps), ``lime`` and ``kernel_shap`` (200 samples),
``occlusion`` (each token deleted in turn).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from protolm.explanations import gates, posthoc
from protolm.modeling import inference
from protolm.utils.errors import ConfigError, check_choice

DEFAULT_RATIONALE = "greedy_gates"


def contribution_ranking(net, batch: dict, targets: torch.Tensor) -> torch.Tensor:
    """Each token's contribution to the target class through the head's attention pooling:
    alpha_t * (h_t . d log p(target) / d pooled), gradient x input at the pooled vector (B x L).

    The pooled vector is sum_t alpha_t h_t, so this splits the first-order effect of the pooled
    vector among the tokens by what each one adds, in the direction that raises the target class.
    The encoder runs once without gradients; only the head (similarities and last layer) is
    differentiated."""
    inputs = {k: batch[k] for k in inference.MODEL_INPUTS if k in batch}
    with torch.no_grad():
        hidden = net.encoder(**inputs).last_hidden_state.float()
        pooled, alpha = net.head.pooling(hidden, batch["attention_mask"])
    pooled = pooled.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = net.head.logits_from_similarities(net.head.similarities(pooled)).float()
        chosen = torch.log_softmax(logits, -1).gather(1, targets[:, None].to(logits.device)).sum()
        (direction,) = torch.autograd.grad(chosen, pooled)
    return (alpha * torch.einsum("blh,bh->bl", hidden, direction)).cpu()


def attention_of(net, batch: dict, targets: torch.Tensor) -> torch.Tensor:
    """The head's pooling weights (the linear head's: its fixed pooling) from the forward pass."""
    with torch.no_grad():
        return (
            inference.forward(net, {k: batch[k] for k in inference.MODEL_INPUTS if k in batch})["attention"]
            .float()
            .cpu()
        )


@dataclass(frozen=True)
class Rationale:
    function: Callable[..., torch.Tensor]  # (net, batch, targets) -> B x L scores
    prototype_only: bool  # reads the prototype head's pooling (no meaning for the linear head)
    meaning: str


RATIONALES = {
    "greedy_gates": Rationale(gates.greedy_gates_rationale, False, "deletion gates, two passes (the default)"),
    "gates": Rationale(gates.gates_rationale, False, "deletion gates, one pass"),
    "contribution": Rationale(contribution_ranking, True, "pooling weight x gradient at the pooled vector"),
    "attention": Rationale(attention_of, True, "the pooling's attention weights"),
    "integrated_gradients": Rationale(posthoc.integrated_gradients, False, "Captum, 50 steps"),
    "lime": Rationale(posthoc.perturbation("lime"), False, "Captum LIME, 200 samples"),
    "kernel_shap": Rationale(posthoc.perturbation("kernel_shap"), False, "Captum KernelSHAP, 200 samples"),
    "occlusion": Rationale(posthoc.perturbation("occlusion"), False, "each token deleted in turn (Captum)"),
}


def check_rationale(name: str, net=None, key: str = "rationale") -> Rationale:
    """The named rationale, or a one-line error listing them (or saying it needs the prototype head)."""
    check_choice(key, name, RATIONALES)
    rationale = RATIONALES[name]
    if net is not None and rationale.prototype_only and not net.config.is_prototype:
        raise ConfigError(f"{key}={name} reads the prototype head's pooling; this model has the linear head")
    return rationale


def token_scores(name: str, net, batch: dict, targets: torch.Tensor) -> torch.Tensor:
    """The named rationale's B x L scores for ``targets`` (on the CPU)."""
    return check_rationale(name, net).function(net, batch, targets.to(net.device))
