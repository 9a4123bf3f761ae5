"""The post-training sections of a run config (prototype head only): projection, health, pruning;
and what the faithfulness evaluation measures."""

from __future__ import annotations

from dataclasses import dataclass

from protolm.config.fields import option
from protolm.utils.errors import check_choice, check_number

PROJECTION_MODES = ("link", "replace")
LAST_LAYER_OBJECTIVES = ("labels", "distill")
TEMPERATURES = ("none", "selection")  # project.temperature (protolm.prototypes.temperature)
# faithfulness: how tokens are removed from a text, and whose probability is measured
TOKEN_REMOVALS = ("delete", "mask")
FAITHFULNESS_TARGETS = ("predicted", "true")
# The token rationales by name (protolm.explanations.rationales.RATIONALES, a test keeps them equal):
# the config layer knows no model code.
RATIONALE_NAMES = (
    "greedy_gates", "gates", "contribution", "attention", "integrated_gradients", "lime", "kernel_shap", "occlusion",
)  # fmt: skip


@dataclass
class ProjectConfig:
    """Tie prototypes to real training examples of their class (prototype head only)."""

    at_end: bool = option(True, "project after training, on the selected checkpoint")
    mode: str = option("replace", "replace: move each prototype onto its nearest example | link: only record them")
    top_k: int = option(5, "nearest examples stored per prototype")
    every_n_epochs: int = option(0, "also project at the end of every N-th training epoch (0: never)")
    last_layer_epochs: int = option(
        3, "after a replace, train only the last layer for N epochs (ProtoPNet's last-layer phase)"
    )
    last_layer_objective: str = option(
        "distill",
        "what the last-layer phase fits: distill (the probabilities before projection: keeps calibration) | labels",
    )
    last_layer_sparsity: float = option(
        0.0, "L1 weight on own-class connections (other-class ones removed): a few prototypes carry each class"
    )
    last_layer_refit_epochs: int = option(3, "with last_layer_sparsity: epochs refitting the surviving connections")
    temperature: str = option(
        "selection",
        "selection: after the last-layer phase, fit one temperature on the selection split's labels and fold it "
        "into the last layer (no prediction or ranking changes) | none",
    )
    report_unprojected: bool = option(True, "also test the model before projection (unprojected/test/*)")

    def __post_init__(self):
        check_choice("project.mode", self.mode, PROJECTION_MODES)
        check_number("project.top_k", self.top_k, low=1, integer=True)
        check_number("project.every_n_epochs", self.every_n_epochs, low=0, integer=True)
        check_number("project.last_layer_epochs", self.last_layer_epochs, low=0, integer=True)
        check_choice("project.last_layer_objective", self.last_layer_objective, LAST_LAYER_OBJECTIVES)
        check_number("project.last_layer_sparsity", self.last_layer_sparsity, low=0)
        check_number("project.last_layer_refit_epochs", self.last_layer_refit_epochs, low=0, integer=True)
        check_choice("project.temperature", self.temperature, TEMPERATURES)


@dataclass
class HealthConfig:
    """Prototype health: usage, dead prototypes, duplicates, class purity, a 2-D map."""

    at_end: bool = option(True, "after training: health.json and prototypes_pca.png in the run directory")
    k: int = option(10, "purity: share of the k nearest training examples in its class (its replace anchor excluded)")
    usage_split: str = option("train", "examples over which usage (nearest / top contributor) is counted")
    duplicate_cosine: float = option(0.999, "prototypes this cosine-similar are near-identical")
    plot: bool = option(True, "write prototypes_pca.png")
    plot_max_examples: int = option(2000, "training examples drawn in the map")

    def __post_init__(self):
        check_number("health.k", self.k, low=1, integer=True)
        check_number("health.duplicate_cosine", self.duplicate_cosine, low=-1, high=1)
        check_number("health.plot_max_examples", self.plot_max_examples, low=1, integer=True)


@dataclass
class PruneConfig:
    """Remove prototypes whose purity is below min_purity (every class keeps its purest one)."""

    enabled: bool = option(False, "prune after projection (pruned.ckpt is then the shipped model)")
    k: int = option(10, "purity over the k nearest training examples (its replace anchor excluded)")
    min_purity: float = option(0.5, "prototypes below this purity are removed")

    def __post_init__(self):
        check_number("prune.k", self.k, low=1, integer=True)
        check_number("prune.min_purity", self.min_purity, low=0, high=1)


@dataclass
class FaithfulnessConfig:
    """What evaluate measures: prototype- and token-level comprehensiveness and sufficiency."""

    prototype_ks: list[int] = option([1, 3, 5, 10], "k prototypes removed / kept; k >= P is left out")
    random_draws: int = option(10, "random-prototype baselines (any class, same class): draws per example")
    token_bins: list[float] = option([0.01, 0.05, 0.1, 0.2, 0.5], "rationale sizes: shares of the content tokens")
    token_removal: str = option("delete", "delete | mask (replace by the tokenizer's mask token)")
    target: str = option("predicted", "whose probability: the predicted class | the true label")
    rationales: list[str] = option(
        ["greedy_gates", "contribution", "attention"],
        "token rationales measured beside random: " + " | ".join(RATIONALE_NAMES) + " (post-hoc ones are slow)",
    )
    seed: int = option(0, "seeds the random baselines")

    def __post_init__(self):
        for k in self.prototype_ks:
            check_number("faithfulness.prototype_ks[]", k, low=1, integer=True)
        check_number("faithfulness.random_draws", self.random_draws, low=1, integer=True)
        for share in self.token_bins:
            check_number("faithfulness.token_bins[]", share, low=0, high=1, low_open=True)
        check_choice("faithfulness.token_removal", self.token_removal, TOKEN_REMOVALS)
        check_choice("faithfulness.target", self.target, FAITHFULNESS_TARGETS)
        for name in self.rationales:
            check_choice("faithfulness.rationales[]", name, RATIONALE_NAMES)
