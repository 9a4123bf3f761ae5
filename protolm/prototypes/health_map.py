"""The prototypes on a map: training embeddings and prototypes in 2-D (PCA), coloured by class."""

from __future__ import annotations

from pathlib import Path

import torch

from protolm.prototypes.features import Features


def _sample(features: Features, max_examples: int, seed: int) -> tuple[torch.Tensor, list]:
    """Pooled embeddings and labels of up to ``max_examples`` random training examples."""
    order = torch.randperm(len(features), generator=torch.Generator().manual_seed(seed))[:max_examples]
    order = order.sort().values
    return features.pooled[order].float(), features.labels[order].tolist()


def _pca_2d(points: torch.Tensor, prototypes: torch.Tensor):
    """Both point sets on the first two principal components of their union (numpy arrays)."""
    everything = torch.cat([points, prototypes])
    mean = everything.mean(0)
    _, _, v = torch.linalg.svd(everything - mean, full_matrices=False)
    return ((points - mean) @ v[:2].t()).numpy(), ((prototypes - mean) @ v[:2].t()).numpy()


def _draw_classes(ax, net, xy, pxy, labels: list) -> None:
    """Each class's training examples and its prototypes (stars) in the class's colour."""
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab10")
    for c, name in enumerate(net.config.class_names() or ["target"]):
        mask = [y == c for y in labels]
        ax.scatter(xy[mask, 0], xy[mask, 1], s=6, alpha=0.35, color=cmap(c % 10), label=f"{name} (training)")
        own = (net.head.prototype_class == c).cpu().numpy()
        ax.scatter(
            pxy[own, 0],
            pxy[own, 1],
            marker="*",
            s=220,
            color=cmap(c % 10),
            edgecolors="black",
            linewidths=0.8,
            label=f"{name} prototypes",
        )


@torch.no_grad()
def plot_prototypes(net, train: Features, path: str | Path, max_examples: int = 2000, seed: int = 0) -> Path:
    """PCA of training embeddings and prototypes in 2-D, coloured by class; saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points, labels = _sample(train, max_examples, seed)
    xy, pxy = _pca_2d(points, net.head.prototypes.detach().float().cpu())
    fig, ax = plt.subplots(figsize=(7, 6), dpi=110)
    if net.config.regression:
        scatter = ax.scatter(xy[:, 0], xy[:, 1], c=labels, s=6, alpha=0.5, cmap="viridis")
        fig.colorbar(scatter, ax=ax, label="target")
        ax.scatter(pxy[:, 0], pxy[:, 1], marker="*", s=180, c="black", label="prototypes")
    else:
        _draw_classes(ax, net, xy, pxy, labels)
    ax.set_title(f"{net.config.task}: prototypes and {len(points)} training embeddings (PCA)")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.legend(fontsize=8, markerscale=1.0, loc="best")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
