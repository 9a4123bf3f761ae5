"""``python benchmarks/peers.py --what explain``: protolm's own rationales beside post-hoc explainers.

On the same trained models and N SST-2 dev sentences from the ``--start``-th on: milliseconds per explained example
(each rationale timed batch by batch in one pass, so all see the same load) and ERASER's token-level
comprehensiveness / sufficiency / AOPC (tokens deleted, the predicted class; AOPC as the mean over
each example's distinct bin sizes and as ERASER's mean over the fixed bins) of the rationales of
protolm.explanations.rationales:
  greedy_gates          the default: deletion gates, two passes
  gates                 deletion gates, one pass
  contribution          attention x (token . the gradient of log p(class) at the pooled vector)
  attention             the pooling's weights, read off the forward pass that predicts
  integrated_gradients  Captum LayerIntegratedGradients on the embeddings, all-[PAD] baseline
  lime                  Captum Lime, one feature per token, absent = deleted; the lime package's
                        text kernel (cosine distance x 100, width 25) and ridge regression
  kernel_shap           Captum KernelShap, one feature per token, absent = deleted
  occlusion             each token deleted in turn (Captum FeatureAblation)
  random                a random ranking
for the prototype model, and the model-agnostic ones for the linear model.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from benchmarks.common import table, write


def _dev_sentences(clf, start: int, n: int):
    """``n`` examples of the split the run reported on, from the ``start``-th, as the commands read it
    (a start past the sentences a rationale was designed on measures it on sentences it never saw)."""
    split = clf.datamodule().role_split("test")
    if not 0 <= start < len(split):
        raise SystemExit(f"--start={start}: the reported split has {len(split)} examples; give 0 to {len(split) - 1}")
    return split.subset(list(range(start, min(start + n, len(split)))))


def _load(run_dir: str):
    from protolm.serving.classifier import load

    return load(Path(run_dir), key="--run")


POSTHOC = ("integrated_gradients", "lime", "kernel_shap", "occlusion")


def _scorers(args) -> dict:
    """The product's rationales (protolm.explanations.rationales), the post-hoc ones at this run's budgets."""
    from protolm.explanations import posthoc

    return {
        "integrated_gradients": functools.partial(posthoc.integrated_gradients, steps=args.ig_steps),
        "lime": posthoc.perturbation("lime", args.lime_samples),
        "kernel_shap": posthoc.perturbation("kernel_shap", args.shap_samples),
    }


def _rows(model_name: str, result: dict, rationales) -> list[dict]:
    """One row per rationale: its AOPC under both bin definitions and its cost, also relative to
    integrated gradients (each rationale timed batch by batch in the same pass: same load)."""
    seconds = result["seconds_per_example"]
    ig = seconds.get("integrated_gradients")
    rows = []
    for name in rationales:
        scores, cost = result["by_rationale"][name], seconds.get(name, 0.0)
        rows.append(
            {
                "model": model_name,
                "rationale": name,
                "ms_per_example": 1000 * cost,
                "x_cheaper_than_ig": ig / cost if ig and cost else "",
                "aopc_comprehensiveness": scores["aopc"]["comprehensiveness"],
                "aopc_sufficiency": scores["aopc"]["sufficiency"],
                "eraser_comprehensiveness": scores["aopc_eraser"]["comprehensiveness"],
                "eraser_sufficiency": scores["aopc_eraser"]["sufficiency"],
            }
        )
    return rows


def _derived(rows: list[dict]) -> dict:
    """The default rationale against the best post-hoc one on the prototype model."""
    proto = {r["rationale"]: r for r in rows if r["model"] == "prototype"}
    posthoc = [r for name, r in proto.items() if name in POSTHOC]
    if "greedy_gates" not in proto or not posthoc:
        return {}
    best = max(posthoc, key=lambda r: r["aopc_comprehensiveness"])
    own = proto["greedy_gates"]
    return {
        "best_posthoc": best["rationale"],
        "comprehensiveness_default_minus_best": own["aopc_comprehensiveness"] - best["aopc_comprehensiveness"],
        "sufficiency_default_minus_best": own["aopc_sufficiency"] - best["aopc_sufficiency"],
        "default_x_cheaper_than_ig": own["x_cheaper_than_ig"],
    }


def explain(args) -> None:
    from protolm.explanations.token_faithfulness import token_level

    torch.manual_seed(0)
    rows, measured, bins = [], {}, [0.01, 0.05, 0.1, 0.2, 0.5]
    for model_name, run_dir in (("prototype", args.prototype_run), ("linear", args.linear_run)):
        if not run_dir:
            continue
        loaded = _load(run_dir)
        builtin = (
            ("greedy_gates", "gates", "contribution", "attention")
            if loaded.model.config.is_prototype
            else ("greedy_gates", "gates")
        )
        rationales = tuple(r for r in (*builtin, *POSTHOC) if r in args.rationales) + ("random",)
        result = token_level(
            loaded.model, loaded.tokenizer, _dev_sentences(loaded, args.start, args.examples), bins, removal="delete",
            target="predicted", batch_size=16, max_length=loaded.max_length, rationales=rationales,
            scorers=_scorers(args),
        )  # fmt: skip
        measured[model_name] = result
        rows += _rows(model_name, result, rationales)
        print(table(rows, list(rows[0])), flush=True)
    budgets = {"ig_steps": args.ig_steps, "lime_samples": args.lime_samples, "shap_samples": args.shap_samples}
    measured_examples = next(iter(measured.values()))["examples"] if measured else 0
    settings = {
        "start": args.start,
        "examples": measured_examples,
        "bins": bins,
        "removal": "delete",
        "target": "predicted",
        **budgets,
    }
    derived = _derived(rows)
    for key, value in derived.items():
        print(f"{key}: {value}")
    # The runs by folder name: paths of this machine stay out of the record.
    runs = {"prototype": Path(args.prototype_run or "").name, "linear": Path(args.linear_run or "").name}
    payload = {"settings": settings, "rows": rows, "derived": derived, "runs": runs, "results": measured}
    print(f"\nwrote {write('peers_explain', payload, args.out)}")
