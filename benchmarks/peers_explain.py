"""``python benchmarks/peers.py --what explain``: protolm's own explanation beside post-hoc explainers.

On the same trained models and the first N SST-2 dev sentences: seconds per explained example and
ERASER's token-level comprehensiveness / sufficiency / AOPC (tokens deleted, the predicted class) of
  attention             protolm's own: the token attention of the forward pass that predicts
  contribution          protolm's own: attention x (token . the gradient of log p(class) at the
                        pooled vector); one encoder pass, only the head differentiated
  integrated_gradients  Captum LayerIntegratedGradients on the embeddings, all-[PAD] baseline
  lime                  Captum Lime, one feature per token, absent = deleted; the lime package's
                        text kernel (cosine distance x 100, width 25) and ridge regression
  kernel_shap           Captum KernelShap, one feature per token, absent = deleted
  random                a random ranking
for the prototype model, and the post-hoc ones for the linear model.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import torch

from benchmarks.common import table, write


def _perturbation_scorer(kind: str, tokenizer, samples: int, per_eval: int):
    """A faithfulness scorer (model, batch, targets) -> B x L from Captum's Lime or KernelShap.
    Captum perturbs one example at a time; a perturbed-away token becomes padding with its
    attention mask off, which for the encoder is deleting it (special tokens are kept)."""
    from captum._utils.models.linear_model import SkLearnRidge
    from captum.attr import KernelShap, Lime

    from protolm.modeling import inference

    pad = tokenizer.pad_token_id

    def lime_kernel(original, perturbed, interpretable, **_):
        # lime's LimeTextExplainer: cosine distance of the binary presence vector from all-present, x 100.
        ones = torch.ones_like(interpretable, dtype=torch.float)
        distance = 1 - torch.nn.functional.cosine_similarity(interpretable.float(), ones, dim=-1)
        return torch.sqrt(torch.exp(-((distance * 100) ** 2) / 25**2))

    def one(model, ids, types, target: int) -> torch.Tensor:
        """Attributions to the tokens of one example (1 x n ids)."""
        special = tokenizer.get_special_tokens_mask(ids[0].tolist(), already_has_special_tokens=True)
        special = torch.tensor(special, device=ids.device).bool()

        def forward(perturbed):
            perturbed = torch.where(special, ids, perturbed)
            inputs = {"input_ids": perturbed, "attention_mask": (perturbed != pad).long()}
            if types is not None:
                inputs["token_type_ids"] = types.expand_as(perturbed)
            return torch.softmax(inference.forward(model, inputs)["logits"].float(), -1)

        if kind == "lime":
            explainer = Lime(forward, interpretable_model=SkLearnRidge(alpha=1.0), similarity_func=lime_kernel)
        else:
            explainer = KernelShap(forward)
        with torch.no_grad():
            return explainer.attribute(
                ids,
                baselines=pad,
                target=target,
                feature_mask=torch.arange(ids.shape[1], device=ids.device)[None],
                n_samples=samples,
                perturbations_per_eval=per_eval,
            )[0]

    def score(model, batch, targets):
        scores = torch.zeros(batch["input_ids"].shape)
        for i in range(len(targets)):
            n = int(batch["attention_mask"][i].sum())
            types = batch["token_type_ids"][i : i + 1, :n] if "token_type_ids" in batch else None
            scores[i, :n] = one(model, batch["input_ids"][i : i + 1, :n], types, int(targets[i])).float().cpu()
        return scores

    return score


def _dev_sentences(clf, n: int):
    """The first ``n`` examples of the split the run reported on, as the commands read it."""
    split = clf.datamodule().role_split("test")
    return split.subset(list(range(min(n, len(split)))))


def _load(run_dir: str):
    from protolm.serving.classifier import load

    return load(Path(run_dir), key="--run")


def explain(args) -> None:
    from protolm.explanations.rationales import integrated_gradients_ranking
    from protolm.explanations.token_faithfulness import token_level

    torch.manual_seed(0)
    rows, measured = [], {}
    bins = [0.01, 0.05, 0.1, 0.2, 0.5]
    for model_name, run_dir in (("prototype", args.prototype_run), ("linear", args.linear_run)):
        if not run_dir:
            continue
        loaded = _load(run_dir)
        split = _dev_sentences(loaded, args.examples)
        scorers = {
            "integrated_gradients": functools.partial(
                integrated_gradients_ranking, steps=args.ig_steps, internal_batch_size=4 * args.ig_steps
            ),
            "lime": _perturbation_scorer("lime", loaded.tokenizer, args.lime_samples, 50),
            "kernel_shap": _perturbation_scorer("kernel_shap", loaded.tokenizer, args.shap_samples, 50),
        }
        builtin = ("attention", "contribution") if loaded.model.config.is_prototype else ()
        rationales = builtin + ("integrated_gradients", "lime", "kernel_shap", "random")
        rationales = tuple(r for r in rationales if r in args.rationales or r == "random")
        result = token_level(
            loaded.model,
            loaded.tokenizer,
            split,
            bins,
            removal="delete",
            target="predicted",
            batch_size=16,
            max_length=loaded.max_length,
            rationales=rationales,
            scorers=scorers,
        )
        measured[model_name] = result
        seconds = result["seconds_per_example"]
        own = seconds.get("attention")
        for name in rationales:
            aopc = result["by_rationale"][name]["aopc"]
            cost = seconds.get(name, 0.0)
            rows.append(
                {
                    "model": model_name,
                    "rationale": name,
                    "ms_per_example": 1000 * cost,
                    "x_protolm_cost": cost / own if own and cost else "",
                    "aopc_comprehensiveness": aopc["comprehensiveness"],
                    "aopc_sufficiency": aopc["sufficiency"],
                    "eraser_comprehensiveness": result["by_rationale"][name]["aopc_eraser"]["comprehensiveness"],
                    "eraser_sufficiency": result["by_rationale"][name]["aopc_eraser"]["sufficiency"],
                }
            )
        print(table(rows, list(rows[0])), flush=True)
    settings = {
        "examples": args.examples,
        "bins": bins,
        "removal": "delete",
        "target": "predicted",
        "ig_steps": args.ig_steps,
        "lime_samples": args.lime_samples,
        "shap_samples": args.shap_samples,
    }
    derived = {}
    proto = {r["rationale"]: r for r in rows if r["model"] == "prototype"}
    if "attention" in proto and len(proto) > 2:
        if "integrated_gradients" in proto:
            derived["ig_cost_over_protolm"] = proto["integrated_gradients"]["ms_per_example"] / max(
                proto["attention"]["ms_per_example"], math.ulp(1.0)
            )
        posthoc = [r for name, r in proto.items() if name not in ("attention", "contribution", "random")]
        if posthoc:
            best = max(posthoc, key=lambda r: r["aopc_comprehensiveness"])
            derived["best_posthoc_comprehensiveness"] = f"{best['rationale']} {best['aopc_comprehensiveness']:.4f}"
        for name in ("attention", "contribution"):
            if name in proto:
                derived[f"protolm_{name}_comprehensiveness"] = proto[name]["aopc_comprehensiveness"]
    print("\n" + table(rows, list(rows[0])))
    for key, value in derived.items():
        print(f"{key}: {value}")
    # The runs by folder name: paths of this machine stay out of the record.
    runs = {"prototype": Path(args.prototype_run or "").name, "linear": Path(args.linear_run or "").name}
    payload = {"settings": settings, "rows": rows, "derived": derived, "runs": runs, "results": measured}
    print(f"\nwrote {write('peers_explain', payload, args.out)}")
