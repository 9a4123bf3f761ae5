"""faithfulness.md: the prototype-level and token-level scores beside their random baselines."""

from __future__ import annotations


def faithfulness_table(result: dict) -> str:
    """faithfulness.md: the prototype-level and token-level scores beside their random baselines."""
    settings = result["settings"]
    lines = [
        f"# Faithfulness: {result['task']} / {result['split']} ({result['examples']} examples, target: "
        f"{settings['target']} class)",
        "",
        *_prototype_lines(result["prototype_level"]),
    ]
    return "\n".join(lines + _token_lines(result["token_level"]["by_rationale"], settings))


def _score(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


# The scores of a by_k entry: the top k, then k random prototypes of any class and of the target class.
PREFIXES = ("", "random_", "random_same_class_")


def _prototype_lines(level: dict) -> list[str]:
    """The prototype-level table; k = P (every prototype) is left out, it measures no explanation."""
    lines = [
        "## Prototype level (drop in the target class probability)",
        "",
        "| k | comprehensiveness | random k | random k, same class | sufficiency | random k | random k, same class |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, v in level["by_k"].items():
        if "prototypes" in level and int(k) >= level["prototypes"]:
            continue
        scores = [v.get(f"{prefix}{kind}") for kind in ("comprehensiveness", "sufficiency") for prefix in PREFIXES]
        lines.append(f"| {k} | " + " | ".join(map(_score, scores)) + " |")
    block = level.get("smallest_class_block")
    note = f"; n/a for k above {block}, the smallest class block" if block is not None else ""
    share = level.get("top3_share")
    carried = (
        [f"The top 3 prototypes carry {share:.1%} of the predicted class's positive evidence (similarity x weight)."]
        if share is not None
        else []
    )
    return lines + [
        "",
        *carried,
        "Random k: k prototypes of any class. Random k, same class: k prototypes of the target class; "
        "own-class weights are positive and the others negative, so the top k are mostly the target "
        f"class's own prototypes and this is the baseline that tests their ranking{note}.",
    ]


def _token_lines(by_rationale: dict, settings: dict) -> list[str]:
    bins = settings["token_bins"]
    comp_header = " | ".join(f"comp {q:.0%}" for q in bins)
    suff_header = " | ".join(f"suff {q:.0%}" for q in bins)
    lines = [
        "",
        f"## Token level (ERASER, tokens {settings['token_removal']}d)",
        "",
        f"| rationale | {comp_header} | AOPC comp | ERASER comp | {suff_header} | AOPC suff | ERASER suff |",
        "|---|" + "---|" * (2 * len(bins) + 4),
    ]
    for name, by_bin in by_rationale.items():
        cells = []
        for kind in ("comprehensiveness", "sufficiency"):
            cells += [f"{by_bin[str(q)][kind]:.4f}" for q in bins]
            cells += [f"{by_bin['aopc'][kind]:.4f}", f"{by_bin['aopc_eraser'][kind]:.4f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [
        "",
        "Bin q: the top ceil(q·n) of an example's n content tokens. AOPC: per example, the mean over its "
        "distinct bin sizes (bins that round to the same size count once), then over examples. ERASER: "
        "the mean of the bins' columns, a repeated size counted each time (DeYoung et al. 2020's "
        "definition, that of published figures).",
    ]
