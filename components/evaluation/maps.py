"""Two-dimensional maps of the data, coloured by label (Hinton & Salakhutdinov
2006, Figs. 3 and 4: a 784-1000-500-250-2 autoencoder's codes next to the
first two principal components).

``project_2d`` keeps a 2-unit code as it is and projects a longer one on its
first two principal components (fitted on the same items), so the figure is
drawn for any code size; for the paper's figure, train with
``pretrain.hidden: [1000, 500, 250, 2]``.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: stages run headless
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402

from components.evaluation import _save  # noqa: E402


def project_2d(X: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N, D) -> (N, 2): X itself when D == 2, else its first two principal components."""
    X = np.asarray(X, dtype=np.float64)
    return X if X.shape[1] == 2 else PCA(n_components=2, random_state=seed).fit_transform(X)


def maps_figure(path: str | Path, panels: dict[str, np.ndarray], labels: np.ndarray,
                label_names: list[str] | None = None, max_points: int = 5000, seed: int = 0) -> None:
    """Side-by-side scatter plots of (N, 2) points per panel, coloured by label.

    At most ``max_points`` items are drawn (a seeded sample), the same ones in every panel."""
    labels = np.asarray(labels)
    shown = np.random.default_rng(seed).permutation(len(labels))[:max_points]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 5), squeeze=False)
    colours = plt.get_cmap("tab20" if labels.max(initial=0) >= 10 else "tab10")
    for ax, (title, points) in zip(axes[0], panels.items()):
        ax.scatter(points[shown, 0], points[shown, 1], c=colours(labels[shown] % colours.N), s=3, alpha=0.7,
                   linewidths=0)
        ax.set_title(title, fontsize=10)
        ax.set_xticks([]), ax.set_yticks([])
    present = np.unique(labels[shown])
    names = label_names or [str(k) for k in range(int(labels.max(initial=0)) + 1)]
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=colours(k % colours.N), label=names[k])
               for k in present]
    fig.legend(handles=handles, loc="center right", fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0, 0.85, 1))
    _save(fig, path, tight=False)
