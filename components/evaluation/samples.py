"""The figure of samples drawn from a generative model (e.g. ``DeepBeliefNet.sample``).

Hinton, Osindero & Teh (2006), Fig. 8 style: a grid of the model's visible
means, one image per sample, grey levels in [0, 1].
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: stages run headless
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from components.errors import DulError  # noqa: E402
from components.io import atomic_path  # noqa: E402


def samples_figure(samples: np.ndarray | torch.Tensor, shape: tuple[int, int], path: str | Path,
                   title: str | None = None, columns: int | None = None) -> None:
    """Write a PNG grid of ``samples`` (n, H*W), each reshaped to ``shape`` (H, W), atomically;
    ``columns`` images a row (default: a square grid)."""
    if isinstance(samples, torch.Tensor):
        samples = samples.detach().cpu().numpy()
    samples = np.asarray(samples, dtype=np.float64)
    height, width = shape
    if samples.ndim != 2 or len(samples) == 0 or samples.shape[1] != height * width:
        raise DulError(f"samples_figure needs samples of shape (n >= 1, {height * width}) for images of "
                       f"{height}x{width}, got {samples.shape}; pass the data's image shape")
    n = len(samples)
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 0.8, rows * 0.8 + 0.4), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k < n:
            ax.imshow(np.clip(samples[k], 0, 1).reshape(shape), cmap="gray", vmin=0, vmax=1)
    fig.suptitle(title or f"{n} samples from the model (visible means)", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
